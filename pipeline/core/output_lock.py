"""One run at a time per output: the lock object ``OUTPUT/_lock.json``.

A run creates the lock before it plans anything, with a conditional create
(:func:`storage.create_exclusive`: a hard link on local disks, ``If-None-Match: *`` on S3), so of
two runs started together exactly one gets it. The lock records who holds it (run id, host, pid,
config hash, start time) and a heartbeat: a thread rewrites it every ``ttl/4`` seconds with a new
expiry (``heartbeat + ttl``). It is deleted when the run ends, however it ends (success, failed
tasks, an error, Ctrl-C or SIGTERM).

A run that finds the lock held:

* by a live run with a **different config** is refused (exit 2) before it writes anything;
* by a live run with the **same config** exits at once (exit 1: an orchestrator's retry will find
  the output free, and the rerun resumes from the manifests);
* held by a process **of this host that no longer exists** (the driver was SIGKILLed, the OOM killer,
  a pod restarted with the same host name) is taken over, and the takeover is reported: that holder is
  certainly gone, and a plain rerun must resume a killed run;
* whose heartbeat has **expired** on another host (the holder was killed: SIGKILL, a lost node) is told
  so and how to clear it: ``babelsieve unlock OUTPUT``. Such a lock is never broken automatically,
  because a holder whose heartbeat is late is not necessarily dead (a paused VM, a partitioned network).

``BABELSIEVE_LOCK_TTL_S`` sets the expiry (default 120 s). Hosts' clocks are assumed to agree to
well within it (NTP).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.layout import RunLayout

DEFAULT_TTL_S = 120.0


class OutputLockedError(RuntimeError):
    """Another run holds the output's lock (live with the same config, or stale)."""

    def __init__(self, message: str, holder: dict[str, Any] | None, stale: bool):
        super().__init__(message)
        self.holder = holder
        self.stale = stale


class OutputLockConfigError(OutputLockedError):
    """The output's lock is held by a live run with a different config (a configuration error)."""


class LockLostError(RuntimeError):
    """This run's lock was removed or taken over while it ran (``unlock --force``, a long stall)."""


def lock_url(output: str) -> str:
    return RunLayout(output).lock


def ttl_seconds() -> float:
    """The lock expiry: ``BABELSIEVE_LOCK_TTL_S`` or 120 s."""
    raw = os.environ.get("BABELSIEVE_LOCK_TTL_S", "")
    try:
        return max(float(raw), 0.5) if raw else DEFAULT_TTL_S
    except ValueError:
        return DEFAULT_TTL_S


