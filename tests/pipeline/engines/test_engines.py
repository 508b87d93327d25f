"""Ray and Spark engines: byte-identical outputs to the local engine, and faults survived.

Real engines only: a local Ray started by the module fixture (plus one started by the CLI
itself), a real local Spark (JVM + Python workers), real WARC shards, real SIGKILLs.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_s3_task_retry import outage, reference, s3_extract, urls  # noqa: F401 (fixtures)

from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.core.tasks import TaskFailedError
from babelsieve.pipeline.engines import get_engine
from babelsieve.pipeline.engines.local import LocalEngine
from babelsieve.pipeline.engines.worker import TransientTaskError, is_transient, run_task, task_env

from support.data import SAMPLE_WARC, split_warc
from support.engines import all_rows, copies_shard, data_files, make_config, make_inputs

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(sys.executable).parent
INFRA_ENGINES = [pytest.param(e, marks=pytest.mark.infra) for e in ("ray", "spark")]  # they start Ray / Spark


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("warcs"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, inputs):
    """The reference: the local engine (process pool), all registered default stages."""
    out = str(tmp_path_factory.mktemp("clean") / "out")
    cfg = make_config(inputs, out)
    summary = run_pipeline(cfg, engine=LocalEngine(cfg), show_progress=False)
    assert summary.failed_tasks == 0
    files = data_files(out)
    assert any(f.startswith("extract/") for f in files)
    return {"files": files, "rows": len(all_rows(out)), "stages": cfg.stages, "summary": summary.to_dict()}


def _run(engine_name, inputs, out, env=None):
    cfg = make_config(inputs, str(out), engine=engine_name)
    with task_env(env):  # the same set-then-restore the workers use for forwarded variables
        summary = run_pipeline(cfg, show_progress=False)
    return cfg, summary


def _counts(summary):
    return [(s["stage"], s["docs_in"], s["docs_out"], s["removed"], s["skipped"]) for s in summary["stages"]]


def _assert_same_as_clean(out, clean):
    files = data_files(str(out))
    assert sorted(files) == sorted(clean["files"])  # the same relative paths
    assert files == clean["files"]  # and the same bytes
    rows = all_rows(str(out))
    ids = [r["id"] for r in rows]
    assert len(rows) == clean["rows"]
    assert [i for i, n in collections.Counter(ids).items() if n > 1] == []  # no duplicate rows


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------
@pytest.mark.infra
def test_ray_output_is_byte_identical_to_local(ray_session, inputs, clean, tmp_path):
    cfg, summary = _run("ray", inputs, tmp_path / "out")
    assert summary.failed_tasks == 0
    assert [s.stage for s in summary.stages] == [s["stage"] for s in clean["summary"]["stages"]]
    assert _counts(summary.to_dict()) == _counts(clean["summary"])
    _assert_same_as_clean(tmp_path / "out", clean)
    assert ray_session.is_initialized()  # the engine left the fixture's Ray running


@pytest.mark.infra
def test_spark_output_is_byte_identical_to_local(spark_context, inputs, clean, tmp_path):
    cfg, summary = _run("spark", inputs, tmp_path / "out")
    assert summary.failed_tasks == 0
    assert _counts(summary.to_dict()) == _counts(clean["summary"])
    _assert_same_as_clean(tmp_path / "out", clean)
    assert spark_context._jsc is not None  # the engine left the fixture's SparkContext running


@pytest.mark.infra
def test_spark_engine_reports_progress_live_one_result_per_task(spark_context, inputs, tmp_path):
    from babelsieve.pipeline.engines.spark_engine import SparkEngine
    from babelsieve.pipeline.stages.extract import ExtractStage

    cfg = make_config(inputs, str(tmp_path / "out"), engine="spark")
    tasks = ExtractStage(cfg).plan()
    assert len(tasks) == 4
    seen, at_first = [], {}
    manifests = tmp_path / "out" / "_manifests" / "extract"

    def on_result(r):
        if not seen:  # what the world looked like when the first result reached the driver
            at_first["active_jobs"] = list(spark_context.statusTracker().getActiveJobsIds())
            at_first["manifests"] = len(list(manifests.glob("*.json")))
        seen.append(r["task_id"])

    engine = SparkEngine(cfg)
    results = engine.run_tasks(tasks, on_result)
    assert sorted(seen) == sorted(t.task_id for t in tasks)  # each task reported exactly once
    assert [r["task_id"] for r in results] == [t.task_id for t in tasks]
    assert {r["status"] for r in results} == {"done"}
    # Live, not at the end: the Spark job was still running and, with 2 slots for 4 tasks, at least
    # one task had not yet published its manifest when the first result was reported.
    assert at_first["active_jobs"], at_first
    assert at_first["manifests"] < 4, at_first


@pytest.mark.infra
def test_tasks_run_on_the_worker_main_thread(ray_session, spark_context):
    """The per-document time limit is SIGALRM-based (main thread only): both engines must run
    tasks on their worker's main thread, or slow pages would be cut on one engine and not another."""

    def on_main_thread(_=None):
        import threading

        return threading.current_thread() is threading.main_thread()

    assert ray_session.get(ray_session.remote(on_main_thread).remote())
    assert spark_context.parallelize([0, 1], 2).map(on_main_thread).collect() == [True, True]


