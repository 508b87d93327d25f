"""The core of a run: configuration, storage, inputs, the task contract and manifests, the output lock,
the runner that plans stages and hands their tasks to an engine."""