def read_lock(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The lock record of ``output``, or None when it is not locked."""
    try:
        return storage.read_json(lock_url(output), storage_options)
    except FileNotFoundError:
        return None


def is_stale(record: dict[str, Any], now: float | None = None) -> bool:
    """True when the holder's heartbeat has expired."""
    try:
        return (now or time.time()) > float(record.get("expires", 0))
    except (TypeError, ValueError):
        return True


def holder_is_gone(record: dict[str, Any]) -> bool:
    """True when the holder ran on this host and its process no longer exists (it cannot release the
    lock any more). A reused pid counts as alive: the safe side."""
    if record.get("host") != socket.gethostname():
        return False
    try:
        pid = int(record.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def describe_holder(record: dict[str, Any], now: float | None = None) -> str:
    """``run 3f2a… (host h, pid 12, config abcd…, started 12:00:01 UTC, heartbeat 5 s ago)``."""
    now = now or time.time()
    started = record.get("started")
    started_s = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if isinstance(started, (int, float))
                 else "?")
    beat = record.get("heartbeat")
    beat_s = f"{now - beat:.0f} s ago" if isinstance(beat, (int, float)) else "never"
    return (f"run {record.get('run_id', '?')} (host {record.get('host', '?')}, pid {record.get('pid', '?')}, "
            f"{record.get('command', 'run')}, config {record.get('config_hash', '?')}, started {started_s}, "
            f"last heartbeat {beat_s})")


@dataclass
class OutputLock:
    """A held lock; :meth:`release` it (or use it as a context manager)."""

    output: str
    storage_options: dict[str, Any]
    record: dict[str, Any]
    ttl: float
    lost: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, config: PipelineConfig, command: str = "run") -> OutputLock:
        """Take the lock of ``config.output`` or raise :class:`OutputLockedError` (see module doc)."""
        ttl = ttl_seconds()
        now = time.time()
        record = {
            "run_id": uuid.uuid4().hex[:16], "host": socket.gethostname(), "pid": os.getpid(), "command": command,
            "config_hash": config.content_hash(), "started": now, "heartbeat": now, "expires": now + ttl,
            "ttl_s": ttl,
        }
        url = lock_url(config.output)
        opts = config.storage_options
        _check_output_is_a_directory(config.output, opts)
        for _attempt in range(5):
            if storage.create_exclusive(url, _encode(record), opts):
                held = read_lock(config.output, opts)  # a second look: an object store's create may race
                if held is None or held.get("run_id") != record["run_id"]:
                    raise OutputLockedError(_held_message(config, held or record, False), held, False)
                lock = cls(config.output, opts, record, ttl)
                lock._start_heartbeat()
                return lock
            try:
                held = read_lock(config.output, opts)
            except storage.CorruptFileError:
                # Being written by an O_EXCL create (no hard links on this file system): look again.
                time.sleep(0.2)
                continue
            if held is None:  # released between our attempt and our look: try again
                continue
            if holder_is_gone(held) and held.get("config_hash") == record["config_hash"]:
                # Its process is gone from this host: remove that lock (if it is still that one) and retry.
                again = read_lock(config.output, opts)
                if again is not None and again.get("run_id") == held.get("run_id"):
                    storage.remove(url, opts)
                    record["took_over_from"] = held.get("run_id")
                continue
            stale = is_stale(held)
            if not stale and held.get("config_hash") != record["config_hash"]:
                raise OutputLockConfigError(_held_message(config, held, False), held, False)
            raise OutputLockedError(_held_message(config, held, stale), held, stale)
        raise OutputLockedError(f"{url}: could not take the lock (it keeps appearing and disappearing)", None, False)

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="babelsieve-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = self.ttl / 4
        last_ok = time.time()
        while not self._stop.wait(interval):
            try:
                held = read_lock(self.output, self.storage_options)
                if held is None or held.get("run_id") != self.record["run_id"]:
                    who = describe_holder(held) if held else "nobody (the lock was deleted)"
                    self._lose(f"the lock {lock_url(self.output)} is now held by {who}")
                    return
                now = time.time()
                self.record.update(heartbeat=now, expires=now + self.ttl)
                storage.publish_bytes(lock_url(self.output), _encode(self.record), self.storage_options)
                last_ok = now
            except Exception as e:  # noqa: BLE001 - a flaky store: keep trying until the lock would expire
                if time.time() - last_ok > self.ttl:
                    self._lose(f"the lock {lock_url(self.output)} could not be refreshed for {self.ttl:.0f} s ({e})")
                    return

    def _lose(self, reason: str) -> None:
        """Stop the run: another run may now write this output."""
        self.lost = reason
        if not self._stop.is_set() and callable(signal.getsignal(signal.SIGINT)):
            # The run stops as on Ctrl-C, and the runner reports LockLostError. A real signal to the
            # main thread, not _thread.interrupt_main(): that one does not wake a thread blocked on a lock.
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            held = read_lock(self.output, self.storage_options)
            if held is not None and held.get("run_id") == self.record["run_id"]:
                storage.remove(lock_url(self.output), self.storage_options, recursive=False)
        except (OSError, storage.CorruptFileError):
            pass  # left behind, it expires: the next run reports it as stale

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def break_lock(output: str, storage_options: dict[str, Any] | None = None,
               force: bool = False) -> dict[str, Any] | None:
    """Delete ``output``'s lock; only a stale one unless ``force``. Returns the removed record.

    Raises :class:`OutputLockedError` for a live lock without ``force``.
    """
    try:
        held = read_lock(output, storage_options)
    except storage.CorruptFileError:
        held = {"run_id": "?", "expires": 0}  # unreadable: nobody can be refreshing it properly
    if held is None:
        return None
    if not force and not is_stale(held):
        raise OutputLockedError(
            f"{output} is locked by a live {describe_holder(held)}; not removing it. If you are sure that run "
            f"is gone, `babelsieve unlock {output} --force`.", held, False)
    storage.remove(lock_url(output), storage_options, recursive=False)
    return held


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, indent=1).encode()


def _check_output_is_a_directory(output: str, storage_options: dict[str, Any]) -> None:
    fs, path = storage.filesystem(output, storage_options)
    if fs.isfile(path):
        raise NotADirectoryError(errno.ENOTDIR, "the output is a file, not a directory", output)


def _held_message(config: PipelineConfig, held: dict[str, Any], stale: bool) -> str:
    out = config.output
    who = describe_holder(held)
    if stale:
        late = time.time() - float(held.get("expires", 0))
        return (f"{out} is locked by {who}, whose heartbeat expired {late:.0f} s "
                f"ago: that run was probably killed. If no run is writing this output, clear the lock with "
                f"`babelsieve unlock {out}`, then rerun to resume.")
    if held.get("config_hash") != config.content_hash():
        return (f"{out} is being written by {who} with a different config ({held.get('config_hash')}; this config "
                f"is {config.content_hash()}). Refusing to mix outputs: use another --output.")
    return (f"{out} is being written by another {who} with the same config. One run at a time writes an output: "
            f"wait for it to finish (then rerun to resume), or stop it.")
