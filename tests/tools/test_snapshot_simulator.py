"""The snapshot simulator (tools/snapshot_simulator.py): deterministic sampling, hand-checked counts, and
a planning projection fitted to the planners it really ran."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "snapshot_simulator.py"


@pytest.fixture(scope="module")
def sim():
    """The tool loaded from its file (tools/ is not a package: it is run as a script)."""
    spec = importlib.util.spec_from_file_location("snapshot_simulator", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["snapshot_simulator"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def three_languages(tmp_path: Path) -> Path:
    path = tmp_path / "langs.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("lang_script,documents\naaa_Latn,60\nbbb_Latn,30\nccc_Cyrl,10\n")
    return path


def test_packaged_distribution_is_fineweb2(sim):
    langs, probs = sim.load_distribution()
    assert len(langs) > 1800 and "rus_Cyrl" in langs and sim.ENGLISH not in langs
    assert probs.sum() == pytest.approx(1.0) and (probs > 0).all()


def test_same_seed_same_table_other_seed_other_sample(sim):
    langs, probs = sim.load_distribution()
    params = sim.ModelParams()
    a = sim.simulate(30, langs, probs, params, seed=7)
    b = sim.simulate(30, langs, probs, params, seed=7)
    c = sim.simulate(30, langs, probs, params, seed=8)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["language_files"] != c["language_files"]
    # the issue's own figure: about 240 distinct languages in a shard of 19,000 non-English documents
    assert 200 < a["languages_per_shard_mean"] < 260


def test_counts_of_a_hand_made_snapshot(sim):
    # 2 shards x (3 languages + English); one partition and one band: a file writes exactly one band file
    params = sim.ModelParams(responses=7, non_english_documents=4, partitions=1, num_buckets=1,
                             extract_removed_reasons=1, filter_removed_reasons=2)
    counts = np.array([[3, 0, 1, 3], [1, 2, 0, 3]])
    stats = sim.collect(iter([counts]), params)
    rows = {r["stage"]: r for r in sim.stage_model(stats, params)}
    # 6 language files: shard 0 holds aaa, ccc, English; shard 1 aaa, bbb, English
    assert rows["extract"]["tasks"] == 2 and rows["extract"]["files"] == 6 + 2
    assert rows["dedup_signatures"]["tasks"] == 6 and rows["dedup_signatures"]["files"] == 6 + 6
    assert rows["dedup_buckets"]["tasks"] == 4  # (language, partition) for 4 languages x 1 partition
    assert (rows["dedup_buckets"]["fanin_max"], rows["dedup_buckets"]["fanin_p99"]) == (2, 2)  # aaa, English
    assert rows["dedup_clusters"]["tasks"] == 4 and rows["dedup_clusters"]["fanin_max"] == 1
    assert rows["dedup_annotate"]["tasks"] == 6 and rows["dedup_annotate"]["files"] == 12
    # filter: kept + stats per task + min(n, 2) removed: 2+1+2 (shard 0) + 1+2+2 (shard 1) = 10
    assert rows["filter"]["files"] == 12 + 10 and rows["filter"]["put"] == 22 + 6
    sig = rows["dedup_signatures"]
    # planning: 2 extract manifests read; HEAD per task (6) + exists() of own and upstream manifests (2);
    # LIST: own manifests 1 + upstream manifests 1 + one per extract directory (4 languages + 1 reason)
    assert (sig["planning_get"], sig["planning_head"], sig["planning_list"]) == (2, 8, 7)
    assert sig["worker_get"] == 6 and sig["worker_head"] == 6
    # partitions: a file of n documents fills P(1 - (1 - 1/P)^(B n)) partitions on average
    two = sim.ModelParams(partitions=2, num_buckets=1)
    assert sim.expected_partitions(1, two) == pytest.approx(1.0)
    assert sim.expected_partitions(2, two) == pytest.approx(1.5)


def test_sampling_follows_the_distribution(sim, three_languages):
    langs, probs = sim.load_distribution(three_languages)
    assert langs == ["aaa_Latn", "bbb_Latn", "ccc_Cyrl"] and probs.tolist() == pytest.approx([0.6, 0.3, 0.1])
    params = sim.ModelParams(responses=1000, non_english_documents=900)
    m = np.vstack(list(sim.sample_shards(3, probs, params, seed=1)))
    assert m.shape == (3, 4) and (m[:, :3].sum(axis=1) == 900).all() and (m[:, 3] == 100).all()


def test_projection_is_fitted_to_the_measured_planners(sim, three_languages, tmp_path):
    langs, probs = sim.load_distribution(three_languages)
    params = sim.ModelParams(responses=20, non_english_documents=12, partitions=1, num_buckets=1,
                             extract_removed_reasons=1, filter_removed_reasons=1)
    measured = sim.measure_planning([1, 3], langs, probs, params, seed=0, workdir=str(tmp_path),
                                   trace_memory=False)  # see _measure: tracemalloc can crash 3.11
    assert list(measured["not_timed"]) == ["extract"]  # every other stage's real plan() ran
    assert [p["shards"] for p in measured["points"]] == [1, 3]
    # the real planners plan what the work-sized model counts for the same shards (the stages planned from
    # extract's manifests, which the tree writes as extract does; later stages plan from the outputs the tree
    # wrote for the tasks the real planners planned: this version's layout)
    for p in measured["points"]:
        counts = np.vstack(list(sim.sample_shards(p["shards"], probs, params, seed=0)))
        model = {r["stage"]: r["tasks"] for r in sim.work_model(sim.collect(iter([counts]), params), params)}
        for k in ("dedup_signatures", "dedup_annotate"):
            assert p["stages"][k]["tasks"] == model[k]
    proj = sim.extrapolate(measured["points"], 5)
    for stage, got in proj.items():
        (x1, y1), (x2, y2) = [(p["shards"], p["stages"][stage]["plan_seconds"]) for p in measured["points"]]
        line = y1 + (y2 - y1) / (x2 - x1) * (5 - x1)
        assert got["plan_seconds"] == pytest.approx(max(line, 0.0), abs=1e-9)
    # a made-up pair of points gives exactly its line
    fake = [{"shards": s, "stages": {"x": {"plan_seconds": s, "check_seconds": 0.5 * s, "plan_peak_bytes": 10 * s}}}
            for s in (1, 2)]
    assert sim.extrapolate(fake, 90_000)["x"] == pytest.approx(
        {"plan_seconds": 90_000, "check_seconds": 45_000, "plan_peak_bytes": 900_000})


def test_command_line_json(sim, capsys):
    assert sim.main(["--shards", "3", "--sample-shards", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["results"][0]["shards"] == 3 and out["measured_planning"] is None
    assert [r["stage"] for r in out["results"][0]["stages"]] == sim.STAGES


def test_unmeasured_quantities_are_not_projected(sim):
    pts = [{"shards": s, "stages": {"rebalance": {"plan_seconds": s, "check_seconds": None, "plan_peak_bytes": s}}}
           for s in (1, 2)]
    proj = sim.extrapolate(pts, 10)["rebalance"]
    assert "check_seconds" not in proj and proj["plan_seconds"] == pytest.approx(10)


@pytest.mark.parametrize("target,cap", [(50, 4), (7, 1000), (1000, 3), (1, 2)])
def test_work_groups_are_the_planners_grouping(sim, target, cap):
    """The simulator's vectorised grouping gives the groups of the real planner (plan_work_groups) on the
    same files: count, files, documents and languages per group."""
    from babelsieve.pipeline.core.tasks import plan_work_groups

    rng = np.random.default_rng(3)
    lang_files = [rng.integers(1, 40, size=k) for k in (0, 1, 17, 3, 60, 2)]
    entries = [{"path": f"extract/lang_script=l{j}/{i:05d}.parquet", "lang_script": f"l{j}", "rows": int(n)}
               for j, a in enumerate(lang_files) for i, n in enumerate(a)]
    real = plan_work_groups(entries, target, 1 << 60, cap)
    got = sim.work_groups(lang_files, target, cap)
    assert got["files"].tolist() == [len(g) for g in real]
    assert got["documents"].tolist() == [sum(e["rows"] for e in g) for g in real]
    assert got["languages"].tolist() == [len({e["lang_script"] for e in g}) for g in real]
    assert got["pieces"].sum() == sum(a.sum() for a in lang_files)


def test_work_model_meets_the_issue_targets_at_a_small_scale(sim):
    """Tasks after extract stay at most ~2 per shard and independent of the languages' count; files of the
    per-language stages follow tasks (not shards x languages)."""
    langs, probs = sim.load_distribution()
    params = sim.ModelParams()
    res = sim.simulate(200, langs, probs, params, seed=0)
    work = {r["stage"]: r for r in res["work_stages"]}
    today = {r["stage"]: r for r in res["stages"]}
    for stage in ("dedup_signatures", "dedup_annotate", "filter", "finalize", "rebalance"):
        assert work[stage]["tasks"] <= 2 * 200 < today[stage]["tasks"]
        assert work[stage]["fanin_max"] <= 1000
    for stage in ("filter", "finalize", "rebalance"):
        assert work[stage]["files"] < 0.1 * today[stage]["files"]


def test_work_model_bounds_the_bucket_fan_in(sim):
    """With the merge levels every dedup task reads at most max_input_files files, also where the signature
    tasks are many more than that (small work targets)."""
    langs, probs = sim.load_distribution()
    params = sim.ModelParams()
    stats = sim.collect(sim.sample_shards(300, probs, params, 0), params)
    for targets in (sim.WorkTargets(), sim.WorkTargets(documents=500, max_inputs=40)):
        rows = {r["stage"]: r for r in sim.work_model(stats, params, targets)}
        assert [r for r in rows] == sim.WORK_STAGES
        merged = ("dedup_merge", "dedup_merge_2", "dedup_buckets")
        assert all(rows[s]["fanin_max"] <= targets.max_inputs for s in merged)
    assert rows["dedup_signatures"]["tasks"] > 40 ** 2  # so both levels ran
    assert rows["dedup_merge"]["tasks"] > 0 and rows["dedup_merge_2"]["tasks"] > 0


def test_planning_is_measured_on_this_versions_layout(sim, three_languages, tmp_path):
    """The generated tree has this version's shape: extract one manifest per shard with one documents file
    holding every language present (a row-group run each); every later stage the outputs of the work-sized
    tasks its real planner planned;
    the indexes written by the real code (version 2, one manifest per line)."""
    from babelsieve.pipeline.core.config import PipelineConfig
    from babelsieve.pipeline.core.runner import expand_stages
    from babelsieve.pipeline.core.tasks import completed_files, load_manifests
    from babelsieve.pipeline.stages import stage_class

    langs, probs = sim.load_distribution(three_languages)
    params = sim.ModelParams(responses=20, non_english_documents=12, partitions=2, num_buckets=2,
                             extract_removed_reasons=1, filter_removed_reasons=1)
    counts = np.vstack(list(sim.sample_shards(6, probs, params, seed=0)))
    names = langs + [sim.ENGLISH]
    config = PipelineConfig(output=str(tmp_path / "out"), stages=["extract", "dedup", "filter", "finalize"],
                            dedup={"partitions": 2, "num_buckets": 2}, tasks={"target_documents": 25})
    tree = sim.WorkManifestTree(config.output, config, params)
    tree.build_extract(counts, names)
    extract = load_manifests(config, "extract", write_index=True)
    assert list(extract) == [f"{s:05d}" for s in range(6)]
    for s, m in enumerate(extract.values()):
        (doc,) = [f for f in m["files"] if f["kind"] == "documents"]
        assert [(x[0], x[3]) for x in doc["language_row_groups"]] == sorted(
            (names[j], int(counts[s, j])) for j in np.flatnonzero(counts[s]))
    total = int(counts.sum())
    planned = {}
    for name in expand_stages(config)[1:]:
        tasks = stage_class(name)(config).plan()
        assert (tasks or name.startswith("dedup_merge")) and tree.write_stage(name, tasks), name
        load_manifests(config, name, write_index=True)
        planned[name] = tasks
    # work-sized: fewer tasks than (shard, language) files, every document reaches the end
    assert len(planned["filter"]) < int((counts > 0).sum())
    assert sum(f["rows"] for f in completed_files(config, "finalize", kind="documents")) == total
    for name in [n for n in expand_stages(config) if load_manifests(config, n)]:
        with gzip.open(tmp_path / "out" / "_index" / f"{name}.json.gz", "rt") as f:
            assert json.loads(f.readline()) == {"stage": name, "version": 2}
            assert len(f.read().splitlines()) == len(load_manifests(config, name))
    assert not tree.write_stage("no_such_stage", planned["filter"])


def test_planning_table_shows_the_fit_and_the_load(sim):
    pts = [{"shards": s, "load_average": [1.0, 2.0, 3.0], "language_files": 1, "files_generated": 1,
            "generate_seconds": 0.1,
            "stages": {"filter": {"tasks": 1, "plan_seconds": 2.0 * s, "plan_cpu_seconds": 1.0 * s,
                                  "plan_peak_bytes": 1e6 * s, "check_seconds": None}}} for s in (10, 20)]
    measured = {"points": pts, "not_timed": {}, "max_rss_bytes": 1e8, "load_average_before": [1.0, 1.0, 1.0],
                "load_average_after": [2.0, 2.0, 2.0]}
    table = sim.render_planning(measured, 90_000)
    assert ("| filter | 20.00 s (10.00 CPU) / 10.0 MB | 40.00 s (20.00 CPU) / 20.0 MB "
            "| 180,000 s (90,000 CPU) / 90.00 GB") in table
    assert "2 * N + " in table and "least-squares" in sim.render_points(measured)
    assert "load average 1.00/2.00/3.00" in sim.render_points(measured)
