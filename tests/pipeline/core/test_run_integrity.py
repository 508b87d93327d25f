"""Run integrity: an output stays right when shards are added, tasks fail and rerun, files vanish, the
output is copied or moved, or a rewrite runs out of space.

Real parts only: the bundled sample WARC cut into three shards that share pages (so cross-shard
dedup decides what is kept), the local process-pool engine (and real local Ray / Spark for the
cases marked ``infra``), the CLI in subprocesses, a real file-size limit (RLIMIT_FSIZE).
The reference is one uninterrupted run over all shards; every other path must give the same bytes
in every data file of every stage (Parquet and the dedup work files).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.engines.worker import task_env

from support.data import BABELSIEVE, SAMPLE_WARC, gzip_members
from support.engines import FAST_SETS, make_config

STAGES = "stages=[extract,dedup,filter,finalize,rebalance]"
# small work-sized tasks, so the stages after extract have several tasks that group files differently
# when shards are added or fail (the default, 50,000 documents, makes the sample one task per stage)
SMALL_TASKS = "tasks.target_documents=10"


def _shards(dest: Path) -> list[Path]:
    """Three shards of the sample whose pages overlap: shard 1 and 2 repeat pages of shard 0 and 1."""
    members = gzip_members(SAMPLE_WARC.read_bytes())
    head, rest = members[0], members[1:]
    a, b, c = rest[:20], rest[20:40], rest[40:]
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, recs in enumerate([a + b[:8], b + a[:10], c + a[5:15] + b[10:]]):
        p = dest / f"shard-{i}.warc.gz"
        p.write_bytes(head + b"".join(recs))
        out.append(p)
    return out


def data_files(out: Path) -> dict[str, str]:
    """{relative path: sha256} of every data file (Parquet, dedup .npy) outside the ``_*`` bookkeeping."""
    out = Path(out)
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.suffix in (".parquet", ".npy") and not p.relative_to(out).parts[0].startswith("_")
    }


def all_files(out: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``out`` (manifests, logs, markers included)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(out).rglob("*")) if p.is_file()}


def _run(inputs, out, engine="local", shards=None, env=None):
    cfg = make_config(inputs, str(out), engine=engine, sets=[STAGES, SMALL_TASKS])
    cfg.inputs.shards = shards  # set after loading: YAML would read 1:3 as a base-60 number
    with task_env(env):
        return run_pipeline(cfg, show_progress=False)


def _cli(args, cwd=None, preexec_fn=None):
    return subprocess.run([BABELSIEVE, *args], capture_output=True, text=True, cwd=cwd, preexec_fn=preexec_fn,
                          timeout=300)


def _cli_run_args(inputs, output) -> list[str]:
    args = ["run", "--output", str(output), "--no-progress", "--workers", "2", "--set", STAGES, "--set", SMALL_TASKS]
    for s in FAST_SETS:
        args += ["--set", s]
    for p in inputs:
        args += ["--input", str(p)]
    return args


def _stage(summary, name):
    return next(s for s in summary.stages if s.stage == name)


def _manifests_verify(out: Path) -> None:
    """Every manifest lists only files that exist with the recorded size, by paths relative to ``out``."""
    for mp in (out / "_manifests").rglob("*.json"):
        m = json.loads(mp.read_text())
        assert m["version"] == 2
        for f in m["files"]:
            assert not f["path"].startswith("/") and "://" not in f["path"], f["path"]
            p = out / f["path"]
            assert p.is_file(), f"{mp.name} lists {f['path']}, which is missing"
            assert p.stat().st_size == f["bytes"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return _shards(tmp_path_factory.mktemp("warcs"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs):
    """One uninterrupted local run over all three shards."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = _run(inputs, out)
    assert summary.failed_tasks == 0
    files = data_files(out)
    ann = _stage(summary, "dedup_annotate")
    assert ann.docs_out < ann.docs_in  # the shards share pages: dedup removes some
    assert any(f.startswith("dedup_work/bands/") for f in files) and any(f.startswith("rebalance/") for f in files)
    return {"out": out, "files": files, "kept": ann.docs_out}


def _engine_fixture(request, engine):
    if engine == "ray":
        request.getfixturevalue("ray_session")
    elif engine == "spark":
        request.getfixturevalue("spark_context")


ENGINES = ["local", pytest.param("ray", marks=pytest.mark.infra), pytest.param("spark", marks=pytest.mark.infra)]


