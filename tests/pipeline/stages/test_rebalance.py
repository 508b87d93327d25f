"""Rebalance stage: rehydration weights, temperature mixture, budgets, hash-based determinism."""

from __future__ import annotations

import pyarrow.parquet as pq

from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.stages.rebalance import distribution_from_counts, temperature_rates

from support.dedup import doc, run_stages, write_fake_extract


def _shards():
    big = [dict(doc(i, f"text {i}", "ita_Latn"), minhash_cluster_size=(i % 3) + 1) for i in range(3000)]
    small = [dict(doc(10_000 + i, f"texte {i}", "fra_Latn"), minhash_cluster_size=1) for i in range(300)]
    return {"00000": {"ita_Latn": big[:1500], "fra_Latn": small}, "00001": {"ita_Latn": big[1500:]}}


def _run(tmp_path, name, reverse=False, **rebalance):
    cfg = PipelineConfig(output=str(tmp_path / name), stages=["extract", "rebalance"],
                         rebalance={"enabled": True, **rebalance})
    write_fake_extract(cfg, _shards())
    res = run_stages(cfg, ["rebalance"], reverse=reverse)["rebalance"]
    counts = {}
    for p in sorted((tmp_path / name / "rebalance").rglob("*.parquet")):
        for r in pq.read_table(p).to_pylist():
            counts[r["lang_script"]] = counts.get(r["lang_script"], 0) + 1
    return res, counts


def test_rehydration_fineweb2_weights(tmp_path):
    from babelsieve.dedup.rehydration import expand, published_weights

    w = expand(published_weights(5)["ita_Latn"])
    _, counts = _run(tmp_path, "a", rehydration="fineweb2", max_reps=5)
    expected = sum(int(w[min(s, len(w) - 1)]) for s in [(i % 3) + 1 for i in range(3000)])
    assert counts["ita_Latn"] == expected and counts["fra_Latn"] == 300


def test_temperature_sampling_flattens_and_is_deterministic(tmp_path):
    res, counts = _run(tmp_path, "t", temperature_alpha=0.3, seed=5)
    rates = temperature_rates({"ita_Latn": 3000, "fra_Latn": 300}, 0.3)
    for lang, n in (("ita_Latn", 3000), ("fra_Latn", 300)):
        assert abs(counts[lang] - rates[lang] * n) < 4 * (rates[lang] * n) ** 0.5 + 2
    assert counts["fra_Latn"] / counts["ita_Latn"] > 0.3  # flatter than 300/3000
    per_lang = [r["stats"]["per_language"] for r in res if r["stats"]["per_language"]][0]
    assert per_lang["fra_Latn"]["documents"] == 300 and per_lang["fra_Latn"]["rate"] > 1
    _, again = _run(tmp_path, "t2", reverse=True, temperature_alpha=0.3, seed=5)
    assert again == counts
    _, other_seed = _run(tmp_path, "t3", temperature_alpha=0.3, seed=6)
    assert other_seed != counts


def test_budgets_in_documents(tmp_path):
    _, counts = _run(tmp_path, "b", budgets={"ita_Latn": 1000})
    assert abs(counts["ita_Latn"] - 1000) < 100 and counts["fra_Latn"] == 300


def test_distribution_from_counts_shape():
    d = distribution_from_counts({1: 1000, 2: 500, 3: 50, 9: 10}, {1: 400, 2: 400, 3: 45, 9: 1}, min_docs=100)
    assert d["cluster_sizes"] == [1, 2] and d["tail_threshold"] == 3
    assert abs(d["global_removal_rate"] - 100 * (1 - 846 / 1560)) < 1e-9
