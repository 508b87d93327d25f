"""Local engine: a process pool on this machine (default: one worker per core)."""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from babelsieve.pipeline.engines import Engine, ResultCallback, failed_result
from babelsieve.pipeline.tasks import Task, TaskFailedError, execute_task


def _init_worker(memory_limit_mb: int | None) -> None:
    # Address-space cap: a page that blows up the parser raises MemoryError for that record only.
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _input_bytes(task: Task) -> int | None:
    """Total size of a task's inputs when they are all local files, else None."""
    total = 0
    for url in task.inputs:
        path = url.removeprefix("file://")
        if "://" in path:
            return None
        try:
            total += os.stat(path).st_size
        except OSError:
            return None
    return total


def _largest_first(tasks: list[Task], workers: int) -> list[Task]:
    """Submission order: largest inputs first (less idle tail when a few tasks are much bigger).

    Only the order in which tasks start changes; each task writes the same files whatever the order.
    """
    if workers < 2 or len(tasks) <= workers:
        return list(tasks)
    sizes = [_input_bytes(t) for t in tasks]
    if any(s is None for s in sizes):
        return list(tasks)
    order = sorted(range(len(tasks)), key=lambda i: -sizes[i])  # stable: ties keep the planned order
    return [tasks[i] for i in order]


class LocalEngine(Engine):
    """One process pool for the whole run: worker processes (and what they loaded: modules, the URL
    block lists, lid.176, tokenizers) are reused across stages, not started again for each stage.
    A pool whose worker died is replaced."""

    name = "local"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._executor: ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self.config.engine_options.workers or os.cpu_count() or 1

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is not None and getattr(self._executor, "_broken", False):
            self._discard_pool()  # a worker died while idle
        if self._executor is None:
            # spawn: no inherited threads/locks from the driver (polars, pyarrow and rich use threads).
            # Processes start on demand (at most one per submitted task), as before.
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.config.extract.memory_limit_mb,),
            )
        return self._executor

    def _discard_pool(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        self._discard_pool()

    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        config_json = self.config.model_dump_json()
        results: dict[str, dict[str, Any]] = {}
        attempts: dict[str, int] = {t.task_id: 0 for t in tasks}
        pending = _largest_first(tasks, self.workers)
        max_retries = self.config.engine_options.max_retries
        while pending:
            pool = self._pool()
            futures: dict[Future, Task] = {}
            keep_pool = False
            try:
                for t in pending:
                    attempts[t.task_id] += 1
                    futures[pool.submit(execute_task, t.to_dict(), config_json)] = t
                pending = []
                broken = False
                not_done = set(futures)
                while not_done:
                    done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                    for fut in done:
                        t = futures[fut]
                        try:
                            res = fut.result()
                        except BrokenProcessPool:
                            # A worker died (OOM killer, SIGKILL): rerun its tasks in a new pool.
                            broken = True
                            if attempts[t.task_id] <= max_retries:
                                pending.append(t)
                                continue
                            res = failed_result(t, "worker process died (killed or out of memory) on every attempt")
                        except TaskFailedError as e:
                            res = failed_result(t, str(e))
                        except Exception as e:  # noqa: BLE001 - any other failure belongs to this task only
                            res = failed_result(t, f"{type(e).__name__}: {e}")
                        res.setdefault("inputs", list(t.inputs))
                        results[t.task_id] = res
                        on_result(res)
                keep_pool = not broken
            finally:
                if not keep_pool:  # broken, or interrupted (Ctrl-C, a callback error): no half-used pool
                    self._discard_pool()
        return [results[t.task_id] for t in tasks]
