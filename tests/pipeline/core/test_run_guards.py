"""Guards around a run: one run at a time per output, clean interrupts, shard ranges, and one-line
messages with the right exit status for storage trouble.

Everything here runs the real CLI in subprocesses (real worker processes, real signals, the S3 API
of moto's server) on small real WARC shards (the bundled sample, split).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.data import BABELSIEVE, SAMPLE_WARC, split_warc
from support.engines import data_files

# Extract and the global dedup stages (filter and finalize add time, not cases); no LID model.
FAST = ["--no-progress", "--set", "langid.backend=none", "--set", "extract.url_filter=false",
        "--set", "stages=[extract,dedup]"]
OTHER_CONFIG = ["--set", "dedup.seed=2"]  # another config hash, other dedup files
BOUND_S = 20  # an interrupted run must have exited this long after the signal
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _cmd(out: str | Path, shards: list[Path], *extra: str) -> list[str]:
    cmd = [BABELSIEVE, "run", "-o", str(out), "-w", "2", *FAST, *extra]
    for s in shards:
        cmd += ["-i", str(s)]
    return cmd


def _start(cmd: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    # Own session: like a shell job, and lets the test check that no worker outlives the driver.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env, **kw)


def _group_gone(pgid: int, wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.communicate()


def _wait_for(path: Path, p: subprocess.Popen, timeout: float = 60) -> bool:
    """True once ``path`` exists; False if ``p`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if p.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return split_warc(SAMPLE_WARC, tmp_path_factory.mktemp("warcs"), 3)


_CLEAN: dict[tuple[str, ...], dict[str, str]] = {}


def _clean(tmp_path_factory, shards: list[Path], *extra: str) -> dict[str, str]:
    """Data files of one uninterrupted run of this config (computed once per config)."""
    if extra not in _CLEAN:
        out = tmp_path_factory.mktemp("clean") / "out"
        r = subprocess.run(_cmd(out, shards, *extra), capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        _CLEAN[extra] = data_files(str(out))
        assert _CLEAN[extra]
    return _CLEAN[extra]


# ---------------------------------------------------------------------------------------------
# one run at a time per output


def _open_fifo_for_writing(fifo: Path, procs: list[subprocess.Popen], timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until the reader has opened it
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise
            time.sleep(0.02)


def _two_runs_at_once(cmd_a: list[str], cmd_b: list[str], fifo_dir: Path, env: dict[str, str] | None = None):
    """Start both runs so that they reach the output within milliseconds of each other: each reads
    its config from a named pipe, and both pipes are written at the same moment, once both
    processes have started (Python's start-up time varies by seconds on a busy machine)."""
    from babelsieve.pipeline.core.config import bundled_config_path

    text = bundled_config_path("dry-run").read_text()
    fifos = [fifo_dir / "a.yaml", fifo_dir / "b.yaml"]
    for f in fifos:
        os.mkfifo(f)
    a = _start(cmd_a[:2] + [str(fifos[0])] + cmd_a[2:], env)
    b = _start(cmd_b[:2] + [str(fifos[1])] + cmd_b[2:], env)
    try:
        writers = [_open_fifo_for_writing(f, [a, b]) for f in fifos]  # both readers are waiting now
        for fd in writers:
            os.write(fd, text.encode())
        for fd in writers:
            os.close(fd)
        ra, rb = a.communicate(timeout=300), b.communicate(timeout=300)
    finally:
        for p in (a, b):
            if p.poll() is None:
                _kill_group(p)
    return (a.returncode, ra[1]), (b.returncode, rb[1])


def test_two_runs_with_the_same_config_at_once_one_exits_and_the_output_is_one_runs(tmp_path, tmp_path_factory,
                                                                                      shards):
    out = tmp_path / "out"
    ra, rb = _two_runs_at_once(_cmd(out, shards), _cmd(out, shards), tmp_path)
    codes = sorted([ra[0], rb[0]])
    assert codes == [0, 1], (ra, rb)
    loser = ra[1] if ra[0] == 1 else rb[1]
    assert "with the same config" in loser and str(out) in loser and "Traceback" not in loser
    assert not (out / "_lock.json").exists()
    assert data_files(str(out)) == _clean(tmp_path_factory, shards)


def test_two_runs_with_different_configs_at_once_one_is_refused_and_nothing_is_mixed(tmp_path, tmp_path_factory,
                                                                                       shards):
    out = tmp_path / "out"
    ra, rb = _two_runs_at_once(_cmd(out, shards), _cmd(out, shards, *OTHER_CONFIG), tmp_path)
    assert sorted([ra[0], rb[0]]) == [0, 2], (ra, rb)
    refused = ra[1] if ra[0] == 2 else rb[1]
    assert ("different config" in refused or "Refusing to mix outputs" in refused) and "Traceback" not in refused
    winner = () if ra[0] == 0 else tuple(OTHER_CONFIG)
    run_hash = json.loads((out / "_run.json").read_text())["config_hash"]
    hashes = {json.loads(m.read_text())["config_hash"] for m in (out / "_manifests").rglob("*.json")}
    assert hashes == {run_hash}
    assert data_files(str(out)) == _clean(tmp_path_factory, shards, *winner)


def test_a_live_lock_is_kept_fresh_a_stale_one_is_reported_and_cleared_with_unlock(tmp_path, tmp_path_factory,
                                                                                    shards):
    out = tmp_path / "out"
    # A 1 s expiry, and a task that takes 60 s: the heartbeat must keep the lock alive meanwhile.
    env = {**os.environ, "BABELSIEVE_LOCK_TTL_S": "1", "BABELSIEVE_FAULT": "extract:00000:sleep"}
    a = _start(_cmd(out, shards), env)
    try:
        assert _wait_for(out / "_lock.json", a)
        time.sleep(2.5)
        r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1 and "with the same config" in r.stderr, r.stderr
        r = subprocess.run([BABELSIEVE, "unlock", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "live" in r.stderr  # not removed: its holder is alive
        os.killpg(a.pid, signal.SIGKILL)  # the holder dies without releasing it
        a.communicate()
    finally:
        if a.poll() is None:
            _kill_group(a)
    # As if it had run on a node that was lost: a holder on another host may only be late, never taken over.
    held = json.loads((out / "_lock.json").read_text())
    (out / "_lock.json").write_text(json.dumps({**held, "host": "lost-node"}))
    time.sleep(1.5)
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "heartbeat expired" in r.stderr and f"babelsieve unlock {out}" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([BABELSIEVE, "unlock", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "removed the lock" in r.stderr
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert data_files(str(out)) == _clean(tmp_path_factory, shards)


def test_a_run_whose_lock_is_removed_under_it_stops_with_exit_1(tmp_path, shards):
    out = tmp_path / "out"
    env = {**os.environ, "BABELSIEVE_LOCK_TTL_S": "2", "BABELSIEVE_FAULT": "extract:00000:sleep"}
    a = _start(_cmd(out, shards), env)
    try:
        assert _wait_for(out / "_faults" / "extract-00000", a)  # a task is running (for 60 s)
        r = subprocess.run([BABELSIEVE, "unlock", str(out), "--force"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "removed the lock of run" in r.stderr
        _, err = a.communicate(timeout=BOUND_S)  # the heartbeat (every 0.5 s) notices and stops the run
    finally:
        if a.poll() is None:
            _kill_group(a)
    assert a.returncode == 1 and f"the lock {out}/_lock.json is now held by nobody" in err, err
    assert _group_gone(a.pid)


@pytest.fixture(scope="module")
def s3(s3):
    """conftest's moto server, with the bucket "out"."""
    import boto3

    boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1").create_bucket(Bucket="out")
    return s3


@pytest.mark.infra  # starts moto's S3 server
def test_s3_conditional_create_is_exclusive(s3):
    """The S3 lock primitive: a conditional PUT (If-None-Match: *) that moto's server honours."""
    from babelsieve.pipeline.core import storage

    opts = {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}
    url = "s3://out/primitive/_lock.json"
    assert storage.create_exclusive(url, b'{"a": 1}', opts)
    assert not storage.create_exclusive(url, b'{"b": 2}', opts)
    assert storage.read_json(url, opts) == {"a": 1}


@pytest.mark.infra
def test_two_runs_at_once_on_s3_same_config_one_exits_different_config_one_is_refused(s3, tmp_path_factory,
                                                                                         shards):
    from babelsieve.pipeline.core import storage

    env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL": s3.endpoint}
    opts = {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}
    out = "s3://out/same"
    ra, rb = _two_runs_at_once(_cmd(out, shards), _cmd(out, shards), tmp_path_factory.mktemp("fifo"), env)
    assert sorted([ra[0], rb[0]]) == [0, 1], (ra, rb)
    assert "with the same config" in (ra[1] if ra[0] == 1 else rb[1])
    assert not storage.exists(f"{out}/_lock.json", opts)
    assert data_files(out, opts) == _clean(tmp_path_factory, shards)

    out = "s3://out/different"
    ra, rb = _two_runs_at_once(_cmd(out, shards), _cmd(out, shards, *OTHER_CONFIG), tmp_path_factory.mktemp("fifo"),
                               env)
    assert sorted([ra[0], rb[0]]) == [0, 2], (ra, rb)
    winner = () if ra[0] == 0 else tuple(OTHER_CONFIG)
    run_hash = storage.read_json(f"{out}/_run.json", opts)["config_hash"]
    manifests = storage.list_files(f"{out}/_manifests", ".json", opts)
    assert manifests and {storage.read_json(m, opts)["config_hash"] for m in manifests} == {run_hash}
    assert data_files(out, opts) == _clean(tmp_path_factory, shards, *winner)


# ---------------------------------------------------------------------------------------------
# clean interrupt


def _interrupt_runs(out: Path, shards: list[Path], sig: signal.Signals, n: int, seed: int) -> list[str]:
    """``n`` runs into ``out``, each sent ``sig`` at a random point once it holds the lock (to the
    driver alone, or to the whole process group as a terminal's Ctrl-C does); stdout and stderr
    are pipes, as under ``| tee``. Each must exit within BOUND_S, leave no process and no lock."""
    rng = random.Random(seed)
    # Extract task 00001 takes 60 s in every run (its fault marker is cleared before each run): an
    # interrupt must not wait for it, and no run completes before its signal, however fast the rest is.
    env = {**os.environ, "BABELSIEVE_FAULT": "extract:00001:sleep"}
    seen = []
    for k in range(n):
        shutil.rmtree(out / "_faults", ignore_errors=True)
        p = _start(_cmd(out, shards), env)
        try:
            if _wait_for(out / "_lock.json", p):
                time.sleep(rng.uniform(0.0, 2.5))
            t0 = time.monotonic()
            (os.killpg if k % 2 else os.kill)(p.pid, sig)
            try:
                _, err = p.communicate(timeout=BOUND_S)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"run {k}: still running {BOUND_S} s after {sig.name}") from None
            assert _group_gone(p.pid), f"run {k}: worker processes outlived the driver"
        finally:
            if p.poll() is None or not _group_gone(p.pid, 0):
                _kill_group(p)
        seconds = time.monotonic() - t0
        if p.returncode != 0:  # 0: the run had finished before the signal arrived
            assert p.returncode == 128 + sig, (k, p.returncode, err)
            assert f"interrupted ({sig.name})" in err and "Traceback" not in err, err
        assert not (out / "_lock.json").exists(), f"run {k} left its lock"
        seen.append(f"{p.returncode}:{seconds:.1f}s")
    return seen


def test_ctrl_c_in_a_loop_of_6_runs_never_hangs_and_the_output_resumes(tmp_path, tmp_path_factory, shards):
    out = tmp_path / "out"
    seen = _interrupt_runs(out, shards, signal.SIGINT, 6, seed=16)
    assert sum(s.startswith("130:") for s in seen) >= 3, seen  # most were really interrupted
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert data_files(str(out)) == _clean(tmp_path_factory, shards)


def test_sigterm_stops_the_run_within_seconds_and_the_output_resumes(tmp_path, tmp_path_factory, shards):
    out = tmp_path / "out"
    seen = _interrupt_runs(out, shards, signal.SIGTERM, 3, seed=17)
    assert sum(s.startswith("143:") for s in seen) >= 2, seen
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert data_files(str(out)) == _clean(tmp_path_factory, shards)


# ---------------------------------------------------------------------------------------------
# shard ranges and one-line messages


@pytest.mark.parametrize("shard_range", ["-1:", "2:1", "10:20", "1:1", "-2:-1"])
def test_a_shard_range_that_is_negative_empty_reversed_or_past_the_end_is_a_config_error(tmp_path, shards,
                                                                                         shard_range):
    out = tmp_path / "out"
    r = subprocess.run(_cmd(out, shards, f"--shards={shard_range}"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"--shards {shard_range}:" in r.stderr and "there are 3 input shard(s)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()  # refused before anything was written


def test_shard_ranges_name_tasks_by_position_so_they_never_collide(tmp_path, shards):
    out = tmp_path / "out"
    for rng, code in (("0:2", 0), ("1:", 0), ("-1:", 2), ("2:99", 0)):  # "2:99": a stop past the end is clipped
        r = subprocess.run(_cmd(out, shards, f"--shards={rng}", "--only", "extract"), capture_output=True, text=True)
        assert r.returncode == code, r.stderr
    # "-1:" once named shard 2 "-0001": a second manifest and duplicated documents.
    assert sorted(p.name for p in (out / "_manifests" / "extract").iterdir()) == ["00000.json", "00001.json",
                                                                                  "00002.json"]


def test_workers_0_is_a_config_error(tmp_path, shards):
    r = subprocess.run(_cmd(tmp_path / "out", shards, "--workers", "0"), capture_output=True, text=True)
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_is_a_file_is_one_line_exit_1(tmp_path, shards):
    out = tmp_path / "afile"
    out.write_text("not a directory")
    r = subprocess.run(_cmd(out, shards[:1]), capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert f"{out}: the output is a file, not a directory" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(_cmd(out / "sub", shards[:1]), capture_output=True, text=True)
    assert r.returncode == 1 and f"{out / 'sub'}: Not a directory" in r.stderr and "Traceback" not in r.stderr


def _as_unprivileged() -> dict:
    """Popen arguments that make permission bits apply to the child, also when the tests run as root:
    root's CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH are dropped from the bounding set before exec."""
    if os.geteuid() != 0:
        return {}
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused: cannot test a read-only output")

    return {"preexec_fn": drop}


def test_a_read_only_output_is_one_line_exit_1(tmp_path, shards):
    parent = tmp_path / "ro"
    parent.mkdir()
    existing = tmp_path / "existing"
    existing.mkdir()
    parent.chmod(0o555)
    existing.chmod(0o555)
    try:
        r = subprocess.run(_cmd(parent / "out", shards[:1]), capture_output=True, text=True, **_as_unprivileged())
        assert r.returncode == 1, r.stderr
        assert f"{parent / 'out'}: Permission denied" in r.stderr and "Traceback" not in r.stderr, r.stderr
        r = subprocess.run(_cmd(existing, shards[:1]), capture_output=True, text=True, **_as_unprivileged())
        assert r.returncode == 1, r.stderr
        assert f"{existing}/_lock.json: Permission denied" in r.stderr and "Traceback" not in r.stderr, r.stderr
    finally:
        parent.chmod(0o755)
        existing.chmod(0o755)


def test_disk_full_while_writing_the_task_log_still_prints_the_summary_and_leaves_no_temporaries(tmp_path):
    # 30 inputs that are not WARC files: every extract task fails, so the driver's task log (one line
    # per task, with the reason) is the largest file of the run; a 4,000-byte file-size limit
    # (`ulimit -f`: EFBIG, the same path as ENOSPC) lets _run.json through and stops the log.
    (tmp_path / "in").mkdir()
    bad = []
    for i in range(30):
        (tmp_path / "in" / f"{i:02d}.warc.gz").write_text(f"not a warc {i}\n")
        bad.append(Path("in") / f"{i:02d}.warc.gz")  # relative: short paths keep _run.json small
    r = subprocess.run(_cmd("out", bad), capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)))
    out = tmp_path / "out"
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "could not write the task log out/_logs/extract-" in r.stderr and "File too large" in r.stderr, r.stderr
    assert "babelsieve run summary" in r.stderr
    assert "FAILED extract/00000" in r.stderr and "not a WARC file" in r.stderr
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("content", [b'{"version": 1, "stage": "ext', b"[1, 2]"], ids=["truncated", "not-object"])
def test_a_corrupt_manifest_is_one_line_exit_1_naming_it(tmp_path, shards, content):
    out = tmp_path / "out"
    assert subprocess.run(_cmd(out, shards[:1], "--only", "extract"), capture_output=True).returncode == 0
    manifest = out / "_manifests" / "extract" / "00000.json"
    manifest.write_bytes(content)
    r = subprocess.run(_cmd(out, shards[:1]), capture_output=True, text=True)
    assert r.returncode == 1, r.stderr  # 1, not 2: an orchestrator retries 1
    assert f"{manifest} is unreadable" in r.stderr and "delete that manifest and rerun" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (out / "_lock.json").exists()


def test_refilter_takes_the_output_lock_and_is_refused_while_a_run_holds_it(tmp_path, shards):
    """refilter rewrites filter files and manifests: never interleaved with a run of the same output."""
    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.core.output_lock import OutputLock

    out = tmp_path / "out"
    base = ["--no-progress", "--set", "langid.backend=none", "--set", "extract.url_filter=false",
            "--set", "stages=[extract,dedup,filter]"]
    r = subprocess.run([BABELSIEVE, "run", "--output", str(out), *base, *[a for s in shards for a in ("-i", str(s))]],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    before = data_files(str(out))
    lock = OutputLock.acquire(load_config(None, output=str(out), sets=base[2::2]), command="run")
    try:
        r = subprocess.run([BABELSIEVE, "refilter", str(out), "--language", "und", "--set", "min_avg_word_length=5"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "is being written by run" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert data_files(str(out)) == before  # nothing rewritten while the lock is held
    finally:
        lock.release()
    r = subprocess.run([BABELSIEVE, "refilter", str(out), "--language", "und", "--set", "min_avg_word_length=5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert not (out / "_lock.json").exists()


def test_a_lock_left_by_a_killed_driver_of_this_host_is_taken_over_by_the_rerun(tmp_path, tmp_path_factory, shards):
    """SIGKILL leaves the lock behind; its process is gone from this host, so a plain rerun resumes."""
    out = tmp_path / "out"
    env = {**os.environ, "BABELSIEVE_FAULT": "extract:00000:sleep"}
    a = _start(_cmd(out, shards), env)
    try:
        assert _wait_for(out / "_lock.json", a)
        os.killpg(a.pid, signal.SIGKILL)
        a.communicate()
    finally:
        if a.poll() is None:
            _kill_group(a)
    held = json.loads((out / "_lock.json").read_text())
    r = subprocess.run(_cmd(out, shards), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"took over the lock of run {held['run_id']}" in r.stderr, r.stderr
    assert not (out / "_lock.json").exists()
    assert data_files(str(out)) == _clean(tmp_path_factory, shards)
