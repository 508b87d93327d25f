"""`babelsieve status` and `babelsieve logs` on interrupted, failed and finished runs."""

from __future__ import annotations

import json
import os
import subprocess

import fsspec
import pytest

from babelsieve.pipeline.cli.status import run_status

from support.data import BABELSIEVE
from support.synthetic_runs import copy_output, shared_runs


def _status(out, *extra) -> dict:
    r = subprocess.run([BABELSIEVE, "status", str(out), "--json", *extra], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _stage(st: dict, name: str) -> dict:
    return next(s for s in st["stages"] if s["stage"] == name)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory):
    """3 WARC shards; task 00001 failed (injected fault, no retry for a raising task); the run exited 1."""
    runs = shared_runs(tmp_path_factory)
    return runs["failed"], runs["shards"]


def test_failed_task_is_reported_failed_the_others_done(failed_run):
    out, shards = failed_run
    st = _status(out)
    ex = _stage(st, "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"]) == (3, 2, 1, 0)
    assert ex["state"] == "failed"
    (f,) = ex["failed_tasks"]
    assert f["task_id"] == "00001"
    assert "injected fault" in f["error"]
    assert f["inputs"] == [str(shards[1])]
    assert st["complete"] is False
    # every configured stage is listed, in order, after extract
    assert [s["group"] for s in st["stages"]][0] == "extract"
    assert {"dedup", "filter", "finalize"} <= {s["group"] for s in st["stages"]}


def test_table_output_names_the_failed_task(failed_run):
    out, _ = failed_run
    r = subprocess.run([BABELSIEVE, "status", str(out)], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "FAILED extract/00001" in r.stdout
    assert "incomplete: 2 done, 1 failed" in r.stdout


def test_logs_failed_view(failed_run):
    out, _ = failed_run
    r = subprocess.run([BABELSIEVE, "logs", str(out), "--failed", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["stage"], x["task_id"], x["status"]) for x in lines] == [("extract", "00001", "failed")]
    r = subprocess.run([BABELSIEVE, "logs", str(out)], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0 and "00000" in r.stdout and "00002" in r.stdout and "failed" in r.stdout


def test_interrupted_run_missing_manifest_is_pending(failed_run, tmp_path):
    """A task whose manifest is missing (killed before publishing it) is pending, whatever the log says."""
    out, _ = failed_run
    copy = copy_output(out, tmp_path / "out")
    (copy / "_manifests" / "extract" / "00002.json").unlink()
    st = run_status(str(copy))
    ex = _stage(st, "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"]) == (3, 1, 1, 1)
    assert ex["pending_tasks"] == ["00002"]
    assert ex["state"] == "failed"
    # nothing done at all: the run has only started
    for m in (copy / "_manifests" / "extract").glob("*.json"):
        m.unlink()
    for log in (copy / "_logs").glob("*.jsonl"):
        log.unlink()
    ex = _stage(run_status(str(copy)), "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"], ex["state"]) == (3, 0, 0, 3, "not started")


def test_rerun_completes_and_status_follows(tmp_path_factory):
    """The failed run, rerun: the failed attempt stays in the logs, but a manifest now proves completion."""
    out = shared_runs(tmp_path_factory)["complete"]
    st = _status(out)
    ex = _stage(st, "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"], ex["state"]) == (3, 3, 0, 0, "done")
    assert st["totals"]["failed"] == 0


def test_status_without_replanning(failed_run):
    out, _ = failed_run
    ex = _stage(_status(out, "--no-plan"), "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"]) == (None, 2, 1, None)


def test_status_of_an_output_on_object_storage(failed_run):
    out, _ = failed_run
    mem = fsspec.filesystem("memory")
    root = "memory://bs-status-test/out"
    for p in out.rglob("*"):
        if p.is_file():
            mem.pipe_file(root + "/" + str(p.relative_to(out)), p.read_bytes())
    try:
        ex = _stage(run_status(root), "extract")
        assert (ex["planned"], ex["done"], ex["failed"], ex["pending"]) == (3, 2, 1, 0)
    finally:
        mem.rm("/bs-status-test", recursive=True)


def test_status_of_a_directory_without_a_run(tmp_path):
    r = subprocess.run([BABELSIEVE, "status", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "no _run.json" in r.stderr


@pytest.mark.infra
def test_status_report_and_logs_on_s3(s3, failed_run, tmp_path):
    """A real S3 API (moto server): status, logs and report read and write s3:// through s3fs."""
    import s3fs

    endpoint = s3.endpoint
    opts = {"key": "test", "secret": "test", "endpoint_url": endpoint}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("bs-status")
    out, _ = failed_run
    root = "s3://bs-status/out"
    for p in out.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".json" and "_manifests" in p.parts:
                data = data.replace(str(out).encode(), root.encode())
            fs.pipe_file(f"bs-status/out/{p.relative_to(out)}", data)
    flags = ["--storage-option=key=test", "--storage-option=secret=test",
             f"--storage-option=endpoint_url={endpoint}"]
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true", "COLUMNS": "200"}
    r = subprocess.run([BABELSIEVE, "status", root, "--json", *flags], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    ex = _stage(json.loads(r.stdout), "extract")
    assert (ex["planned"], ex["done"], ex["failed"], ex["pending"]) == (3, 2, 1, 0)
    r = subprocess.run([BABELSIEVE, "logs", root, "--failed", "--json", *flags], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["task_id"] for x in r.stdout.splitlines()] == ["00001"]
    r = subprocess.run([BABELSIEVE, "report", root, *flags], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    html = fs.cat_file("bs-status/out/report/index.html").decode()
    assert "data:image/png;base64," in html
    assert fs.cat_file("bs-status/out/report/languages.png").startswith(b"\x89PNG")
    assert fs.exists("bs-status/out/README.md")
    assert "00001" in html  # the failed attempt from the task logs
