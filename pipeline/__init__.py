"""Pipeline layer: stages, task model, engines, storage, CLI."""