# --------------------------------------------------------------------------------------------
# Equivalence on the default multilingual pipeline: language ID and URL filter on, every stage
# --------------------------------------------------------------------------------------------
# The configuration above turns language ID and the URL filter off (every document "und"), so it
# never compares per-language routing, filters and rebalancing across engines. This one does: the
# dry-run config as shipped (langid auto, url_filter on) plus rebalance with FineWeb2's rehydration
# weights and a temperature mixture, on the bundled sample cut into three shards.
# The classify stage runs too, with a quality classifier trained here (tests/support/classifiers.py's sets).
MULTILINGUAL_SETS = ["langid.backend=auto", "extract.url_filter=true", "rebalance.enabled=true",
                     "rebalance.rehydration=fineweb2", "rebalance.temperature_alpha=0.5"]
ALL_STAGES = ["extract", "dedup", "filter", "classify", "finalize", "rebalance"]


@pytest.fixture(scope="module")
def quality_model(tmp_path_factory):
    from support.classifiers import train_model, training_sets

    pos, neg, _, _ = training_sets()
    return train_model(tmp_path_factory.mktemp("quality") / "web.bin", pos, neg)


def _multilingual_config(inputs, out, engine, quality_model):
    from babelsieve.pipeline.core.config import ClassifierConfig

    cfg = make_config(inputs, str(out), engine=engine, sets=MULTILINGUAL_SETS)
    cfg.stages = list(ALL_STAGES)
    cfg.classify.classifiers = [ClassifierConfig(name="web", model=str(quality_model), label="__label__hq",
                                                 threshold=0.8, buckets=[0.5, 0.9])]
    return cfg


@pytest.fixture(scope="module")
def sample_shards(tmp_path_factory):
    dest = tmp_path_factory.mktemp("sample3")
    return [*split_warc(SAMPLE_WARC, dest, 3), copies_shard(dest)]


