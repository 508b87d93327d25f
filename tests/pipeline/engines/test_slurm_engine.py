"""The Slurm engine against a real Slurm: munge + slurmctld + slurmd started by deploy/slurm/local-cluster.sh.

Nothing is mocked: jobs are submitted with sbatch, cancelled with scancel and killed by Slurm's own
time limit. The single node has this machine's CPUs; each array task takes one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from babelsieve.pipeline.stages import STAGE_GROUPS

from support.data import BABELSIEVE, REPO, SAMPLE_WARC, split_warc
from support.engines import all_rows, data_files

pytestmark = pytest.mark.infra

SCRIPT = REPO / "deploy" / "slurm" / "local-cluster.sh"
FAST = ["--set", "extract.url_filter=false"]  # the URL block list is a fixed ~20 s load per process
NO_LID = ["--set", "langid.backend=none"]  # only where language ID is irrelevant to what is tested


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


def _pids(d: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (d / "run").glob("*.pid")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-machine Slurm; SLURM_CONF set for this process and its children."""
    if shutil.which("sbatch") is None or shutil.which("munged") is None:
        pytest.fail("slurm-wlm and munge are not installed (apt-get install slurm-wlm munge; .ci/run does it)")
    d = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "BABELSIEVE_SLURM_DIR": str(d), "BABELSIEVE_SLURM_PORT": str(_free_port_pair())}
    r = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "BABELSIEVE_SLURM_POLL_S")}
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    os.environ["BABELSIEVE_SLURM_POLL_S"] = "0.5"
    pids = _pids(d)
    assert set(pids) == {"munged", "slurmctld", "slurmd"}
    try:
        yield d
    finally:
        r = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        assert r.returncode == 0, r.stdout + r.stderr
        # isolation: no daemon of ours survives the module
        assert not [n for n, p in pids.items() if _alive(p)], f"daemons left running: {pids}"