# --------------------------------------------------------------------------------------------
# 1. Task identity covers the inputs: added shards, a failed extract task rerun
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_shards_added_later_give_the_output_of_one_run(engine, request, inputs, reference, tmp_path):
    """`--shards 0:1` then `--shards 1:3` into one output: dedup covers all shards, byte for byte."""
    _engine_fixture(request, engine)
    out = tmp_path / "out"
    first = _run(inputs, out, engine, "0:1")
    assert first.failed_tasks == 0
    second = _run(inputs, out, engine, "1:3")
    assert second.failed_tasks == 0
    # the global stages were redone for the new set of inputs, not kept as "cached"
    assert _stage(second, "dedup_buckets").done == _stage(second, "dedup_buckets").tasks
    assert _stage(second, "dedup_annotate").docs_out == reference["kept"]
    assert data_files(out) == reference["files"]
    _manifests_verify(out)


def test_shards_added_in_reverse_order_give_the_output_of_one_run(inputs, reference, tmp_path):
    """`--shards 1:3` then `--shards 0:1`: file indexes of every earlier file move; same bytes."""
    out = tmp_path / "out"
    assert _run(inputs, out, shards="1:3").failed_tasks == 0
    second = _run(inputs, out, shards="0:1")
    assert second.failed_tasks == 0
    assert data_files(out) == reference["files"]
    _manifests_verify(out)
    # and a third run over everything does no work at all
    third = _run(inputs, out)
    assert all(s.done == 0 and s.cached == s.tasks for s in third.stages), [(s.stage, s.done) for s in third.stages]


def test_failed_extract_task_rerun_is_deduplicated(inputs, reference, tmp_path):
    """Extract 00001 fails once; dedup runs over the other shards; the rerun dedups all of them."""
    out = tmp_path / "out"
    first = _run(inputs, out, env={"BABELSIEVE_FAULT": "extract:00001"})
    assert (_stage(first, "extract").failed, first.failed_tasks) == (1, 1)
    annotate = _stage(first, "dedup_annotate")  # dedup did run, on the two shards' files
    assert annotate.done >= 2 and annotate.docs_in == _stage(first, "extract").docs_out
    second = _run(inputs, out)
    assert second.failed_tasks == 0
    assert _stage(second, "extract").cached == 2
    assert _stage(second, "dedup_annotate").docs_out == reference["kept"]
    assert data_files(out) == reference["files"]


# --------------------------------------------------------------------------------------------
# 2. Paths relative to the output root: copies and moves
# --------------------------------------------------------------------------------------------
def test_copied_output_is_refiltered_without_touching_the_original(reference, tmp_path):
    original = reference["out"]
    before = all_files(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    r = _cli(["refilter", str(copy), "--language", "und", "--set", "gopher_quality=false"])
    assert r.returncode == 0, r.stderr
    assert all_files(original) == before  # not one byte of the original changed, nothing deleted
    assert data_files(copy) != reference["files"]  # the copy was refiltered
    _manifests_verify(copy)
    assert json.loads((copy / "_run.json").read_text())["config"]["output"] == "."


def test_relative_output_resumed_from_another_directory(inputs, reference, tmp_path):
    """Started as `--output relout` in one directory (one extract task failing), finished from another
    directory with the absolute path: every task reads the files where they are now."""
    first_cwd, other_cwd = tmp_path / "a", tmp_path / "b"
    first_cwd.mkdir()
    other_cwd.mkdir()
    env_fault = {**os.environ, "BABELSIEVE_FAULT": "extract:00002"}
    r = subprocess.run([BABELSIEVE, *_cli_run_args(inputs, "relout")], capture_output=True, text=True,
                       cwd=first_cwd, env=env_fault, timeout=300)
    assert (first_cwd / "relout" / "_faults" / "extract-00002").exists(), r.stderr
    out = first_cwd / "relout"
    r = _cli(_cli_run_args(inputs, out.resolve()), cwd=other_cwd)
    assert r.returncode == 0, r.stderr
    assert data_files(out) == reference["files"]
    # moved again: every task is still current where the output is now (a resume would do nothing)
    moved = tmp_path / "moved"
    shutil.move(str(out), moved)
    st = json.loads(_cli(["status", str(moved), "--json"], cwd=first_cwd).stdout)
    assert st["complete"] and st["totals"]["pending"] == 0, st
    _manifests_verify(moved)


# --------------------------------------------------------------------------------------------
# 3. Cached means verified: deleted files heal
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_deleted_data_files_are_healed_by_a_rerun(engine, request, inputs, reference, tmp_path):
    _engine_fixture(request, engine)
    out = tmp_path / "out"
    shutil.copytree(reference["out"], out)
    gone = [next(iter(sorted((out / "extract").rglob("*.parquet")))),
            next(iter(sorted((out / "dedup").rglob("*.parquet")))),
            next(iter(sorted((out / "dedup_work" / "bands").rglob("*.npy"))))]
    for p in gone:
        p.unlink()
    st = _cli(["status", str(out), "--json"])
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert not status["complete"] and status["totals"]["pending"] >= 3
    summary = _run(inputs, out, engine)
    assert summary.failed_tasks == 0
    assert _stage(summary, "extract").done == 1
    assert data_files(out) == reference["files"]
    _manifests_verify(out)
    st = json.loads(_cli(["status", str(out), "--json"]).stdout)
    assert st["complete"], st


def test_deleted_file_of_a_shard_outside_the_range_is_not_planned_from(inputs, reference, tmp_path):
    """An extract file of shard 0 is deleted, then `--shards 1:3` runs: shard 0 cannot be redone in
    this run, so later stages leave it out (no task fails reading it); `--shards 0:1` brings it back."""
    out = tmp_path / "out"
    shutil.copytree(reference["out"], out)
    (out / "extract" / "00000.parquet").unlink()  # every language of shard 0
    summary = _run(inputs, out, shards="1:3")
    assert summary.failed_tasks == 0
    assert _stage(summary, "dedup_signatures").tasks == 2  # shard 0's file is not planned from
    summary = _run(inputs, out, shards="0:1")
    assert summary.failed_tasks == 0
    assert data_files(out) == reference["files"]


def test_status_does_not_promise_a_rerun_fixes_a_task_that_always_fails(tmp_path):
    """A task failing the same way twice: status says a rerun alone will not fix it."""
    broken = tmp_path / "broken.warc.gz"
    broken.write_bytes(b"this is not a WARC file")
    args = _cli_run_args([broken], tmp_path / "out") + ["--only", "extract"]
    for _ in range(2):
        assert _cli(args).returncode != 0
    r = _cli(["status", str(tmp_path / "out")])
    assert "failed the same way" in r.stdout, r.stdout
    assert "Rerun the same `babelsieve run` command to finish" not in r.stdout


# --------------------------------------------------------------------------------------------
# 4. Write, then retire: a rewrite that runs out of space leaves the previous state
# --------------------------------------------------------------------------------------------
def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))  # no file above 8 KiB: like a full disk


