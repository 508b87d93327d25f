"""`babelsieve plan`: projections of a full run are the sample run's manifests, scaled as documented."""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from babelsieve.pipeline.cli.plan import CLUSTER_BYTES_PER_DOC, project
from babelsieve.pipeline.report.stats import read_manifests
from babelsieve.pipeline.stages.dedup import merge_levels

from support.data import BABELSIEVE, REPO
from support.synthetic_runs import add_synthetic_stages, make_synthetic_extract, shared_runs


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A finished extract run on 3 shards of the sample WARC (language ID off)."""
    runs = shared_runs(tmp_path_factory)
    return runs["complete"], runs["shards"]


def _plan(*args) -> subprocess.CompletedProcess:
    return subprocess.run([BABELSIEVE, "plan", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250"})


def test_plan_numbers_are_the_manifests_scaled(sample):
    out, shards = sample
    r = _plan("--shards", "300", "--workers", "10", "--from", str(out), "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    ms = [m for m in read_manifests(str(out)) if m["stage"] == "extract"]
    docs_in = sum(m["stats"]["docs_in"] for m in ms)
    docs_out = sum(m["stats"]["docs_out"] for m in ms)
    secs = sum(m["seconds"] for m in ms)
    out_bytes = sum(f["bytes"] for m in ms for f in m["files"])
    warc_bytes = sum(s.stat().st_size for s in shards)
    assert p["sample_shards"] == 3 and p["scale_factor"] == 100 and p["sample_warc_bytes"] == warc_bytes

    (m,) = [x for x in p["measured"] if x["stage"] == "extract"]
    assert (m["tasks"], m["docs_in"], m["docs_out"], m["bytes_out"], m["bytes_in"]) == (
        3, docs_in, docs_out, out_bytes, warc_bytes)
    assert m["core_seconds"] == pytest.approx(secs)
    assert m["docs_per_core_second"] == pytest.approx(docs_in / secs)

    (x,) = [x for x in p["projection"] if x["stage"] == "extract"]
    assert x["tasks"] == 300 and x["scaling"] == "per shard"
    assert (x["docs_in"], x["docs_out"]) == (docs_in * 100, docs_out * 100)
    assert x["core_hours"] == pytest.approx(secs * 100 / 3600)
    longest = max(mm["seconds"] for mm in ms)
    assert x["wall_hours"] == pytest.approx(max(secs * 100 / 10, longest) / 3600)
    assert x["bytes_read"] == warc_bytes * 100 and x["bytes_written"] == out_bytes * 100
    assert x["s3_head"] == 0  # the driver lists manifests and reads the stage's index: no HEAD per task
    assert x["s3_put"] == 100 * sum(1 + len(m["files"]) for m in ms)  # one PUT per (small) file + manifest
    assert x["s3_get"] == 300 + 300  # each shard is < 50 MiB: one GET; + the worker's manifest check per task

    mem = p["dedup_memory_projection"]
    assert mem["largest_language"] == "und" and mem["largest_language_docs"] == docs_out * 100
    assert mem["clustering_bytes"] == docs_out * 100 * CLUSTER_BYTES_PER_DOC
    assert mem["signature_bytes_per_doc"] == 14 * 8 * 8
    assert set(p["unmeasured_stages"]) == {"dedup", "filter", "finalize"}
    assert p["projection_total"]["core_hours"] == pytest.approx(x["core_hours"])


def test_plan_text_labels_measured_projection_and_assumptions(sample):
    out, _ = sample
    r = _plan(str(REPO / "configs" / "dry-run.yaml"), "--shards", "1000", "--workers", "4", "--from", str(out))
    assert r.returncode == 0, r.stderr
    for label in ("MEASURED on the sample", "PROJECTION for 1,000 shards on 4 workers", "Assumptions",
                  "PROJECTION dedup clustering memory", f"{CLUSTER_BYTES_PER_DOC} B/doc", "not measured"):
        assert label in r.stdout, label


def test_plan_warns_when_the_sample_used_another_config(sample):
    out, _ = sample
    r = _plan(str(REPO / "configs" / "fineweb2.yaml"), "--shards", "10", "--from", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert any("differs from CONFIG" in w for w in json.loads(r.stdout)["warnings"])


def test_plan_without_a_sample_run_says_what_to_do(tmp_path):
    r = _plan("--shards", "10", "--from", str(tmp_path / "empty"))
    assert r.returncode == 2
    assert "babelsieve run CONFIG --shards 0:4" in " ".join(r.stderr.split())


def test_fixed_task_stages_and_dedup_memory_on_all_stages(tmp_path):
    out = str(tmp_path / "out")
    make_synthetic_extract(out, n_tasks=3, docs_per_task=20)
    add_synthetic_stages(out)
    p = project(out, shards=300, workers=8)
    f = 100
    by = {x["stage"]: x for x in p["projection"]}
    measured = {x["stage"]: x for x in p["measured"]}
    assert by["extract"]["tasks"] == 300
    # work-sized: max(sample tasks, documents / 50,000, input files / 1,000) at full scale, not 100x the sample's
    sig = measured["dedup_signatures"]
    n_inputs = sum(len(m["inputs"]) for m in read_manifests(out) if m["stage"] == "dedup_signatures")
    assert by["dedup_signatures"]["tasks"] == max(sig["tasks"], math.ceil((sig["docs_in"] or 0) * f / 50_000),
                                                  math.ceil(n_inputs * f / 1000), 1)
    assert by["dedup_signatures"]["scales_with_shards"] and by["dedup_signatures"]["scaling"].startswith("per work")
    assert not by["dedup_buckets"]["scales_with_shards"]
    # at full scale every hash partition has band files: one task each (the sample had 2 of them)
    partitions = json.loads((tmp_path / "out" / "_run.json").read_text())["config"]["dedup"]["partitions"]
    assert partitions > 2
    assert by["dedup_buckets"]["tasks"] == partitions
    assert by["dedup_buckets"]["scaling"] == "one task per hash partition"
    # P tasks on 8 workers: wall = core-seconds / min(8, P), at least the longest task's f-fold work shared by P
    b = measured["dedup_buckets"]
    assert by["dedup_buckets"]["wall_hours"] == pytest.approx(
        max(b["core_seconds"] * f / min(8, partitions), b["max_task_seconds"] * f * 2 / partitions) / 3600)
    # the merge levels are modelled: 100x the sample's signature tasks are far fewer than 1,000 band files
    assert by["dedup_merge"]["tasks"] == by["dedup_merge_2"]["tasks"] == 0 and by["dedup_merge"]["core_hours"] is None
    assert by["dedup_clusters"]["tasks"] == 1
    assert by["dedup_clusters"]["wall_hours"] == pytest.approx(measured["dedup_clusters"]["core_seconds"] * f / 3600)
    # filter reads the dedup output files named as inputs? (synthetic tasks name none: previous stage's bytes)
    assert measured["filter"]["bytes_in_source"] == "previous stage's documents"
    assert p["projection_total"]["wall_hours"] == pytest.approx(sum(x["wall_hours"] or 0 for x in p["projection"]))
    mem = p["dedup_memory_projection"]
    ms = [m for m in read_manifests(out) if m["stage"] == "extract"]
    per_lang: dict[str, int] = {}
    for m in ms:
        for lang, n in m["stats"]["languages"].items():
            per_lang[lang] = per_lang.get(lang, 0) + n
    assert mem["largest_language_docs"] == max(per_lang.values()) * f
    assert "measured_signature_stage_bytes_per_doc" in mem
    assert not p["unmeasured_stages"] and math.isclose(p["scale_factor"], 100)


def test_task_count_scaling_follows_the_inputs_named_in_manifests(tmp_path):
    """One task per upstream file scales with the shards; a task reading many upstream tasks' files does not."""
    from support.synthetic_runs import _manifest

    out = str(tmp_path / "out")
    make_synthetic_extract(out, n_tasks=2, docs_per_task=8)
    h = json.loads((tmp_path / "out" / "_run.json").read_text())["config_hash"]
    ex_files = [f["path"] for m in read_manifests(out) if m["stage"] == "extract" for f in m["files"]
                if f["kind"] == "documents"]
    for i, p in enumerate(ex_files):  # one signature task per extract file (per language and shard)
        _manifest(out, "dedup_signatures", f"{i:06d}", [{"path": f"{out}/sig/{i}.npy", "bytes": 100, "kind": "bands"}],
                  {"documents": 2}, h, inputs=[p], seconds=1.0)
    for part in range(2):  # each bucket partition reads the band files of every signature task
        _manifest(out, "dedup_buckets", f"p{part}", [], {}, h,
                  inputs=[f"{out}/sig/{i}.npy" for i in range(len(ex_files))], seconds=1.0)
    p = project(out, shards=20, workers=4)
    by = {x["stage"]: x for x in p["projection"]}
    assert by["extract"]["tasks"] == 20
    # a work-sized stage: at full scale (20 shards) its input files fit the sample's task count
    assert by["dedup_signatures"]["scaling"].startswith("per work")
    assert by["dedup_signatures"]["tasks"] == len(ex_files)
    partitions = json.loads((tmp_path / "out" / "_run.json").read_text())["config"]["dedup"]["partitions"]
    assert by["dedup_buckets"]["scaling"] == "one task per hash partition"
    assert by["dedup_buckets"]["tasks"] == partitions


