"""Ray engine: one Ray task per pipeline task, with retries for crashed workers and transient errors.

Where it runs:

* ``engine_options.ray_address`` or ``RAY_ADDRESS`` set (``ray://head:10001``, ``auto``,
  ``head:6379``): join that cluster; ``close()`` leaves it running.
* otherwise: start a local Ray (``num_cpus`` = ``engine_options.workers`` or all cores, no
  dashboard, bound to 127.0.0.1); ``close()`` shuts it down.
* a Ray already initialised in this process (a notebook, a test fixture, a Ray job's
  entrypoint) is used as it is and left running.

Workers must be able to ``import babelsieve``: locally they run the driver's interpreter (the
same virtualenv, editable install included); on a cluster use an image with babelsieve installed
(KubeRay ``rayStartParams`` + image) or ship it per job with ``engine_options.ray_runtime_env``,
e.g. ``{"pip": ["babelsieve[ray,s3] @ git+https://..."]}`` or ``{"py_modules": ["/path/to/babelsieve"]}``.

Retries: ``max_retries`` (``engine_options.max_retries``) covers worker processes that die (OOM
killer, SIGKILL, node loss): Ray reschedules the task on another worker. Application errors are
retried only when transient (:class:`TransientTaskError`: throttling, dropped connections);
a :class:`TaskFailedError` from bad input fails its task at once and the run goes on.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from babelsieve.pipeline.core.tasks import Task
from babelsieve.pipeline.engines import Engine, ResultCallback, failed_result
from babelsieve.pipeline.engines.worker import TransientTaskError, forwarded_env, run_task

# Tasks in flight at once: enough to keep a large cluster (and its autoscaler) busy without
# holding 90,000 object references in the driver.
MAX_IN_FLIGHT = 2000


class RayEngine(Engine):
    name = "ray"

    def __init__(self, config):  # type: ignore[no-untyped-def]
        super().__init__(config)
        self._started = False
        self._ray: Any = None

    # -- cluster connection -------------------------------------------------------------
    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        try:
            import ray
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError("the ray engine needs Ray: pip install 'babelsieve[ray]'") from None
        eo = self.config.engine_options
        if not ray.is_initialized():
            handlers = _python_signal_handlers()
            address = eo.ray_address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
            if eo.ray_runtime_env:
                kwargs["runtime_env"] = eo.ray_runtime_env
            if address and address != "local":
                ray.init(address=address, **kwargs)
            else:
                ray.init(
                    address="local",
                    num_cpus=eo.workers or os.cpu_count() or 1,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",  # a private, single-machine Ray: nothing listens outside
                    **kwargs,
                )
                self._started = True
            _reinstall(handlers)  # ray.init puts its own SIGINT/SIGTERM handlers over the driver's
        self._ray = ray
        return ray

    # -- scheduling ---------------------------------------------------------------------
    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        if not tasks:
            return []
        ray = self._connect()
        from ray.exceptions import RayTaskError

        eo = self.config.engine_options
        options: dict[str, Any] = {
            "num_cpus": eo.cpus_per_task,
            "max_retries": eo.max_retries,
            "retry_exceptions": [TransientTaskError],
        }
        if eo.memory_per_task_mb:
            options["memory"] = eo.memory_per_task_mb * 1024 * 1024
        remote = ray.remote(run_task)
        config_ref = ray.put(self.config.model_dump_json())
        env = forwarded_env()

        results: dict[str, dict[str, Any]] = {}
        refs: dict[Any, Task] = {}
        queue = list(reversed(tasks))  # pop() from the end keeps submission in task order

        def submit() -> None:
            while queue and len(refs) < MAX_IN_FLIGHT:
                t = queue.pop()
                ref = remote.options(name=f"{t.stage}/{t.task_id}", **options).remote(t.to_dict(), config_ref, env)
                refs[ref] = t

        submit()
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=min(len(refs), 64), timeout=1.0)
                for ref in done:
                    t = refs.pop(ref)
                    try:
                        res = ray.get(ref)
                    except RayTaskError as e:  # the task raised (after any transient retries)
                        cause = e.cause if getattr(e, "cause", None) is not None else e
                        res = failed_result(t, str(cause))
                    except Exception as e:  # noqa: BLE001 - WorkerCrashedError, OutOfMemoryError, node loss...
                        res = failed_result(t, f"{type(e).__name__}: worker lost on every attempt "
                                               f"({eo.max_retries + 1}): {e}")
                    res.setdefault("inputs", list(t.inputs))
                    results[t.task_id] = res
                    on_result(res)
                submit()
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: cancel what is in flight, also on a shared cluster
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort: finished or already cancelled
                    pass
            raise
        return [results[t.task_id] for t in tasks]

    def close(self) -> None:
        if self._ray is not None and self._started:
            self._ray.shutdown()
        self._ray = None
        self._started = False


def _python_signal_handlers() -> dict[int, Any]:
    """The driver's Python-level SIGINT/SIGTERM handlers (e.g. the CLI's: stop the run cleanly)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _reinstall(handlers: dict[int, Any]) -> None:
    import signal

    for sig, handler in handlers.items():
        if callable(handler) and handler is not signal.default_int_handler:
            signal.signal(sig, handler)
