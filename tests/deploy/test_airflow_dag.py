"""The Airflow DAG under real Apache Airflow 3: DagBag import, then `airflow dags test` end to end.

Airflow lives in its own virtual environment (its pins conflict with ours), made by
deploy/airflow/install_airflow.sh. The tests use $BABELSIEVE_AIRFLOW_VENV, else the script's
default location (~/.cache/babelsieve/airflow-venv); when no complete environment is there, the
first test builds it with that script (2-4 minutes, from the package index pip is configured
with). They never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from support.data import BABELSIEVE, REPO, SAMPLE_WARC, gzip_members

pytestmark = pytest.mark.infra  # every test here runs real Airflow (and Ray / spark-submit)

DAG_FILE = REPO / "deploy" / "airflow" / "babelsieve_dag.py"
DAG_ID = "babelsieve_snapshot"
SNAPSHOT = "CC-MAIN-2024-10"
PIPELINE_STAGES = ["extract", "dedup", "filter", "classify", "finalize", "rebalance"]


@pytest.fixture(scope="session")
def airflow_home(airflow_venv, tmp_path_factory) -> dict[str, str]:
    """AIRFLOW_HOME in tmp with a migrated SQLite metadata DB and the DAG in its dags folder."""
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)  # the DAG must work on its own in a DAGs folder
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "BABELSIEVE_BIN": BABELSIEVE,
        "PATH": f"{airflow_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    })
    r = subprocess.run([str(airflow_venv / "bin" / "airflow"), "db", "migrate"], env=env, capture_output=True,
                       text=True, cwd=home)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    env["_DB"] = str(home / "airflow.db")
    return env


def _airflow(venv: Path, env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "airflow"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env["AIRFLOW_HOME"])


def _dag_run(env: dict[str, str], run_id: str | None = None) -> tuple[str, str, dict[str, str]]:
    """(run_id, state, {task_id: state}) of the latest (or given) run, from the metadata DB."""
    con = sqlite3.connect(env["_DB"])
    try:
        if run_id is None:
            run_id, state = con.execute(
                "SELECT run_id, state FROM dag_run WHERE dag_id=? ORDER BY id DESC LIMIT 1", (DAG_ID,)).fetchone()
        else:
            (state,) = con.execute("SELECT state FROM dag_run WHERE dag_id=? AND run_id=?",
                                   (DAG_ID, run_id)).fetchone()
        tis = dict(con.execute("SELECT task_id, state FROM task_instance WHERE dag_id=? AND run_id=?",
                               (DAG_ID, run_id)).fetchall())
        return run_id, state, tis
    finally:
        con.close()


def _xcom(env: dict[str, str], run_id: str, task_id: str, key: str):
    con = sqlite3.connect(env["_DB"])
    try:
        row = con.execute(
            "SELECT x.value FROM xcom x JOIN dag_run d ON x.dag_run_id = d.id "
            "WHERE d.dag_id=? AND d.run_id=? AND x.task_id=? AND x.key=?", (DAG_ID, run_id, task_id, key)).fetchone()
    finally:
        con.close()
    assert row is not None, f"no XCom {task_id}.{key}"
    value = row[0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def small_warc(dest: Path, records: int = 12) -> Path:
    """The first records of the sample WARC (warcinfo + a few pages): for the engine-path tests."""
    p = dest / "small.warc.gz"
    p.write_bytes(b"".join(gzip_members(SAMPLE_WARC.read_bytes())[:records]))
    return p


def _available_stages() -> list[str]:
    """Stages this installation provides (others are built in parallel and may be missing)."""
    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.core.runner import expand_stages

    cfg = load_config(None, sets=["stages=[extract,dedup,filter,classify,finalize,rebalance]"])
    out = []
    for s in cfg.stages:
        try:
            expand_stages(cfg, [s])
            out.append(s)
        except ValueError:
            pass
    return out


def _parquet_rows(d: Path) -> int:
    files = sorted(d.rglob("*.parquet"))
    return sum(pl.read_parquet(f).height for f in files)


def _conf(out: Path, **extra) -> str:
    conf = {"snapshot": SNAPSHOT, "engine": "local", "config": "", "input": str(SAMPLE_WARC),
            "output": str(out / "{snapshot}"), "sets": ["langid.backend=none", "engine_options.workers=2"]}
    conf.update(extra)
    return json.dumps(conf)


def test_dagbag_loads_the_dag_without_import_errors(airflow_venv, airflow_home):
    code = r"""
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])  # AIRFLOW__CORE__LOAD_EXAMPLES=False: no examples
dag = bag.dags.get("babelsieve_snapshot")
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "found": dag is not None}
if dag is not None:
    out["tasks"] = ([t.task_id for t in dag.topological_sort()] if hasattr(dag, "topological_sort")
                    else sorted(dag.task_ids))
    out["upstream"] = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}
    out["retries"] = {t.task_id: t.retries for t in dag.tasks}
    out["timeouts"] = {t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None
                       for t in dag.tasks}
    out["trigger"] = {t.task_id: str(getattr(t.trigger_rule, "value", t.trigger_rule)) for t in dag.tasks}
    out["params"] = sorted(dag.params.keys())
    out["max_active_runs"] = dag.max_active_runs