@pytest.fixture(scope="module")
def multilingual_clean(tmp_path_factory, sample_shards, quality_model):
    """The reference of the multilingual comparison: the local engine, default LID path (the fastText
    binding, as a process this small never reaches the compiled predictor's switch point)."""
    out = tmp_path_factory.mktemp("multilingual") / "out"
    cfg = _multilingual_config(sample_shards, out, "local", quality_model)
    summary = run_pipeline(cfg, engine=LocalEngine(cfg), show_progress=False)
    assert summary.failed_tasks == 0
    assert [s.stage for s in summary.stages][0] == "extract" and summary.stages[-1].stage == "rebalance"
    files = data_files(str(out))
    # Every stage wrote data, in more than one language: the comparison covers per-language work.
    for stage in ("extract", "dedup", "filter", "classify", "finalize", "rebalance"):
        assert any(f.startswith(stage + "/") for f in files), (stage, sorted(files))
    assert any(f.startswith("removed/classify/web/") for f in files)  # the threshold removed some
    assert "quality_web_bucket" in all_rows(str(out), "finalize")[0]
    langs = {f.split("/")[1] for f in files if f.startswith("finalize/")}
    assert len(langs) >= 3, langs
    extract_rows = all_rows(str(out), "extract")
    removed = {s.stage: dict(s.removed) for s in summary.stages}
    # Measured with the embedded lid.176: extract 61 -> 50 (url 3, language_score 4), dedup 50 -> 45
    # (minhash_duplicate 5), filter 45 -> 42, 21 languages. The URL count does not depend on the model.
    assert removed["extract"].get("url") == 3, removed
    assert removed["dedup_annotate"].get("minhash_duplicate", 0) >= 4, removed
    assert any(f.startswith("removed/") for f in files)
    rebalanced = collections.Counter(r["id"] for r in all_rows(str(out), "rebalance"))
    assert max(rebalanced.values()) >= 2  # the mixture repeats some documents ...
    assert len(rebalanced) < len(all_rows(str(out), "finalize"))  # ... and drops others
    return {"files": files, "summary": summary.to_dict(), "extract_rows": len(extract_rows),
            "rebalance_rows": len(all_rows(str(out), "rebalance")), "removed": removed}


def _assert_multilingual_like_local(out, summary, ref):
    assert summary.failed_tasks == 0
    assert _counts(summary.to_dict()) == _counts(ref["summary"])
    files = data_files(str(out))
    for stage in ALL_STAGES:  # stage by stage, so a failure names the first stage that differs
        got = {k: v for k, v in files.items() if k.startswith(stage + "/")}
        want = {k: v for k, v in ref["files"].items() if k.startswith(stage + "/")}
        assert got == want, stage
    assert files == ref["files"]
    assert len(all_rows(str(out), "rebalance")) == ref["rebalance_rows"]


@pytest.mark.infra
def test_default_multilingual_pipeline_ray_matches_local(ray_session, sample_shards, multilingual_clean, tmp_path,
                                                         quality_model):
    """Ray, with the compiled LID predictor forced in its workers (the path a long-running worker
    switches to after 5 M characters): every data file of every stage equals the local run's."""
    out = tmp_path / "out"
    cfg = _multilingual_config(sample_shards, out, "ray", quality_model)
    with task_env({"BABELSIEVE_LID_INFERENCE": "compiled"}):
        summary = run_pipeline(cfg, show_progress=False)
    _assert_multilingual_like_local(out, summary, multilingual_clean)


@pytest.mark.infra
def test_default_multilingual_pipeline_spark_matches_local(spark_context, sample_shards, multilingual_clean,
                                                           tmp_path, quality_model):
    out = tmp_path / "out"
    cfg = _multilingual_config(sample_shards, out, "spark", quality_model)
    summary = run_pipeline(cfg, show_progress=False)
    _assert_multilingual_like_local(out, summary, multilingual_clean)


# --------------------------------------------------------------------------------------------
# Faults: a task's worker is killed once; a task raises once (bad input: not retried)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine_name", ["local", *INFRA_ENGINES])
def test_injected_worker_kill_is_retried_and_output_identical(engine_name, request, inputs, clean, tmp_path):
    if engine_name == "ray":
        request.getfixturevalue("ray_session")
    if engine_name == "spark":
        request.getfixturevalue("spark_context")
    out = tmp_path / "out"
    cfg, summary = _run(engine_name, inputs, out, env={"BABELSIEVE_FAULT": "extract:00001:kill"})
    assert (out / "_faults" / "extract-00001").exists()  # the worker really was SIGKILLed once
    assert summary.failed_tasks == 0
    _assert_same_as_clean(out, clean)


