"""Local engine: a process pool on this machine (default: one worker per core)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from babelsieve.pipeline.core.interrupts import stopping
from babelsieve.pipeline.core.tasks import Task, TaskFailedError
from babelsieve.pipeline.engines import Engine, ResultCallback, failed_result
from babelsieve.pipeline.engines.worker import TransientTaskError, run_with_retries


def _init_worker(memory_limit_mb: int | None, driver_pid: int) -> None:
    # Ctrl-C reaches the whole process group; only the driver decides what stops (it terminates us).
    # SIGINT was blocked while this process started (see _sigint_blocked): ignore it, then unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # A driver killed with SIGKILL cannot stop us: we stop ourselves rather than idle forever.
    threading.Thread(target=_exit_when_orphaned, args=(driver_pid,), name="babelsieve-orphan-watch",
                     daemon=True).start()
    # SIGTERM from the driver: unwind the task (its temporary files are removed) instead of dying mid-write.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Address-space cap: a page that blows up the parser raises MemoryError for that record only.
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _exit_when_orphaned(driver_pid: int) -> None:
    while os.getppid() == driver_pid:
        time.sleep(0.5)
    os._exit(1)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Around ``submit``, which may start a worker: the worker inherits the blocked SIGINT over fork
    and exec, so a Ctrl-C while it imports cannot kill it with a KeyboardInterrupt traceback. A
    SIGINT meanwhile stays pending for the driver (it is not lost)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_in_worker(task_dict: dict[str, Any], config_json: str, max_retries: int) -> dict[str, Any]:
    """:func:`run_with_retries` in a pool worker; on SIGTERM (the driver cancels) the task unwinds
    (temporary files are removed on the way) and the process ends, instead of taking the next
    task from its queue."""
    try:
        return run_with_retries(task_dict, config_json, max_retries)
    except SystemExit as e:
        os._exit(e.code if isinstance(e.code, int) else 1)


def _stop_processes(ex: ProcessPoolExecutor, grace_s: float) -> None:
    """Shut ``ex`` down without ever blocking for long: after ``grace_s`` its worker is sent SIGTERM,
    1 s later SIGKILL. ``shutdown(wait=True)`` alone can wait forever on a worker that is busy or
    never reads its shutdown sentinel (and so can the interpreter's exit, which joins the pool)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())  # private, but the only handle on them
    ex.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 1.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


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


def _affinity_key(task: Task) -> str | None:
    """Tasks with the same key should run in the same worker: per-language stages (filter, dedup)
    load that language's tokenizer and caches once per process."""
    params = task.params or {}
    key = params.get("lang_script") or (params.get("lang_scripts") or [None])[0]  # work-sized: its first language
    return str(key) if key else None


class _Queue:
    """Pending tasks, largest local inputs first; keyed tasks grouped by affinity key."""

    def __init__(self, tasks: list[Task]) -> None:
        sizes = {t.task_id: _input_bytes(t) for t in tasks}
        known = all(v is not None for v in sizes.values())
        # stable: ties (and inputs that are not local files) keep the planned order
        ordered = sorted(tasks, key=lambda t: -(sizes[t.task_id] or 0)) if known else list(tasks)
        self.unkeyed: list[Task] = []
        self.by_key: dict[str, list[Task]] = {}
        self.key_bytes: dict[str, int] = {}
        for t in ordered:
            k = _affinity_key(t)
            if k is None:
                self.unkeyed.append(t)
            else:
                self.by_key.setdefault(k, []).append(t)
                self.key_bytes[k] = self.key_bytes.get(k, 0) + (sizes[t.task_id] or 0)
        self.unkeyed.reverse()  # pop() from the end = largest first

    def __bool__(self) -> bool:
        return bool(self.unkeyed) or any(self.by_key.values())

    def push_back(self, task: Task) -> None:
        """A task to run again (its worker died): next in line."""
        k = _affinity_key(task)
        if k is None:
            self.unkeyed.append(task)
        else:
            self.by_key.setdefault(k, []).insert(0, task)

    def pick(self, own: set[str], owned_by_others: set[str]) -> Task | None:
        """The next task for a worker that has loaded the keys ``own``.

        Its own keys first; then tasks without a key; then the biggest key no worker has
        started; then, when only other workers' keys are left, it helps with the key that has the
        most tasks remaining (taking from the end), so no worker idles while another has a queue.
        """
        for k in own:
            if self.by_key.get(k):
                return self.by_key[k].pop(0)
        if self.unkeyed:
            return self.unkeyed.pop()
        free = [k for k, ts in self.by_key.items() if ts and k not in owned_by_others]
        if free:
            k = max(free, key=lambda k: (self.key_bytes[k], len(self.by_key[k])))
            own.add(k)
            return self.by_key[k].pop(0)
        busy = [k for k, ts in self.by_key.items() if len(ts) >= 2]
        if busy:
            k = max(busy, key=lambda k: len(self.by_key[k]))
            own.add(k)
            return self.by_key[k].pop()
        return None


_IN_FLIGHT = 2  # tasks queued per worker process: the next one starts without a round trip to the driver


class LocalEngine(Engine):
    """Worker processes that live for the whole run, one single-process executor each.

    * Workers (and what they loaded: modules, the URL block lists, lid.176, tokenizers) are reused
      across stages instead of being started again for each stage.
    * Tasks are routed: a worker keeps getting the languages it has already loaded (filter and
      dedup tasks carry ``lang_script``), so with N workers each language's tokenizer is loaded
      about once rather than N times; an idle worker still takes other languages' tasks.
    * Largest local inputs first, so a big task does not start last.
    * A worker that dies (OOM killer, SIGKILL) is replaced; its tasks are rerun (``max_retries``).

    Only the order and the process in which tasks run change; each task writes the same files.
    """

    name = "local"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._executors: list[ProcessPoolExecutor | None] = []
        self._keys: list[set[str]] = []

    @property
    def workers(self) -> int:
        return self.config.engine_options.workers or os.cpu_count() or 1

    def _executor(self, i: int) -> ProcessPoolExecutor:
        ex = self._executors[i]
        if ex is not None and getattr(ex, "_broken", False):
            self._discard(i, ex)  # died while idle
            ex = None
        if ex is None:
            # spawn: no inherited threads/locks from the driver (polars, pyarrow and rich use threads).
            ex = self._executors[i] = ProcessPoolExecutor(
                max_workers=1,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.config.extract.memory_limit_mb, os.getpid()),
            )
        return ex

    def _discard(self, i: int, ex: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
        if self._executors[i] is ex:
            self._executors[i] = None
            self._keys[i] = set()
        _stop_processes(ex, grace_s)

    def close(self) -> None:
        """Stop the (idle) workers: they exit on their shutdown sentinel, or are terminated after 10 s."""
        if stopping():  # the run is being interrupted: do not wait for anything
            self.cancel()
            return
        for i, ex in enumerate(self._executors):
            if ex is not None:
                self._discard(i, ex)

    def cancel(self) -> None:
        """Stop at once (Ctrl-C, SIGTERM): running tasks are cancelled by terminating their workers;
        they wrote no manifest, so the next run redoes them."""
        live = [(i, ex) for i, ex in enumerate(self._executors) if ex is not None]
        for i, ex in live:  # every worker gets SIGTERM first, then each is waited for
            if self._executors[i] is ex:
                self._executors[i] = None
                self._keys[i] = set()
            for p in list((getattr(ex, "_processes", None) or {}).values()):
                if p.is_alive():
                    p.terminate()
        for _i, ex in live:
            _stop_processes(ex, 2.0)

    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        config_json = self.config.model_dump_json()
        results: dict[str, dict[str, Any]] = {}
        attempts: dict[str, int] = {t.task_id: 0 for t in tasks}
        max_retries = self.config.engine_options.max_retries
        n = max(1, min(self.workers, len(tasks)))
        while len(self._executors) < n:
            self._executors.append(None)
            self._keys.append(set())
        queue = _Queue(tasks)
        futures: dict[Future, tuple[int, ProcessPoolExecutor, Task]] = {}
        in_flight = [0] * n

        def fill() -> None:
            for i in range(n):
                while in_flight[i] < _IN_FLIGHT and queue:
                    others = set().union(*(self._keys[j] for j in range(n) if j != i))
                    t = queue.pick(self._keys[i], others)
                    if t is None:
                        break
                    ex = self._executor(i)
                    attempts[t.task_id] += 1
                    with _sigint_blocked():
                        futures[ex.submit(_run_in_worker, t.to_dict(), config_json, max_retries)] = (i, ex, t)
                    in_flight[i] += 1
            if queue and not futures:  # cannot happen by pick's rules; never stop with tasks left
                t = queue.pick(self._keys[0], set())
                if t is not None:
                    attempts[t.task_id] += 1
                    ex0 = self._executor(0)
                    with _sigint_blocked():
                        futures[ex0.submit(_run_in_worker, t.to_dict(), config_json, max_retries)] = (0, ex0, t)
                    in_flight[0] += 1

        completed = False
        try:
            fill()
            while futures:
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    i, ex, t = futures.pop(fut)
                    in_flight[i] -= 1
                    try:
                        res = fut.result()
                    except BrokenProcessPool:
                        # The worker died (OOM killer, SIGKILL): replace it, rerun its tasks.
                        self._discard(i, ex)
                        if attempts[t.task_id] <= max_retries:
                            queue.push_back(t)
                            continue
                        res = failed_result(t, "worker process died (killed or out of memory) on every attempt")
                    except TransientTaskError as e:  # retried in the worker, max_retries times
                        res = failed_result(t, f"{e} (transient error on {max_retries + 1} attempts)")
                    except TaskFailedError as e:
                        res = failed_result(t, str(e))
                    except Exception as e:  # noqa: BLE001 - any other failure belongs to this task only
                        res = failed_result(t, f"{type(e).__name__}: {e}")
                    res.setdefault("inputs", list(t.inputs))
                    results[t.task_id] = res
                    on_result(res)
                fill()
            completed = True
        finally:
            if not completed:  # interrupted (Ctrl-C, SIGTERM, a callback error): no half-used workers
                self.cancel()
        return [results[t.task_id] for t in tasks]