print(json.dumps(out))
"""
    r = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", code, airflow_home["AIRFLOW__CORE__DAGS_FOLDER"]],
                       env=airflow_home, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["found"]
    assert set(info["tasks"]) == {"list_shards", *PIPELINE_STAGES, "report"}
    up = info["upstream"]
    assert up["list_shards"] == []
    assert up["extract"] == ["list_shards"]
    chain = ["extract", "dedup", "filter", "classify", "finalize", "rebalance", "report"]
    for prev, nxt in zip(chain, chain[1:], strict=False):  # consecutive pairs
        assert prev in up[nxt], f"{nxt} must run after {prev}"
    assert all(n >= 1 for n in info["retries"].values()), info["retries"]
    assert all(t and t > 0 for t in info["timeouts"].values()), info["timeouts"]
    # A stage skipped because the config lacks it must not skip the stages after it.
    assert all("none_failed" in info["trigger"][t] for t in chain[1:])
    assert {"snapshot", "config", "engine", "output", "shards", "input", "sets"} <= set(info["params"])
    assert info["max_active_runs"] == 1


@pytest.fixture(scope="module")
def dag_test_run(airflow_venv, airflow_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("dag-out")
    r = _airflow(airflow_venv, airflow_home, "dags", "test", DAG_ID, "-c", _conf(out))
    log = r.stdout + r.stderr
    return out / SNAPSHOT, r.returncode, log, _dag_run(airflow_home)


def test_dags_test_runs_the_snapshot_end_to_end_with_the_local_engine(dag_test_run, airflow_home):
    out, rc, log, (run_id, state, tis) = dag_test_run
    assert rc == 0, log[-6000:]
    assert state == "success", (state, tis, log[-6000:])
    assert tis["list_shards"] == "success" and tis["extract"] == "success", tis
    # list_shards expanded the input and pushed the count.
    assert _xcom(airflow_home, run_id, "list_shards", "shard_count") == 1
    # The extract stage wrote Parquet with rows, and its manifest says how many.
    rows = _parquet_rows(out / "extract")
    assert rows > 0
    manifests = [json.loads(p.read_text()) for p in (out / "_manifests" / "extract").glob("*.json")]
    assert len(manifests) == 1
    assert manifests[0]["stats"]["docs_out"] == rows
    docs = pl.concat([pl.read_parquet(f) for f in (out / "extract").rglob("*.parquet")])
    assert set(docs["dump"].unique()) == {SNAPSHOT}  # the snapshot param reached the pipeline
    assert docs["url"].str.starts_with("http").all()
    # Every stage of the dry-run config runs and writes rows; classify and rebalance, which that config
    # does not list, are the skipped tasks, with a message saying why.
    configured = ["extract", "dedup", "filter", "finalize"]  # the dry-run config's stages
    assert set(configured) <= set(_available_stages())  # this installation registers all of them
    for stage in configured[1:]:
        assert tis[stage] == "success", (stage, tis)
        # dedup's manifests are per task stage: _manifests/dedup_signatures/, ... dedup_annotate/
        assert list((out / "_manifests").glob(f"{stage}*/*.json")), f"no manifest for {stage}"
        assert _parquet_rows(out / stage) > 0, f"{stage} wrote no rows"
    assert [s for s in PIPELINE_STAGES if s not in configured] == ["classify", "rebalance"]
    assert tis["rebalance"] == "skipped" and tis["classify"] == "skipped", tis
    assert "stage 'rebalance'" in log, "no skip message for rebalance"
    assert tis["report"] == "success", tis
    assert (out / "report" / "index.html").exists()


def test_a_second_run_into_the_same_output_reuses_every_finished_task(dag_test_run, airflow_venv, airflow_home):
    """Retry safety: rerunning the DAG (as a retry or a cleared task does) redoes nothing that finished."""
    out, rc, _, (first_run, _, _) = dag_test_run
    assert rc == 0
    before = {p: p.read_bytes() for p in (out / "extract").rglob("*.parquet")}
    manifest_before = {p: p.read_bytes() for p in (out / "_manifests").rglob("*.json")}
    logs_before = sorted(p.name for p in (out / "_logs").glob("*.jsonl"))
    r = _airflow(airflow_venv, airflow_home, "dags", "test", DAG_ID, "-c", _conf(out.parent))
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    run_id, state, tis = _dag_run(airflow_home)
    assert run_id != first_run and state == "success", (state, tis)
    assert {p: p.read_bytes() for p in (out / "extract").rglob("*.parquet")} == before
    for p, data in manifest_before.items():
        assert p.read_bytes() == data, f"{p} rewritten"
    # A task attempt appends a line to _logs/<stage>-<ms>.jsonl; a rerun that finds every task
    # complete runs none, so no log file is added.
    assert sorted(p.name for p in (out / "_logs").glob("*.jsonl")) == logs_before


def test_a_config_error_fails_the_run_without_retrying(airflow_venv, airflow_home, tmp_path):
    r = _airflow(airflow_venv, airflow_home, "dags", "test", DAG_ID, "-c",
                 _conf(tmp_path, sets=["extract.no_such_key=1"]))
    log = r.stdout + r.stderr
    _, state, tis = _dag_run(airflow_home)
    assert state == "failed", (state, tis)
    assert tis["list_shards"] == "failed"
    assert "unknown key 'extract.no_such_key'" in log
    assert all(tis[s] in ("upstream_failed", None) for s in PIPELINE_STAGES), tis
    assert not (tmp_path / SNAPSHOT).exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


# --------------------------------------------------------------------------------------------
# The DAG's Ray path against a real local Ray cluster (its dashboard's jobs API)
# --------------------------------------------------------------------------------------------

def _free_ports(n: int) -> list[int]:
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _ray_dashboard_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return "ray is not installed"
    import ray._private.utils as ru

    check = getattr(ru, "get_dashboard_dependency_error", None)
    err = check() if check else None
    if err:
        return f"ray is installed without its dashboard (ray[default]), which serves the jobs API: {err}"
    return None


@pytest.fixture(scope="module")
def ray_dashboard(tmp_path_factory):
    """A real one-node Ray cluster (`ray start --head --block`) on free ports, with its own temp dir.

    Every port is chosen here, so Ray clusters of other tests on the same machine never collide
    with this one, and the temp dir keeps `ray.init()` elsewhere from discovering it.
    """
    import random
    import tempfile
    import time
    import urllib.error
    import urllib.request

    missing = _ray_dashboard_missing()
    if missing:
        pytest.skip(missing)
    log = tmp_path_factory.mktemp("ray") / "head.log"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    temp_dir = ""
    # Ports are found free, released, then bound by Ray: another process can take one in between, so a
    # head that dies while starting is started again on new ports (three attempts), never waited for.
    for attempt in range(3):
        gcs, dash, agent, agent_grpc, rt_env, metrics, client, node_mgr, obj_mgr = _free_ports(9)
        worker_lo = random.randrange(20000, 40000, 100)
        temp_dir = tempfile.mkdtemp(prefix="rdt", dir="/tmp")  # short: Ray's socket paths have a length limit
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--num-cpus=2",
               "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}",
               f"--port={gcs}", f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={rt_env}",
               f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}",
               f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
               f"--min-worker-port={worker_lo}", f"--max-worker-port={worker_lo + 99}", "--disable-usage-stats"]
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        url = f"http://127.0.0.1:{dash}"
        deadline = time.time() + 180
        up = False
        while proc.poll() is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(url + "/api/version", timeout=5):
                    up = True
            except urllib.error.HTTPError:  # it answers (401 without the token): it is up
                up = True
            except OSError:
                time.sleep(1)
            if up:
                break
        if up:
            break
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert attempt < 2, f"Ray did not start in 3 attempts:\n{log.read_text()[-3000:]}"
    try:
        yield url
    finally:
        proc.terminate()  # `ray start --block` stops the node's processes when it is terminated
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


_RUN_ON_RAY = r"""
import importlib.util, json, logging, sys
spec = importlib.util.spec_from_file_location("babelsieve_dag", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
m.log.addHandler(logging.StreamHandler(sys.stderr))
m.log.setLevel(logging.INFO)
m.log.propagate = False
a = json.loads(sys.argv[2])
r = m.resolve(a["params"])
try:
    m.run_on_ray(r, "extract", a["address"], a["run_id"], a["try"], poll_s=1, engine=a["engine"])
    print(json.dumps({"ok": True, "sid": m.ray_submission_id(a["run_id"], "extract", a["try"])}))
except Exception as e:
    print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
"""


def _run_on_ray(venv: Path, env: dict[str, str], address: str, params: dict, try_number: int, engine: str,
                run_id: str = "manual__ray-test") -> dict:
    arg = json.dumps({"params": params, "address": address, "run_id": run_id, "try": try_number,
                      "engine": engine})
    r = subprocess.run([str(venv / "bin" / "python"), "-c", _RUN_ON_RAY, str(DAG_FILE), arg], env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]) | {"log": r.stderr}


def test_the_ray_path_submits_stages_as_ray_jobs_and_retries_safely(airflow_venv, airflow_home, ray_dashboard,
                                                                       tmp_path):
    """run_on_ray (what the stage tasks call with engine=ray) against a real Ray jobs API.

    The pipeline's Ray engine runs inside the job (no fallback to the local engine: a missing Ray
    engine fails the test).
    """
    engine = "ray"
    params = {"snapshot": SNAPSHOT, "engine": "ray", "config": "", "input": str(small_warc(tmp_path)),
              "output": str(tmp_path / "{snapshot}"), "shards": "",
              "sets": ["langid.backend=none", "engine_options.workers=2"]}
    env = dict(airflow_home)
    first = _run_on_ray(airflow_venv, env, ray_dashboard, params, 1, engine)
    assert first["ok"], first
    out = tmp_path / SNAPSHOT
    assert _parquet_rows(out / "extract") > 0
    assert "[ray babelsieve-manual__ray-test-extract-1]" in first["log"]  # job logs reach the task log
    manifest = next((out / "_manifests" / "extract").glob("*.json")).read_bytes()
    # Attempt 2 (an Airflow retry) is a new Ray job; it finds every task done and rewrites nothing.
    second = _run_on_ray(airflow_venv, env, ray_dashboard, params, 2, engine)
    assert second["ok"], second
    assert next((out / "_manifests" / "extract").glob("*.json")).read_bytes() == manifest
    summary = json.loads((out / "_summary.json").read_text())
    assert summary["stages"][0]["cached"] == 1 and summary["stages"][0]["done"] == 0
    # A job that fails (configuration error) fails the Airflow task with the job's state.
    bad = dict(params, sets=params["sets"] + ["extract.no_such_key=1"], output=str(tmp_path / "bad"))
    failed = _run_on_ray(airflow_venv, env, ray_dashboard, bad, 1, engine, run_id="manual__ray-test-bad")
    assert not failed["ok"] and "ended FAILED" in failed["error"], failed
    assert "unknown key 'extract.no_such_key'" in failed["log"]


_RUN_ON_SPARK = r"""
import importlib.util, json, logging, sys
spec = importlib.util.spec_from_file_location("babelsieve_dag", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
m.log.addHandler(logging.StreamHandler(sys.stderr))
m.log.setLevel(logging.INFO)
m.log.propagate = False
a = json.loads(sys.argv[2])
m.run_on_spark(m.resolve(a["params"]), "extract", "local[2]", engine=a["engine"])
"""


def test_the_spark_path_runs_submit_sh_with_a_real_spark_submit(airflow_venv, airflow_home, tmp_path):
    """run_on_spark (engine=spark stage tasks) -> deploy/spark/submit.sh -> spark-submit -> driver.py."""
    spark_submit = Path(sys.executable).with_name("spark-submit")
    assert spark_submit.exists() and shutil.which("java"), "spark-submit (pip package pyspark) or java missing"
    engine = "spark"  # no fallback to the local engine: a missing Spark engine fails the test
    params = {"snapshot": SNAPSHOT, "engine": "spark", "config": "", "input": str(small_warc(tmp_path)),
              "output": str(tmp_path / "{snapshot}"), "shards": "",
              "sets": ["langid.backend=none", "engine_options.workers=2"]}
    env = dict(airflow_home, BABELSIEVE_SPARK_SUBMIT=str(REPO / "deploy" / "spark" / "submit.sh"),
               SPARK_SUBMIT=str(spark_submit), PYTHON=sys.executable,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{airflow_home['PATH']}")
    # --ship none: this machine's Python already has babelsieve (the venv packing is checked in
    # test_deploy_manifests.py with --dry-run).
    wrapper = tmp_path / "submit-none.sh"
    wrapper.write_text(f'#!/usr/bin/env bash\nexec bash {REPO / "deploy" / "spark" / "submit.sh"} --ship none "$@"\n')
    wrapper.chmod(0o755)
    env["BABELSIEVE_SPARK_SUBMIT"] = str(wrapper)
    r = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", _RUN_ON_SPARK, str(DAG_FILE),
                        json.dumps({"params": params, "engine": engine})], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "spark-submit" in r.stderr or "submit-none.sh" in r.stderr
    assert _parquet_rows(tmp_path / SNAPSHOT / "extract") > 0
    assert json.loads((tmp_path / SNAPSHOT / "_run.json").read_text())["config"]["engine"] == engine