def test_refilter_under_a_file_size_limit_leaves_the_previous_files(reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference["out"], out)
    before = all_files(out)
    r = _cli(["refilter", str(out), "--language", "und", "--set", "gopher_quality=false"],
             preexec_fn=_limit_file_size)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and "unchanged" in r.stderr, r.stderr
    assert all_files(out) == before  # every file as it was, no staging leftovers
    _manifests_verify(out)
    r = _cli(["refilter", str(out), "--language", "und", "--set", "gopher_quality=false"])
    assert r.returncode == 0, r.stderr
    _manifests_verify(out)
    # the retry gives what a refilter of an untouched copy gives
    fresh = tmp_path / "fresh"
    shutil.copytree(reference["out"], fresh)
    assert _cli(["refilter", str(fresh), "--language", "und", "--set", "gopher_quality=false"]).returncode == 0
    assert data_files(out) == data_files(fresh) != reference["files"]


# --------------------------------------------------------------------------------------------
# The same on the S3 API: an output synced to a bucket resumes there, and heals there
# --------------------------------------------------------------------------------------------


@pytest.mark.infra  # starts moto's S3 server
def test_output_synced_to_a_bucket_resumes_and_heals_there(s3, inputs, reference, tmp_path):
    import boto3

    from babelsieve.pipeline.core import storage

    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="synced")
    src = reference["out"]
    for p in sorted(src.rglob("*")):  # what `aws s3 sync` does: the same keys below a prefix
        if p.is_file():
            client.put_object(Bucket="synced", Key=f"run/{p.relative_to(src)}", Body=p.read_bytes())
    opts = {"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"}
    out = "s3://synced/run"

    def run_on_s3():
        cfg = make_config(inputs, out, sets=[STAGES, SMALL_TASKS], storage_options=opts)
        return run_pipeline(cfg, show_progress=False)

    summary = run_on_s3()
    assert summary.failed_tasks == 0
    assert all(s.done == 0 and s.cached == s.tasks for s in summary.stages), [(s.stage, s.done)
                                                                               for s in summary.stages]
    client.delete_object(Bucket="synced", Key="run/" + next(f for f in sorted(reference["files"])
                                                               if f.startswith("dedup/")))
    summary = run_on_s3()
    assert summary.failed_tasks == 0 and _stage(summary, "dedup_annotate").done == 1
    got = {}
    for url in storage.list_files(out, "", opts):
        rel = url.split("s3://synced/run/", 1)[1]
        if rel.endswith((".parquet", ".npy")) and not rel.startswith("_"):
            got[rel] = hashlib.sha256(storage.read_bytes(url, opts)).hexdigest()
    assert got == reference["files"]
