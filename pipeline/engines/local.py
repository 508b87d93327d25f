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


class LocalEngine(Engine):
    name = "local"

    @property
    def workers(self) -> int:
        return self.config.engine_options.workers or os.cpu_count() or 1

    def _pool(self, n: int) -> ProcessPoolExecutor:
        # spawn: no inherited threads/locks from the driver (polars, pyarrow and rich use threads).
        return ProcessPoolExecutor(
            max_workers=n,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.config.extract.memory_limit_mb,),
        )

    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        config_json = self.config.model_dump_json()
        results: dict[str, dict[str, Any]] = {}
        attempts: dict[str, int] = {t.task_id: 0 for t in tasks}
        pending = list(tasks)
        max_retries = self.config.engine_options.max_retries
        while pending:
            n = max(1, min(self.workers, len(pending)))
            pool = self._pool(n)
            futures: dict[Future, Task] = {}
            try:
                for t in pending:
                    attempts[t.task_id] += 1
                    futures[pool.submit(execute_task, t.to_dict(), config_json)] = t
                pending = []
                not_done = set(futures)
                while not_done:
                    done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                    for fut in done:
                        t = futures[fut]
                        try:
                            res = fut.result()
                        except BrokenProcessPool:
                            # A worker died (OOM killer, SIGKILL): rerun its tasks in a new pool.
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
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return [results[t.task_id] for t in tasks]
