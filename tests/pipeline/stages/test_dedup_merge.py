"""The merge levels of dedup (``dedup_merge``, ``dedup_merge_2``): no ``dedup_buckets`` or merge task reads
more than ``tasks.max_input_files`` files, and the dedup outcome is byte-identical to a run without them.

Runs go through the runner on the local engine (real worker processes) over a planted near-duplicate corpus
written as extract output: 6 shards x 2 languages, one signature task per extract file, so 12 band files
per partition. With ``max_input_files=3`` a partition's tree is 12 band files -> 4 level-1 files (3 each)
-> a level-2 file over the first three and the fourth passing through: the bucket task reads 2 files.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from rich.console import Console

from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.core.tasks import load_manifests
from babelsieve.pipeline.stages import STAGE_GROUPS
from babelsieve.pipeline.stages.dedup import MERGE_STAGES, MergeNode, merge_levels, merge_tree

from support.dedup import doc, mutate, vocab, write_fake_extract

SHARDS = 6
LANGS = ("eng_Latn", "rus_Cyrl")


def _corpus() -> dict[str, dict[str, list[dict]]]:
    """shard -> language -> rows; every cluster's copies are spread over different shards."""
    rng = random.Random(5)
    V = vocab(random.Random(7), 3000)
    shards: dict[str, dict[str, list[dict]]] = {f"{s:05d}": {lang: [] for lang in LANGS} for s in range(SHARDS)}
    k = 0
    for lang in LANGS:
        for _ in range(8):
            base = [rng.choice(V) for _ in range(100)]
            for s in rng.sample(range(SHARDS), rng.randint(2, 4)):
                shards[f"{s:05d}"][lang].append(doc(k, " ".join(mutate(base, 0.01, rng, V)), lang))
                k += 1
        for s in range(SHARDS):
            shards[f"{s:05d}"][lang].append(doc(k, " ".join(rng.choice(V) for _ in range(100)), lang))
            k += 1
    return shards


def _config(out: Path, cap: int) -> PipelineConfig:
    # target_documents=1: every extract file is its own task in every stage whatever the cap, so the runs with
    # cap 3 and cap 1000 write the same files under the same names (only the merge levels differ)
    return PipelineConfig(output=str(out), stages=["extract", "dedup", "finalize"],
                          dedup={"partitions": 2}, tasks={"target_documents": 1, "max_input_files": cap},
                          engine="local", engine_options={"workers": 2})


def _run(cfg: PipelineConfig):
    return run_pipeline(cfg, console=Console(quiet=True), show_progress=False, only=["dedup", "finalize"])


def _outputs(out: Path) -> dict[str, str]:
    """sha256 of every data file after extract: edges, clusters, kept and removed documents, finalize."""
    subs = ("dedup_work/edges", "dedup_work/clusters", "dedup", "removed", "finalize")
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in subs for p in sorted((out / sub).rglob("*")) if p.is_file()}


def _fan_in(cfg: PipelineConfig) -> dict[str, int]:
    """stage -> the most inputs any of its task manifests lists."""
    return {s: max((len(m["inputs"]) for m in load_manifests(cfg, s).values()), default=0)
            for s in STAGE_GROUPS["dedup"]}


