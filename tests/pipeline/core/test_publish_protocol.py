"""The commit protocol's first half (docs/design.md, "Commit protocol"): a published file is never seen,
nor left behind, partly written.

Resume alone cannot show this (test_resume_after_kill.py): a task killed mid-write has no manifest
and is simply redone, so a half-written file is overwritten either way. A reader of the output during
a run, and a run killed while rewriting a file, depend on it. Real processes and a real SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SIZE = 64 * 1024 * 1024  # large enough that writing it takes many system calls

_PUBLISH = r"""
import sys
from babelsieve.pipeline.core import storage
storage.publish_bytes(sys.argv[1], b"x" * int(sys.argv[2]))
"""


def _start(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _PUBLISH, str(path), str(SIZE)])


def _names(directory: Path, name: str) -> list[str]:
    try:
        return [e.name for e in os.scandir(directory) if e.name.startswith(name)]
    except FileNotFoundError:
        return []


def test_a_reader_sees_the_file_whole_or_not_at_all(tmp_path):
    path = tmp_path / "out" / "part.parquet"
    proc = _start(path)
    sizes = set()
    while proc.poll() is None:
        try:
            sizes.add(path.stat().st_size)
        except FileNotFoundError:
            pass
    assert proc.returncode == 0
    sizes.add(path.stat().st_size)
    assert sizes == {SIZE}


def test_a_publisher_killed_mid_write_leaves_no_partial_file_under_the_final_name(tmp_path):
    path = tmp_path / "out" / "part.parquet"
    proc = _start(path)
    deadline = time.time() + 120
    seen: list[str] = []
    while time.time() < deadline and proc.poll() is None and not seen:
        seen = _names(path.parent, path.name)  # the first byte of either name is on disk
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen, "the publisher finished before anything appeared"
    assert proc.returncode == -signal.SIGKILL, "the publisher finished before it could be killed"
    assert not path.exists() or path.stat().st_size == SIZE