@pytest.mark.parametrize("engine_name", ["local", *INFRA_ENGINES])
def test_transient_task_error_is_retried_within_the_run(engine_name, request, inputs, clean, tmp_path):
    """A dropped connection in one task (injected once) is retried by every engine in the same run."""
    if engine_name != "local":
        request.getfixturevalue("ray_session" if engine_name == "ray" else "spark_context")
    out = tmp_path / "out"
    cfg, summary = _run(engine_name, inputs, out, env={"BABELSIEVE_FAULT": "extract:00002:transient"})
    assert (out / "_faults" / "extract-00002").exists()  # the fault really fired once
    assert summary.failed_tasks == 0
    assert summary.stages[0].done == 4
    _assert_same_as_clean(out, clean)


@pytest.mark.infra
@pytest.mark.parametrize("engine_name", ["ray", "spark"])
def test_task_error_is_not_retried_other_tasks_complete_rerun_completes(engine_name, request, inputs, clean,
                                                                        tmp_path):
    request.getfixturevalue("ray_session" if engine_name == "ray" else "spark_context")
    out = tmp_path / "out"
    cfg = make_config(inputs, str(out), engine=engine_name)
    os.environ["BABELSIEVE_FAULT"] = "extract:00002"
    try:
        summary = run_pipeline(cfg, show_progress=False, only=["extract"])
    finally:
        del os.environ["BABELSIEVE_FAULT"]
    ex = summary.stages[0]
    assert (ex.done, ex.failed) == (3, 1)
    assert ex.failures[0]["task"] == "00002" and "injected fault" in ex.failures[0]["error"]
    assert not (out / "_manifests" / "extract" / "00002.json").exists()
    # The rerun does only the failed task and the later stages; the result equals a clean run.
    cfg2 = make_config(inputs, str(out), engine=engine_name)
    summary2 = run_pipeline(cfg2, show_progress=False)
    assert (summary2.stages[0].cached, summary2.stages[0].done, summary2.failed_tasks) == (3, 1, 0)
    _assert_same_as_clean(out, clean)


@pytest.mark.infra
def test_ray_worker_sigkilled_from_outside_mid_task_is_retried(ray_session, inputs, clean, tmp_path):
    """A real SIGKILL from another process while the task runs: Ray reruns it on a new worker.

    The task's first attempt pauses 60 s (BABELSIEVE_FAULT=...:sleep, forwarded to the workers), so the
    kill lands while it runs on any machine load, not only when a fast poll happens to catch it."""
    out = tmp_path / "out"
    cfg = make_config(inputs, str(out), engine="ray")
    box = {}
    runner = threading.Thread(target=lambda: box.setdefault("summary", run_pipeline(cfg, show_progress=False)))
    with task_env({"BABELSIEVE_FAULT": "extract:00000:sleep"}):
        runner.start()
        killed = None
        marker = out / "_faults" / "extract-00000"  # written just before the pause
        deadline = time.time() + 120
        while runner.is_alive() and time.time() < deadline and killed is None:
            if marker.exists():
                for p in psutil.process_iter(["pid", "cmdline"]):
                    cmd = " ".join(p.info["cmdline"] or [])
                    if cmd.startswith("ray::extract/00000"):  # Ray's process title while it runs that task
                        os.kill(p.info["pid"], signal.SIGKILL)
                        killed = p.info["pid"]
                        break
            time.sleep(0.2)
        runner.join(timeout=300)
    assert killed is not None, "extract/00000 finished before it could be killed"
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
    assert box["summary"].failed_tasks == 0
    _assert_same_as_clean(out, clean)


# --------------------------------------------------------------------------------------------
# Entry points: the CLI starting its own Ray, and spark-submit of the CLI module
# --------------------------------------------------------------------------------------------
def _cli_args(inputs, out, engine):
    args = ["run", "--output", str(out), "--engine", engine, "--workers", "2", "--no-progress",
            "--set", "langid.backend=none", "--set", "extract.url_filter=false", "--only", "extract"]
    for p in inputs:
        args += ["--input", str(p)]
    return args


def _assert_one_shard_like_clean(out, clean):
    """A CLI run on inputs[1] alone (task 00000) equals task 00001 of the reference run."""
    got = {k.replace("/00000.parquet", "/00001.parquet"): v for k, v in data_files(str(out)).items()}
    want = {k: v for k, v in clean["files"].items() if k.startswith("extract/") and k.endswith("/00001.parquet")}
    assert got and got == want


