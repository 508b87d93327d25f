"""Resume: a killed worker or run loses nothing and duplicates nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import psutil
import pytest

from support.data import BABELSIEVE, SAMPLE_WARC, split_warc

ARGS = ["--no-progress", "--workers", "2", "--only", "extract", "--set", "langid.backend=none",
        "--set", "extract.url_filter=false"]


def _cmd(out, shards):
    cmd = [BABELSIEVE, "run", "--output", str(out), *ARGS]
    for s in shards:
        cmd += ["--input", str(s)]
    return cmd


def _data_files(out) -> dict[str, str]:
    files = {}
    for p in sorted(out.rglob("*.parquet")):
        if "_manifests" not in p.parts:
            files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return split_warc(SAMPLE_WARC, tmp_path_factory.mktemp("shards"), 6)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, shards):
    out = tmp_path_factory.mktemp("clean") / "out"
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return _data_files(out)


def test_sigkill_of_a_worker_mid_run_then_rerun_is_identical(tmp_path, shards, clean):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(out, shards), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifests = out / "_manifests" / "extract"
    deadline = time.time() + 120
    killed = None
    while time.time() < deadline and proc.poll() is None:
        done = list(manifests.glob("*.json")) if manifests.exists() else []
        workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
                   if "resource_tracker" not in " ".join(c.cmdline())]
        if done and workers:
            killed = workers[-1]
            os.kill(killed.pid, 9)
            break
        time.sleep(0.05)
    assert killed is not None, "the run finished before a worker could be killed"
    proc.communicate(timeout=300)
    # Whatever the first attempt's exit status, a rerun completes the run.
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _data_files(out) == clean


def test_injected_worker_kill_is_retried_within_the_run(tmp_path, shards, clean):
    out = tmp_path / "out"
    env = {**os.environ, "BABELSIEVE_FAULT": "extract:00003:kill"}
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (out / "_faults" / "extract-00003").exists()  # the fault really fired
    assert _data_files(out) == clean


def test_rerun_of_a_finished_run_does_no_work(tmp_path, shards):
    out = tmp_path / "out"
    assert subprocess.run(_cmd(out, shards[:2]), capture_output=True).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    r = subprocess.run(_cmd(out, shards[:2]), capture_output=True, text=True)
    assert r.returncode == 0
    assert "cached" in r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before


def test_different_config_into_same_output_is_refused(tmp_path, shards):
    out = tmp_path / "out"
    assert subprocess.run(_cmd(out, shards[:1]), capture_output=True).returncode == 0
    r = subprocess.run(
        _cmd(out, shards[:1]) + ["--set", "extract.favour_precision=false"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "Refusing to mix outputs" in r.stderr