@pytest.fixture(autouse=True)
def no_jobs_left(cluster):
    yield
    subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True)
    deadline = time.time() + 20
    while time.time() < deadline and subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.3)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return split_warc(SAMPLE_WARC, tmp_path_factory.mktemp("in"), 3)


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([BABELSIEVE, "run", *args, "--no-progress"], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def _start(args: list[str]) -> subprocess.Popen:
    """A `babelsieve run` in the background: the local reference run overlaps the Slurm run's waits."""
    return subprocess.Popen([BABELSIEVE, "run", *args, "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _inputs(shards: list[Path]) -> list[str]:
    return [a for p in shards for a in ("--input", str(p))]


def _extract_task_id(shards: list[Path], i: int) -> str:
    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.stages.extract import ExtractStage

    cfg = load_config(None, inputs=[str(p) for p in shards], output="/nonexistent")
    return ExtractStage(cfg).plan()[i].task_id


def _wait_for(path: Path, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def _queued(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout


def test_same_parquet_as_local_engine_for_every_stage(cluster, shards, tmp_path):
    """The default stages (extract with lid.176, dedup, filter, finalize): byte-identical Parquet."""
    common = [*_inputs(shards), *FAST, "--set", "langid.backend=lid176"]
    local = _start([*common, "--engine", "local", "--workers", "1", "--output", str(tmp_path / "local")])
    slurm = _run([*common, "--engine", "slurm", "--output", str(tmp_path / "slurm"),
                  "--set", "engine_options.slurm.max_array_size=2"])  # 2 indices: several tasks per index
    assert slurm.returncode == 0, slurm.stderr
    local = _finish(local)
    assert local.returncode == 0, local.stderr
    assert "submitted job array" in slurm.stderr
    a, b = data_files(str(tmp_path / "local")), data_files(str(tmp_path / "slurm"))
    stages = {p.split("/")[0] for p in a}
    assert {"extract", "dedup", "filter", "finalize"} <= stages, stages
    assert a == b
    # the task lists and one log file per array task
    assert sorted(p.name for p in (tmp_path / "slurm" / "_slurm").glob("extract-*.json")) == ["extract-1.json"]
    plan = json.loads((tmp_path / "slurm" / "_slurm" / "extract-1.json").read_text())
    assert plan["size"] == 2 and len(plan["tasks"]) == 3
    assert len(list((tmp_path / "slurm" / "_logs" / "slurm").glob("extract-*_*.log"))) == 2
    # a rerun submits nothing: every task is cached by its manifest
    again = _run([*common, "--engine", "slurm", "--output", str(tmp_path / "slurm")])
    assert again.returncode == 0, again.stderr
    assert "submitted job array" not in again.stderr
    assert data_files(str(tmp_path / "slurm")) == a


def test_scancel_of_a_running_array_task_then_rerun(cluster, shards, tmp_path):
    victim = _extract_task_id(shards, 1)
    out = tmp_path / "slurm"
    local = _start([*_inputs(shards), *FAST, *NO_LID, "--engine", "local", "--workers", "1", "--output",
                    str(tmp_path / "local"), "--only", "extract"])
    args = [*_inputs(shards), *FAST, *NO_LID, "--engine", "slurm", "--output", str(out), "--only", "extract",
            "--set", "engine_options.max_retries=0"]
    proc = subprocess.Popen([BABELSIEVE, "run", *args, "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "BABELSIEVE_SLURM_TEST_SLEEP": f"extract:{victim}:120"})
    try:
        array_task = _wait_for(out / "_slurm" / "_test_sleep" / f"extract-{victim}")  # "<jobid>_<index>"
        assert "RUNNING" in _queued(array_task)
        subprocess.run(["scancel", array_task], check=True)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert f"extract/{victim}" in err and "killed by Slurm (CANCELLED)" in err  # named in the summary
    assert f"_logs/slurm/extract-{array_task}.log" in err

    rerun = _run(args)  # the same command: only the cancelled task is submitted again
    assert rerun.returncode == 0, rerun.stderr
    assert "(1 task(s) in 1 array task(s))" in rerun.stderr

    local = _finish(local)
    assert local.returncode == 0, local.stderr
    assert data_files(str(out)) == data_files(str(tmp_path / "local"))
    ids = [r["id"] for r in all_rows(str(out))]
    assert len(ids) == len(set(ids)) == len(all_rows(str(tmp_path / "local")))


def test_task_over_its_time_limit_is_resubmitted_and_a_bad_shard_is_not(cluster, shards, tmp_path):
    """time='1' (one minute, Slurm's smallest); the first attempt of one task sleeps past it: TIMEOUT,
    resubmitted, done. A shard that is not a WARC fails once, inside its array task: named in the
    summary with its Slurm log, and never resubmitted."""
    victim = _extract_task_id(shards, 0)
    bad = tmp_path / "not-a-warc.warc.gz"
    bad.write_bytes(b"this is not a gzip file\n" * 100)
    out = tmp_path / "slurm"
    r = _run([*_inputs([*shards, bad]), *FAST, *NO_LID, "--engine", "slurm", "--output", str(out), "--only",
              "extract", "--set", "engine_options.slurm.time='1'", "--set", "engine_options.max_retries=1"],
             env={"BABELSIEVE_SLURM_TEST_SLEEP": f"extract:{victim}:600"})
    assert r.returncode == 1, r.stderr  # the bad shard
    assert "ended TIMEOUT; resubmitting (attempt 2)" in r.stderr
    assert sorted(p.name for p in (out / "_slurm").glob("extract-*.json")) == ["extract-1.json", "extract-2.json"]
    retried = json.loads((out / "_slurm" / "extract-2.json").read_text())
    assert [t["task_id"] for t in retried["tasks"]] == [victim]  # not the bad shard
    summary = json.loads((out / "_summary.json").read_text())["stages"][0]
    assert (summary["done"], summary["failed"]) == (3, 1)
    (failure,) = summary["failures"]
    assert failure["inputs"] == [str(bad)] and "[slurm log: " in failure["error"]
    assert "FAILED extract/" in r.stderr and str(bad) in r.stderr
    # `babelsieve logs --failed` shows it, with the array task's log file, which holds the traceback
    logs = subprocess.run([BABELSIEVE, "logs", str(out), "--failed", "--json"], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    (line,) = [json.loads(x) for x in logs]
    log_file = Path(line["error"].split("[slurm log: ")[1].rstrip("]"))
    assert log_file.parent == out / "_logs" / "slurm" and "Traceback" in log_file.read_text()


def test_no_wait_then_status(cluster, shards, tmp_path):
    """--no-wait submits extract and the dedup arrays at once (afterok); status follows them."""
    out = tmp_path / "slurm"
    first = _extract_task_id(shards, 0)
    common = [*_inputs(shards), *FAST, *NO_LID, "--set", "stages=[extract,dedup]"]
    r = _run([*common, "--engine", "slurm", "--output", str(out), "--no-wait"],
             env={"BABELSIEVE_SLURM_TEST_SLEEP": f"extract:{first}:4"})
    assert r.returncode == 0, r.stderr
    local = _start([*common, "--engine", "local", "--workers", "1", "--output", str(tmp_path / "local")])
    jobs = r.stdout.split()
    # extract + every task stage of dedup (signatures, the two merge levels, buckets, clusters, annotate)
    assert len(jobs) == 1 + len(STAGE_GROUPS["dedup"]) == 7, r.stdout
    assert f"babelsieve status {out}" in r.stderr
    deps = [subprocess.run(["squeue", "-h", "-j", j, "-o", "%E"], capture_output=True, text=True).stdout
            for j in jobs[1:]]
    # deps has one entry per job after the first: the last job has no successor to pair with
    for previous, dep in zip(jobs, deps, strict=False):
        assert f"afterok:{previous}" in dep, deps  # chained, each stage on the one before
    st = json.loads(subprocess.run([BABELSIEVE, "status", str(out), "--json"], capture_output=True, text=True,
                                   check=True).stdout)
    assert not st["complete"] and st["totals"]["pending"] >= 1
    deadline = time.time() + 150
    while time.time() < deadline and any(_queued(j).strip() for j in jobs):
        time.sleep(1)
    st = json.loads(subprocess.run([BABELSIEVE, "status", str(out), "--json"], capture_output=True, text=True,
                                   check=True).stdout)
    assert st["complete"], json.dumps(st, indent=1)
    assert st["totals"]["pending"] == 0 and st["totals"]["failed"] == 0
    local = _finish(local)
    assert local.returncode == 0, local.stderr
    assert data_files(str(out)) == data_files(str(tmp_path / "local"))


@pytest.mark.parametrize("mode", ["cancel-on-interrupt", "not-a-tty", "tty-answers-yes", "sigterm"])
def test_ctrl_c_of_a_waiting_driver(cluster, shards, tmp_path, mode):
    """--cancel-on-interrupt cancels; without it a terminal is asked, anything else is told how to cancel.
    SIGTERM (Airflow stopping its task, the batch system stopping a driver job) is handled as Ctrl-C."""
    import pty

    victim = _extract_task_id(shards, 0)
    out = tmp_path / "slurm"
    args = [*_inputs(shards), *FAST, *NO_LID, "--engine", "slurm", "--output", str(out), "--only", "extract"]
    if mode in ("cancel-on-interrupt", "sigterm"):
        args.append("--cancel-on-interrupt")
    master = slave = None
    stdin: int = subprocess.DEVNULL
    if mode == "tty-answers-yes":
        master, slave = pty.openpty()
        stdin = slave
    proc = subprocess.Popen([BABELSIEVE, "run", *args, "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=stdin,
                            env={**os.environ, "BABELSIEVE_SLURM_TEST_SLEEP": f"extract:{victim}:120"})
    try:
        job = _wait_for(out / "_slurm" / "_test_sleep" / f"extract-{victim}").split("_")[0]
        proc.send_signal(signal.SIGTERM if mode == "sigterm" else signal.SIGINT)
        if master is not None:
            time.sleep(1)
            os.write(master, b"y\n")
        stdout, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    assert proc.returncode == 130, err
    if mode == "not-a-tty":
        assert f"scancel {job}" in err
        assert "RUNNING" in _queued(job)  # left alone, and said so
        return
    if mode == "tty-answers-yes":
        assert f"Cancel the submitted Slurm job array(s) {job}?" in stdout
    assert f"cancelled job array(s) {job}" in err
    deadline = time.time() + 20
    while time.time() < deadline and _queued(job).strip():
        time.sleep(0.3)
    assert not _queued(job).strip()


def test_driver_submitted_as_a_job_with_sbatch_driver_sh(cluster, shards, tmp_path):
    """deploy/slurm/sbatch-driver.sh: the driver runs as a 1-CPU job and submits the arrays itself."""
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{Path(BABELSIEVE).parent}{os.pathsep}{os.environ['PATH']}"}
    job = subprocess.run(["sbatch", "--parsable", f"--chdir={tmp_path}", str(SCRIPT.with_name("sbatch-driver.sh")),
                          *_inputs(shards[:1]), *FAST, *NO_LID, "--output", str(out), "--only", "extract"],
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.time() + 150
    while time.time() < deadline and _queued(job).strip():
        time.sleep(0.5)
    log = (tmp_path / f"babelsieve-driver-{job}.log").read_text()
    assert "submitted job array" in log and "babelsieve run summary" in log, log
    assert list((out / "extract").rglob("*.parquet"))


def test_deploy_scripts_pass_bash_n_and_shellcheck():
    from support.deploy import ensure_tools

    scripts = [str(SCRIPT), str(SCRIPT.with_name("sbatch-driver.sh"))]
    for s in scripts:
        r = subprocess.run(["bash", "-n", s], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = subprocess.run([ensure_tools()["shellcheck"], "--severity=style", *scripts], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_partition_is_a_config_error(cluster, shards, tmp_path):
    r = _run([*_inputs(shards), *NO_LID, "--engine", "slurm", "--output", str(tmp_path / "o"),
              "--set", "engine_options.slurm.partition=nosuchpartition"])
    assert r.returncode == 2, r.stderr
    assert "engine_options.slurm.partition" in r.stderr and "nosuchpartition" in r.stderr and "debug" in r.stderr
    assert "Traceback" not in r.stderr
    # the same mistake inside sbatch_args reaches sbatch, whose refusal is reported the same way
    r = _run([*_inputs(shards), *NO_LID, "--engine", "slurm", "--output", str(tmp_path / "o2"),
              "--set", "engine_options.slurm.sbatch_args=[--partition=nosuchpartition]"])
    assert r.returncode == 2, r.stderr
    assert "sbatch refused the extract array" in r.stderr and "Invalid partition" in r.stderr
    # and a wrong key type is caught before anything is submitted
    r = _run([*_inputs(shards), "--engine", "slurm", "--output", str(tmp_path / "o3"),
              "--set", "engine_options.slurm.time=forever"])
    assert r.returncode == 2 and "engine_options.slurm.time" in r.stderr


_RUN_ON_SLURM = r"""
import importlib.util, json, logging, sys
spec = importlib.util.spec_from_file_location("babelsieve_dag", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
m.log.addHandler(logging.StreamHandler(sys.stderr))
m.log.setLevel(logging.INFO)
m.log.propagate = False
m.run_on_slurm(m.resolve(json.loads(sys.argv[2])), "extract")
"""


def test_airflow_dag_stage_task_with_engine_slurm(cluster, airflow_venv, shards, tmp_path):
    """The DAG's engine=slurm path (run_on_slurm, imported in Airflow's own venv) against the cluster."""
    dag_file = REPO / "deploy" / "airflow" / "babelsieve_dag.py"
    snapshot = "CC-MAIN-2024-10"
    params = {"snapshot": snapshot, "engine": "slurm", "config": "", "input": str(shards[0]),
              "output": str(tmp_path / "{snapshot}"), "shards": "",
              "sets": ["langid.backend=none", "extract.url_filter=false"]}
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow-home"), BABELSIEVE_BIN=BABELSIEVE)
    r = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", _RUN_ON_SLURM, str(dag_file), json.dumps(params)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "--engine slurm" in r.stderr and "--cancel-on-interrupt" in r.stderr
    assert "submitted job array" in r.stderr
    out = tmp_path / snapshot
    assert json.loads((out / "_run.json").read_text())["config"]["engine"] == "slurm"
    assert list((out / "extract").rglob("*.parquet")) and list((out / "_logs" / "slurm").glob("extract-*_0.log"))