@pytest.mark.infra
def test_cli_engine_ray_starts_and_stops_its_own_ray(inputs, clean, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([str(VENV_BIN / "babelsieve"), *_cli_args(inputs[1:2], out, "ray")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_one_shard_like_clean(out, clean)


@pytest.mark.infra
def test_spark_submit_of_the_cli_module(inputs, clean, tmp_path):
    import babelsieve.pipeline.cli.main as cli

    out = tmp_path / "out"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_HOME", None)
    cmd = [str(VENV_BIN / "spark-submit"), "--master", "local[2,3]", "--conf", "spark.ui.enabled=false",
           "--driver-java-options", "-XX:TieredStopAtLevel=1", cli.__file__, *_cli_args(inputs[1:2], out, "spark")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_one_shard_like_clean(out, clean)


def test_get_engine_names():
    cfg = make_config([], "/nonexistent")
    for name, cls in (("ray", "RayEngine"), ("spark", "SparkEngine"), ("local", "LocalEngine")):
        cfg.engine = name
        assert type(get_engine(cfg)).__name__ == cls


# --------------------------------------------------------------------------------------------
# Transient vs permanent errors (what the engines retry)
# --------------------------------------------------------------------------------------------
def test_transient_classification():
    import errno

    busy = OSError(errno.EBUSY, "Please reduce your request rate.")  # s3fs's mapping of 503 SlowDown
    assert is_transient(busy)
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    try:
        try:
            raise busy
        except OSError as e:
            raise TaskFailedError("extract/00001: OSError") from e
    except TaskFailedError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(FileNotFoundError("s3://b/missing.warc.gz"))
    assert not is_transient(ValueError("not a WARC"))
    assert not is_transient(TaskFailedError("extract/00001: NotAWarcError: ..."))
    assert not is_transient(PermissionError(errno.EACCES, "Forbidden"))


def test_run_task_marks_transient_failures(tmp_path, monkeypatch):
    from babelsieve.pipeline.stages.extract import ExtractStage

    cfg = make_config([tmp_path / "x.warc.gz"], str(tmp_path / "out"))
    (tmp_path / "x.warc.gz").write_bytes(b"not a warc at all")
    task = ExtractStage(cfg).plan()[0].to_dict()
    with pytest.raises(TaskFailedError) as bad:
        run_task(task, cfg.model_dump_json(), backoff_s=0)
    assert not isinstance(bad.value, TransientTaskError)  # bad input: never retried

    def throttled(self, task):
        raise OSError(16, "SlowDown")

    monkeypatch.setattr(ExtractStage, "run", throttled)
    with pytest.raises(TransientTaskError):
        run_task(task, cfg.model_dump_json(), backoff_s=0)


# --------------------------------------------------------------------------------------------
# S3: an outage that outlasts the client's retries, recovered by the engine's task retry
# (test_s3_task_retry.py: the same on the local engine, with the negative control)
# --------------------------------------------------------------------------------------------
@pytest.mark.infra
@pytest.mark.parametrize("engine_name", ["ray", "spark"])
def test_s3_outage_beyond_client_retries_is_recovered_by_the_engine_task_retry(engine_name, request, tmp_path):
    from babelsieve.testing.s3_server import FlakyS3Proxy

    request.getfixturevalue("ray_session" if engine_name == "ray" else "spark_context")
    s3_server, s3_urls = request.getfixturevalue("s3"), request.getfixturevalue("urls")
    failing_gets, expected = request.getfixturevalue("outage"), request.getfixturevalue("reference")
    proxy = FlakyS3Proxy(s3_server.port, every=0, outage=failing_gets)
    try:
        summary = s3_extract(s3_urls, tmp_path / "out", proxy.endpoint, 1, engine=engine_name)
    finally:
        proxy.stop()
    assert summary.failed_tasks == 0
    assert proxy.outage_throttled == failing_gets[1]  # the whole outage was met, by the task's first attempt
    assert data_files(str(tmp_path / "out")) == expected