def test_merge_levels_and_the_bucket_fan_in_are_projected_for_a_snapshot(tmp_path):
    """Past tasks.max_input_files signature tasks, each partition's band files are merged (modelled as dedup's
    merge_tree does) and a bucket task reads at most 1,000 files."""
    out = str(tmp_path / "out")
    make_synthetic_extract(out, n_tasks=3, docs_per_task=20)
    add_synthetic_stages(out)
    p = project(out, shards=30_000_000, workers=1000)
    by = {x["stage"]: x for x in p["projection"]}
    partitions = json.loads((tmp_path / "out" / "_run.json").read_text())["config"]["dedup"]["partitions"]
    sig_tasks = by["dedup_signatures"]["tasks"]
    assert sig_tasks > 1000
    levels, reads = merge_levels(sig_tasks, 1000)
    (l1_nodes, l1_inputs, _), (l2_nodes, _, _) = levels
    assert l1_nodes > 0 and reads <= 1000
    assert by["dedup_merge"]["tasks"] == l1_nodes * partitions
    assert by["dedup_merge"]["s3_get"] == l1_inputs * partitions + l1_nodes * partitions  # band files + manifests
    assert by["dedup_merge_2"]["tasks"] == l2_nodes * partitions
    assert by["dedup_buckets"]["s3_get"] == (reads + 1) * partitions  # the top of its tree + its manifest check
    stages = [x["stage"] for x in p["projection"]]
    assert stages.index("dedup_signatures") < stages.index("dedup_merge") < stages.index("dedup_buckets")
    assert p["projection_total"]["s3_requests"] == sum(x["s3_get"] + x["s3_put"] + x["s3_head"]
                                                        for x in p["projection"])