def _counts(summary) -> dict[str, tuple[int, int, int]]:
    return {s.stage: (s.tasks, s.done, s.cached) for s in summary.stages}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The corpus deduplicated with cap 3 (both merge levels) and with the default cap (no merge)."""
    base = tmp_path_factory.mktemp("merge")
    shards = _corpus()
    out = {}
    for name, cap in (("capped", 3), ("default", 1000)):
        cfg = _config(base / name, cap)
        write_fake_extract(cfg, shards)
        out[name] = (cfg, _run(cfg))
    return out


def test_tree_shapes():
    entries = [{"path": f"b/{i:03d}.npy"} for i in range(14)]
    assert merge_tree(entries, 0, 20) == sorted(entries, key=lambda e: e["path"])  # under the cap: unchanged
    top = merge_tree(entries[::-1], 0, 3)  # 14 -> 5 (3,3,3,3,2) -> 2 (3, 2)
    assert [(n.level, len(n.children)) for n in top] == [(2, 3), (2, 2)]
    assert [leaf["path"] for n in top for leaf in n.leaves] == [e["path"] for e in entries]
    top = merge_tree(entries[:7], 0, 2)  # 7 -> 4 (2,2,2, one passes through) -> 2 (2, 2)
    assert [len(n.children) for n in top] == [2, 2]
    assert top[1].children[1] == entries[6]
    # past cap ** 3 the tree stops at two levels: the bucket then reads more than the cap
    assert len(merge_tree([{"path": f"{i:03d}"} for i in range(9)], 0, 2)) == 3
    assert all(isinstance(n, MergeNode) for n in merge_tree([{"path": f"{i:03d}"} for i in range(8)], 0, 2))


def test_no_task_reads_more_than_the_cap(runs):
    cfg, summary = runs["capped"]
    fan_in = _fan_in(cfg)
    assert fan_in["dedup_buckets"] == 2 and fan_in["dedup_merge"] == 3 and fan_in["dedup_merge_2"] == 3
    assert fan_in["dedup_signatures"] == 1
    # 2 partitions: 4 level-1 tasks and 1 level-2 task each
    counts = _counts(summary)
    assert counts["dedup_merge"] == (8, 8, 0) and counts["dedup_merge_2"] == (2, 2, 0)
    assert counts["dedup_buckets"] == (2, 2, 0)
    # without the merge the same run's buckets read every band file: 12 per partition
    default_cfg, default_summary = runs["default"]
    assert _fan_in(default_cfg)["dedup_buckets"] == 2 * SHARDS
    assert _counts(default_summary)["dedup_merge"][0] == 0 and _counts(default_summary)["dedup_merge_2"][0] == 0


def test_outcome_is_byte_identical_to_a_run_without_merge(runs):
    capped, default = runs["capped"][0], runs["default"][0]
    a, b = _outputs(Path(capped.output)), _outputs(Path(default.output))
    assert any(k.startswith("removed/") for k in a) and any(k.startswith("finalize/") for k in a)
    assert a == b


def test_rerun_is_cached_and_a_deleted_merged_file_is_healed(runs):
    cfg, _ = runs["capped"]
    out = Path(cfg.output)
    before = _outputs(out)
    summary = _run(cfg)
    assert all(done == 0 and cached == tasks for tasks, done, cached in _counts(summary).values())
    # a level-1 file that a level-2 file was made from: its task alone runs again (same bytes), nothing after it
    victim = out / "dedup_work" / "bands_merged" / "part=00000" / "L1-000001.npy"
    victim.unlink()
    counts = _counts(_run(cfg))
    assert victim.exists()
    assert counts["dedup_merge"] == (8, 1, 7)
    assert all(done == 0 for stage, (_, done, _) in counts.items() if stage != "dedup_merge")
    # the file the bucket task reads: merged again, then the bucket task (its input's content is the same: cached)
    top = out / "dedup_work" / "bands_merged" / "part=00001" / "L2-000000.npy"
    top.unlink()
    counts = _counts(_run(cfg))
    assert top.exists() and counts["dedup_merge_2"] == (2, 1, 1) and counts["dedup_buckets"] == (2, 0, 2)
    assert _outputs(out) == before


def test_a_killed_merge_task_costs_fan_in_on_that_run_never_correctness(tmp_path, runs, monkeypatch):
    """Its worker is SIGKILLed and not retried: level 2 reads that chunk's band files instead (more than the
    cap, on this run only), the outcome is unchanged; the next run merges it and reruns only level 2."""
    cfg = _config(tmp_path / "killed", 3)
    cfg.engine_options.max_retries = 0
    write_fake_extract(cfg, _corpus())
    monkeypatch.setenv("BABELSIEVE_FAULT", "dedup_merge:00000-000001:kill")
    counts = _counts(_run(cfg))
    assert counts["dedup_merge"] == (8, 7, 0)  # the eighth failed
    m2 = load_manifests(cfg, "dedup_merge_2")["00000-000000"]
    assert len(m2["inputs"]) == 5  # level-1 files 0 and 2 and the 3 band files of chunk 1
    assert _fan_in(cfg)["dedup_buckets"] == 2
    default = Path(runs["default"][0].output)
    assert _outputs(Path(cfg.output)) == _outputs(default)
    monkeypatch.delenv("BABELSIEVE_FAULT")
    counts = _counts(_run(cfg))
    assert counts["dedup_merge"] == (8, 1, 7) and counts["dedup_merge_2"] == (2, 1, 1)
    # the level-2 file is the same bytes either way: the buckets and everything after them are cached
    assert all(done == 0 for stage, (_, done, _) in counts.items() if stage not in MERGE_STAGES)
    assert max(len(m["inputs"]) for s in MERGE_STAGES for m in load_manifests(cfg, s).values()) == 3
    assert _outputs(Path(cfg.output)) == _outputs(default)


def test_merged_file_from_other_band_files_is_never_read(runs, tmp_path):
    """A merged file whose recorded band files differ from the chunk's current ones (e.g. left by a run before
    shards were added) is not read by the consumers, even where its path is the one the tree names."""
    from babelsieve.pipeline.core.layout import RunLayout
    from babelsieve.pipeline.stages.dedup import merge_trees, merged_files, resolve_inputs

    cfg, _ = runs["capped"]
    merged = merged_files(cfg, 3)
    node = merge_trees(cfg)[0][0]
    path = node.path(RunLayout(cfg.output))
    assert resolve_inputs([node], merged, RunLayout(cfg.output)) == [merged[path]]
    stale = {**merged, path: {**merged[path], "leaves_digest": "0" * 64}}
    inputs = resolve_inputs([node], stale, RunLayout(cfg.output))
    assert path not in [e["path"] for e in inputs] and len(inputs) == 3


def test_added_shards_give_the_outputs_of_one_run_over_all_shards(runs, tmp_path):
    """5 shards, then the sixth added: the merge trees change (10 -> 12 band files per partition), chunks whose
    band files are unchanged stay cached, and the result (merged files included) is the single run's."""
    shards = _corpus()
    cfg = _config(tmp_path / "added", 3)
    write_fake_extract(cfg, {k: v for k, v in shards.items() if k != f"{SHARDS - 1:05d}"})
    first = _counts(_run(cfg))
    assert first["dedup_merge"][0] == 2 * 3 and first["dedup_merge_2"][0] == 2  # 10 -> 4 (3, 3, 3, 1) -> 2
    write_fake_extract(cfg, shards)
    second = _counts(_run(cfg))
    assert second["dedup_merge"][0] == 8 and second["dedup_merge"][2] >= 1  # some chunks are unchanged
    single = Path(runs["capped"][0].output)
    merged = "dedup_work/bands_merged"
    assert _outputs(Path(cfg.output)) == _outputs(single)
    assert ({str(p.relative_to(cfg.output)): p.read_bytes() for p in (Path(cfg.output) / merged).rglob("*.npy")}
            == {str(p.relative_to(single)): p.read_bytes() for p in (single / merged).rglob("*.npy")})


@pytest.mark.parametrize("n,cap", [(0, 2), (2, 2), (3, 2), (7, 2), (8, 2), (9, 2), (14, 3), (28, 3), (71_329, 1000)])
def test_merge_levels_are_the_shape_of_merge_tree(n, cap):
    """merge_levels (the model of `babelsieve plan` and the snapshot simulator) counts the nodes of the real
    merge tree per level, their inputs, their largest fan-in, and what the bucket task then reads."""
    top = merge_tree([{"path": f"b/{i:06d}.npy"} for i in range(n)], 0, cap)
    levels, bucket_reads = merge_levels(n, cap)
    assert bucket_reads == len(top)
    for level, (nodes, inputs, fanin) in enumerate(levels, start=1):
        real: list = []
        stack = list(top)
        while stack:
            it = stack.pop()
            if isinstance(it, MergeNode):
                real += [it] if it.level == level else []
                stack += list(it.children)
        assert nodes == len(real) and inputs == sum(len(x.children) for x in real)
        assert fanin == (max(len(x.children) for x in real) if real else 0)
