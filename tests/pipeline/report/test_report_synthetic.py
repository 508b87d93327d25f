"""Statistics of every later stage (dedup, filter, finalize, rebalance) merged from synthetic outputs.

The outputs come from :func:`support.synthetic_runs.add_synthetic_stages`, which returns the numbers a
correct merge must find.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.report.stats import collect_run_stats, read_manifests

from support.synthetic_runs import LANGS, add_synthetic_stages, make_synthetic_extract


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth") / "out")
    make_synthetic_extract(out)
    exp = add_synthetic_stages(out)
    return out, exp, collect_run_stats(out)


def test_every_table_is_present_with_its_schema(synth):
    _, _, stats = synth
    for key in ("tasks", "files", "stages", "stage_reasons", "languages", "removal", "language_score",
                "cluster_sizes", "rehydration", "logs", "scan"):
        assert isinstance(stats[key], pl.DataFrame), key
    assert stats["stages"]["stage"].to_list() == [
        "extract", "dedup_signatures", "dedup_buckets", "dedup_clusters", "dedup_annotate", "filter", "finalize",
        "rebalance"]


def test_documents_in_and_out_per_stage_and_language(synth):
    out, exp, stats = synth
    langs = stats["languages"]

    def get(stage, lang, col):
        return langs.filter((pl.col("stage") == stage) & (pl.col("lang_script") == lang))[col].item()

    for lang, n in exp["annotate"].items():
        assert get("dedup_annotate", lang, "docs_out") == n
        assert get("filter", lang, "docs_in") == n  # filter's input is dedup's output
        assert get("filter", lang, "docs_out") == exp["filter_out"][lang]
        assert get("filter", lang, "removed") == exp["filter_in"][lang] - exp["filter_out"][lang]
        assert get("filter", lang, "words") == exp["words"][lang]
    # extract: language-score removals carry their language; in = out + removed
    ex = langs.filter(pl.col("stage") == "extract")
    assert (ex["docs_in"] == ex["docs_out"] + ex["removed"]).all()
    manifests = [m for m in read_manifests(out) if m["stage"] == "extract"]
    assert ex["docs_out"].sum() == sum(m["stats"]["docs_out"] for m in manifests)
    assert ex["removed"].sum() == sum(m["stats"]["removed"]["language_score"] for m in manifests)


def test_removal_per_filter_and_language_with_rates(synth):
    _, exp, stats = synth
    rem = stats["removal"].filter(pl.col("stage") == "filter")
    got = {(r["lang_script"], r["reason"]): r["removed"] for r in rem.iter_rows(named=True)}
    assert got == dict(exp["filter_removed"])
    for r in rem.iter_rows(named=True):
        assert r["rate"] == pytest.approx(r["removed"] / exp["filter_in"][r["lang_script"]])
        assert r["filter"] == r["reason"].split(":")[0]
    assert set(rem["filter"].to_list()) == {"gopher_rep", "fineweb_qual"}


def test_histograms_cluster_sizes_and_rehydration(synth):
    _, exp, stats = synth
    cs = stats["cluster_sizes"].filter(pl.col("stage") == "dedup_annotate")
    assert dict(cs.group_by("cluster_size").agg(pl.col("documents").sum()).iter_rows()) == dict(exp["cluster_sizes"])
    ls = stats["language_score"]
    kept = ls.filter((pl.col("stage") == "extract") & (pl.col("set") == "kept"))["documents"].sum()
    removed = ls.filter((pl.col("stage") == "extract") & (pl.col("set") == "removed"))["documents"].sum()
    ex = stats["languages"].filter(pl.col("stage") == "extract")
    assert kept == ex["docs_out"].sum() and removed == ex["removed"].sum()
    assert ls["bin_lo"].min() >= 0 and ls["bin_hi"].max() <= 1
    reh = stats["rehydration"]
    for r in reh.iter_rows(named=True):
        assert r["docs_before"] == exp["rebalance_before"][r["lang_script"]]
        assert r["docs_after"] == exp["rebalance_after"][r["lang_script"]]
        assert r["expansion"] == pytest.approx(r["docs_after"] / r["docs_before"])
    assert reh["stage"].unique().to_list() == ["finalize"]


def test_stage_statistics_files_and_scan_limit(synth):
    out, _, stats = synth
    assert "stats/filter" in stats
    assert set(stats["stats/filter"]["lang_script"].to_list()) == set(LANGS)
    limited = collect_run_stats(out, max_scan_files=1)
    scan = limited["scan"]
    assert (scan["files_scanned"] <= 1).all() and (scan["files_total"] >= scan["files_scanned"]).all()
    fast = collect_run_stats(out, scan_parquet=False)
    assert fast["language_score"].height == 0 and fast["scan"].height == 0
    # Without the scan, removed files whose manifest entry names no language count as `und`; documents agree.
    def docs(df):
        return sorted(df.filter(pl.col("docs_out") > 0).select(["stage", "lang_script", "docs_out"]).rows())
    assert docs(fast["languages"]) == docs(stats["languages"])


def test_bad_manifest_and_log_lines_are_skipped(tmp_path):
    out = str(tmp_path / "out")
    make_synthetic_extract(out, n_tasks=1, docs_per_task=8)
    storage.publish_bytes(storage.join(out, "_manifests", "extract", "broken.json"), b"{not json")
    storage.publish_bytes(storage.join(out, "_logs", "extract-1.jsonl"),
                          b'{"stage": "extract", "task_id": "00000", "status": "done", "time": 1}\nnot json\n[1]\n')
    stats = collect_run_stats(out)
    assert stats["tasks"].height == 1
    assert stats["logs"].height == 1
    assert json.loads(json.dumps(stats["stages"].to_dicts()))  # plain JSON-able values