def test_files_holding_several_languages_count_once(tmp_path, sample):
    """Extract writes one file per shard holding every language (language ID on): a PUT per file, not per
    language, and a stage reading its languages reads each file's bytes once in all."""
    _, shards = sample
    out = tmp_path / "out"
    cmd = [BABELSIEVE, "run", "--no-progress", "-o", str(out), "-w", "1", "--set", "extract.url_filter=false",
           "--set", "langid.backend=auto", "--set", "stages=[extract,dedup]"]
    r = subprocess.run(cmd + [a for s in shards for a in ("-i", str(s))], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    ms = read_manifests(str(out))
    ex = [m for m in ms if m["stage"] == "extract"]
    assert any(len(f.get("language_row_groups") or []) > 1 for m in ex for f in m["files"])  # several languages
    p = project(str(out), shards=30, workers=4)
    by = {x["stage"]: x for x in p["projection"]}
    assert by["extract"]["s3_put"] == 10 * sum(1 + len(m["files"]) for m in ex)
    doc_bytes = sum(f["bytes"] for m in ex for f in m["files"] if f["kind"] == "documents")
    assert by["dedup_signatures"]["bytes_read"] == pytest.approx(10 * doc_bytes)
    sig = [m for m in ms if m["stage"] == "dedup_signatures"]
    files_per_task = sum(len(set(m["inputs"])) for m in sig)  # small files: one GET each per task
    assert by["dedup_signatures"]["s3_get"] == 10 * files_per_task + by["dedup_signatures"]["tasks"]


def test_reads_of_big_multi_language_files_are_footer_plus_ranges():
    """A task's reads as PieceReader makes them: a small Parquet file once for all its languages, a big one by
    its footer and one ranged GET per language; other files by s3fs blocks; bytes shared by the pieces read."""
    from babelsieve.pipeline.cli.plan import S3_BLOCK_BYTES, _task_reads
    from babelsieve.pipeline.core.documents import WHOLE_FILE_BYTES

    small, big, npz = "x/small.parquet", "x/big.parquet", "x/sig.npz"
    sizes = {small: WHOLE_FILE_BYTES, big: WHOLE_FILE_BYTES + 1, npz: 2 * S3_BLOCK_BYTES + 1}
    pieces = {small: 4, big: 4, npz: 1}
    tasks = [[small, small, small, big, big, big, npz], [small, big]]  # a path once per language piece read
    gets, nbytes, known = _task_reads(tasks, sizes, pieces, 1.0)
    assert known
    assert gets == (1 + (1 + 3) + 3) + (1 + (1 + 1))
    assert nbytes == pytest.approx(sizes[small] + sizes[big] + sizes[npz])  # 3/4 + 1/4 of each Parquet file
    # the same files 10x bigger (a fixed-count stage at scale): the small file is read by ranges now
    gets10, _, _ = _task_reads(tasks, sizes, pieces, 10.0)
    assert gets10 == ((1 + 3) + (1 + 3) + 21) + ((1 + 1) + (1 + 1))
    assert _task_reads([["x/unknown.parquet"]], sizes, pieces, 1.0) == (0.0, 0.0, False)
