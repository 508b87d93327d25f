"""How a run stops on Ctrl-C (SIGINT) or SIGTERM.

The driver stops scheduling and **cancels** the running tasks: the local engine terminates its
worker processes (SIGTERM, then SIGKILL after a short grace), Ray cancels the in-flight tasks,
Spark cancels the job group. Letting tasks finish would keep a preempted node or an impatient
user waiting for minutes (an extract task is one whole WARC); a cancelled task never wrote its
manifest, so the next run redoes exactly the unfinished tasks. The output lock is released and
the driver exits with status 128 + signal number (130 for SIGINT, 143 for SIGTERM).

A second signal while stopping is ignored; if stopping takes longer than ``grace_s`` (an engine
that does not let go), a watchdog ends the process anyway, so the driver always exits within
seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_GRACE_S = 15.0
_STOPPING = threading.Event()


def stopping() -> bool:
    """True once SIGINT/SIGTERM has interrupted the run: clean-up code should not wait for anything."""
    return _STOPPING.is_set()


class RunInterrupted(KeyboardInterrupt):
    """Raised in the driver's main thread by SIGINT or SIGTERM (a KeyboardInterrupt, so that code
    which already cleans up on Ctrl-C does the same for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def signals_stop_the_run(grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """Within this block, SIGINT and SIGTERM raise :class:`RunInterrupted` in the main thread.

    Only for a process that exits after the block (the CLI): the watchdog started by the first
    signal ends the process ``grace_s`` seconds later if it is still alive.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            return  # already stopping: a second Ctrl-C must not break the clean-up half way
        fired.append(signum)
        _STOPPING.set()
        threading.Thread(target=_exit_later, args=(signum, grace_s), name="babelsieve-stop-watchdog",
                         daemon=True).start()
        raise RunInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not fired:
            for sig, h in previous.items():
                signal.signal(sig, h)
            _STOPPING.clear()


def _exit_later(signum: int, grace_s: float) -> None:
    threading.Event().wait(grace_s)
    try:
        sys.stderr.write(f"babelsieve: still stopping {grace_s:.0f} s after {signal.Signals(signum).name}; "
                         "exiting now "
                         "(if `babelsieve run` then reports the output as locked, see `babelsieve unlock`)\n")
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)
