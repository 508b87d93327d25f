"""Resume after the driver dies, and after the whole run dies while task files are being written.

test_resume.py kills one pool worker, which the local engine reruns in the same run. Here the CLI
process itself is SIGKILLed (its workers are orphaned), and then every process of the run at once
(SIGKILL of its process group) at a moment when a task has published some of its data files but
not yet its manifest. A rerun of the same command must then produce exactly the files of an
uninterrupted run (sha256 of every data file of every stage) with no document twice.

Real processes and signals; language ID on (several languages per task, so a task writes several
files before its manifest); the URL filter off to keep each worker's start-up short.
"""

from __future__ import annotations

import collections
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from support.data import BABELSIEVE, SAMPLE_WARC, split_warc

ARGS = ["--no-progress", "--workers", "2", "--set", "extract.url_filter=false", "--set", "langid.backend=auto"]
STAGES = ("extract", "dedup", "filter", "finalize")


def _cmd(out: Path, shards: list[Path]) -> list[str]:
    cmd = [BABELSIEVE, "run", "--output", str(out), *ARGS]
    for s in shards:
        cmd += ["--input", str(s)]
    return cmd


def _data_files(out: Path) -> dict[str, str]:
    """{relative path: sha256} of every Parquet data file (not manifests, not temporary files)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.parquet")) if not p.relative_to(out).parts[0].startswith("_")}


def _ids(out: Path, stage: str) -> list[str]:
    return [i for p in sorted((out / stage).rglob("*.parquet"))
            for i in pq.read_table(p, columns=["id"])["id"].to_pylist()]


def _kill_group_and_wait(pgid: int, timeout: float = 30) -> None:
    """SIGKILL every process left in the run's own process group (started by this test) and wait for them."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [p for p in psutil.process_iter(["pid"]) if _pgid(p.info["pid"]) == pgid]
        if not alive:
            return
        time.sleep(0.1)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return split_warc(SAMPLE_WARC, tmp_path_factory.mktemp("shards"), 6)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, shards):
    """An uninterrupted run of every default stage."""
    out = tmp_path_factory.mktemp("clean") / "out"
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    files = _data_files(out)
    for stage in STAGES:
        assert any(f.startswith(stage + "/") for f in files), stage
    langs = {f.split("/")[1] for f in files if f.startswith("extract/")}
    assert len(langs) >= 3, langs  # several files per extract task
    return {"files": files, "finalize_ids": sorted(_ids(out, "finalize"))}


def _resume_and_compare(out: Path, shards: list[Path], clean: dict) -> None:
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = _data_files(out)
    assert sorted(got) == sorted(clean["files"])  # no file missing, no stray file from the dead run
    assert got == clean["files"]  # and the same bytes
    for stage in STAGES:
        ids = _ids(out, stage)
        assert [i for i, n in collections.Counter(ids).items() if n > 1] == [], stage  # no document twice
    assert sorted(_ids(out, "finalize")) == clean["finalize_ids"]


def test_sigkill_of_the_driver_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path, shards, clean):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(out, shards), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group, so the test can clean up
    manifests = out / "_manifests" / "extract"
    killed_at = None
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            done = len(list(manifests.glob("*.json"))) if manifests.exists() else 0
            if 1 <= done < len(shards):  # some extract tasks finished, others still running
                os.kill(proc.pid, signal.SIGKILL)  # the CLI process only: its workers are orphaned
                killed_at = done
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        _kill_group_and_wait(proc.pid)  # orphaned workers of the dead driver, if any are left
    assert killed_at is not None, "the extract stage finished before the driver could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "_manifests" / "finalize").exists()  # the run really was cut short
    _resume_and_compare(out, shards, clean)


def _half_published_task(out: Path) -> str | None:
    """A task of extract whose data files are (partly) on disk but whose manifest is not, or None."""
    manifests = out / "_manifests" / "extract"
    root = out / "extract"
    if not root.exists():
        return None
    for f in os.scandir(root):  # one file per task: extract/<task>.parquet (written via a .tmp- file)
        task = f.name.split(".")[0]
        if (".tmp-" in f.name or f.name.endswith(".parquet")) and not (manifests / f"{task}.json").exists():
            return f"extract/{f.name}"
    return None


def _kill_when_half_published(out: Path, shards: list[Path]) -> str | None:
    """Start a run, SIGKILL its whole process group as soon as a task looks half published; return the task
    that is half published once every process is dead (None if the run won the race: the worker wrote its
    manifest between the look and the kill, or the run ended first)."""
    proc = subprocess.Popen(_cmd(out, shards), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if _half_published_task(out):
                os.killpg(proc.pid, signal.SIGKILL)  # driver and every worker at once
                break
            time.sleep(0.002)
        proc.wait(timeout=60)
    finally:
        _kill_group_and_wait(proc.pid)
    return _half_published_task(out)  # nothing runs any more: this is the state a rerun finds


def test_sigkill_of_the_whole_run_mid_write_then_resume_equals_an_uninterrupted_run(tmp_path, shards, clean):
    # One file per extract task makes the window between its data file and its manifest short, so the kill
    # can land just after it; such an attempt proves nothing and is made again in a fresh output.
    for attempt in range(8):
        out = tmp_path / f"out{attempt}"
        caught = _kill_when_half_published(out, shards)
        if caught:
            break
    assert caught is not None, "no task was caught between its first data file and its manifest"
    task = caught.split("/")[1].split(".")[0]
    assert not (out / "_manifests" / "extract" / f"{task}.json").exists()  # killed before the manifest
    _resume_and_compare(out, shards, clean)
