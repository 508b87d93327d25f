"""Pipeline runs shared by the report, status and plan tests, and synthetic later stages.

:func:`shared_runs`: real extract runs made once per test session (a real run is the slow part of those
tests). :func:`add_synthetic_stages` writes manifests and Parquet files in the layout of the later
stages (``<stage>/lang_script=xxx_Yyyy/<task>.parquet``, ``removed/<stage>/<reason>/``, ``_stats/filter/``,
``minhash_cluster_size``, ``sig_*`` columns), and returns the numbers a correct merge must find.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import (
    DOCUMENT_SCHEMA,
    REMOVED_EXTRA,
    language_dir,
    table_from_rows,
    write_table,
)
from babelsieve.pipeline.report.stats import read_manifests

from support.data import BABELSIEVE, SAMPLE_WARC, split_warc

LANGS = ["rus_Cyrl", "deu_Latn", "fra_Latn", "cmn_Hani"]
RUN_ARGS = ["--no-progress", "--workers", "2", "--only", "extract", "--set", "langid.backend=none"]
_RUNS: dict[str, Any] = {}


def run_cmd(out: Path, shards: list[Path], *extra: str) -> list[str]:
    cmd = [BABELSIEVE, "run", "--output", str(out), *RUN_ARGS, *extra]
    for s in shards:
        cmd += ["--input", str(s)]
    return cmd


def copy_output(src: Path, dst: Path) -> Path:
    """Copy a run's output; manifests name their files by absolute URL, so point them at the copy."""
    shutil.copytree(src, dst)
    for m in (dst / "_manifests").rglob("*.json"):
        m.write_bytes(m.read_bytes().replace(str(src).encode(), str(dst).encode()))
    return dst


def shared_runs(tmp_path_factory) -> dict[str, Any]:
    """Real extract runs on the sample WARC split in 3 shards (langid off), once per session:

    ``failed``: task 00001 failed (injected fault; a raising task is not retried) -- exit status 1;
    ``complete``: a copy of it, rerun to completion (the fault fires once); ``shards``: the inputs.
    Tests must not modify them: copy with :func:`copy_output` first.
    """
    if not _RUNS:
        base = tmp_path_factory.mktemp("shared-runs")
        shards = split_warc(SAMPLE_WARC, base / "in", 3)
        failed = base / "failed"
        r = subprocess.run(run_cmd(failed, shards), capture_output=True, text=True,
                           env={**os.environ, "BABELSIEVE_FAULT": "extract:00001"})
        assert r.returncode == 1, r.stderr
        complete = copy_output(failed, base / "complete")
        r = subprocess.run(run_cmd(complete, shards), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        _RUNS.update(failed=failed, complete=complete, shards=shards)
    return _RUNS
REMOVED_SCHEMA = DOCUMENT_SCHEMA.append(REMOVED_EXTRA)
FILTERED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("sig_n_words", pa.int64()))


def _manifest(out: str, stage: str, task_id: str, files: list[dict[str, Any]], stats: dict[str, Any], config_hash: str,
              inputs: list[str] | None = None, seconds: float = 0.5) -> None:
    storage.publish_json(storage.join(out, "_manifests", stage, f"{task_id}.json"), {
        "version": 1, "stage": stage, "task_id": task_id, "inputs": inputs or [], "params": {},
        "config_hash": config_hash, "files": files, "stats": stats, "seconds": seconds,
    })


def make_synthetic_extract(out: str, n_tasks: int = 2, docs_per_task: int = 30) -> None:
    """A stand-in extract stage (documents labelled in LANGS, some removed by language score) + _run.json."""
    from babelsieve.pipeline.core.config import load_config

    cfg = load_config(None, output=out)
    h = cfg.content_hash()
    storage.publish_json(storage.join(out, "_run.json"), {"config_hash": h, "config": cfg.model_dump(mode="json")})
    i = 0
    for t in range(n_tasks):
        tid = f"{t:05d}"
        rows, removed = [], []
        for _ in range(docs_per_task):
            lang = LANGS[i % len(LANGS)]
            score = 0.30 + 0.70 * ((i * 37) % 100) / 100
            code, script = lang.split("_")
            d = {"text": f"document {i} " + "word " * (5 + i % 20), "id": f"<urn:uuid:{i}>", "dump": "synthetic",
                 "url": f"https://example.org/{i}", "date": "2024-01-01", "file_path": f"shard-{t}.warc.gz",
                 "language": code, "language_script": script, "language_score": round(score, 4),
                 "top_langs": "{}", "lang_script": lang}
            (removed if score < 0.45 else rows).append(d)
            i += 1
        files = []
        for lang in sorted({r["lang_script"] for r in rows}):
            part = [r for r in rows if r["lang_script"] == lang]
            e = write_table(language_dir(storage.join(out, "extract"), lang) + f"/{tid}.parquet",
                            table_from_rows(part))
            files.append({**e, "kind": "documents", "lang_script": lang})
        for r in removed:
            r["removal_reason"] = f"language_score:{r['lang_script']}<0.45"
        e = write_table(storage.join(out, "removed", "extract", "language_score", f"{tid}.parquet"),
                        table_from_rows(removed, REMOVED_SCHEMA))
        files.append({**e, "kind": "removed", "reason": "language_score"})
        _manifest(out, "extract", tid, files, {
            "records": docs_per_task + 3, "responses": docs_per_task + 1, "docs_in": docs_per_task + 1,
            "docs_out": len(rows), "removed": {"language_score": len(removed)}, "skipped": {"not_html": 1},
            "problems": [], "problem_counts": {}, "languages": dict(Counter(r["lang_script"] for r in rows)),
        }, h, inputs=[f"shard-{t}.warc.gz"], seconds=2.0 + t)


def _docs_of(out: str, stage: str) -> list[dict[str, Any]]:
    rows = []
    for m in read_manifests(out):
        if m["stage"] != stage:
            continue
        for f in m["files"]:
            if f.get("kind") == "documents":
                rows.extend(pl.read_parquet(storage.read_bytes(f["path"])).to_dicts())
    return sorted(rows, key=lambda r: r["id"])


def add_synthetic_stages(out: str | Path, relabel: bool | None = None) -> dict[str, Any]:
    """Write dedup (4 task stages), filter (+ _stats), finalize and rebalance outputs from the extract output.

    ``relabel``: give documents labelled ``und`` (language ID off) a language from LANGS, cycling, so
    per-language plots have something to show. Returns the expected figures.
    """
    out = str(out)
    run = storage.read_json(storage.join(out, "_run.json"))
    h = run["config_hash"]
    docs = _docs_of(out, "extract")
    assert docs, "no extract documents to build on"
    if relabel is None:
        relabel = all(d["lang_script"] == "und" for d in docs)
    for i, d in enumerate(docs):
        if relabel:
            lang = LANGS[i % len(LANGS)]
            d.update(lang_script=lang, language=lang.split("_")[0], language_script=lang.split("_")[1],
                     language_score=round(0.5 + 0.5 * ((i * 37) % 100) / 100, 4))
    exp: dict[str, Any] = {"relabelled": relabel}
    extract_tasks = sorted(m["task_id"] for m in read_manifests(out) if m["stage"] == "extract")

    # dedup_signatures: one task per extract task; dedup_buckets: 2 partitions; dedup_clusters: 1 task.
    per_task = max(1, len(docs) // len(extract_tasks))
    for k, tid in enumerate(extract_tasks):
        chunk = docs[k * per_task:(k + 1) * per_task] if k < len(extract_tasks) - 1 else docs[k * per_task:]
        sig = pa.table({"id": [d["id"] for d in chunk], "band": [0] * len(chunk)})
        e = write_table(storage.join(out, "dedup", "signatures", f"{tid}.parquet"), sig)
        _manifest(out, "dedup_signatures", tid, [{**e, "kind": "signatures"}],
                  {"docs_in": len(chunk), "docs_out": len(chunk)}, h, seconds=0.25)
    for p in ("p000", "p001"):
        e = write_table(storage.join(out, "dedup", "buckets", f"{p}.parquet"), pa.table({"a": [1], "b": [2]}))
        _manifest(out, "dedup_buckets", p, [{**e, "kind": "buckets"}], {}, h, seconds=0.1)
    e = write_table(storage.join(out, "dedup", "clusters", "00000.parquet"), pa.table({"a": [1]}))
    _manifest(out, "dedup_clusters", "00000", [{**e, "kind": "clusters"}], {}, h, seconds=0.2)

    # dedup_annotate: per language, every 5th document is a duplicate of a kept one.
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in docs:
        by_lang[d["lang_script"]].append(d)
    annotated: dict[str, list[dict[str, Any]]] = {}
    exp["annotate"] = {}
    exp["cluster_sizes"] = Counter()
    for lang in sorted(by_lang):
        kept = []
        for j, d in enumerate(by_lang[lang]):
            if j % 5 == 4:
                continue
            d = dict(d, minhash_cluster_size=1 + (3 if j % 5 == 0 else 0) + (10 if j % 10 == 0 else 0))
            kept.append(d)
            exp["cluster_sizes"][d["minhash_cluster_size"]] += 1
        annotated[lang] = kept
        exp["annotate"][lang] = len(kept)
        e = write_table(language_dir(storage.join(out, "dedup_annotate"), lang) + "/00000.parquet",
                        table_from_rows(kept))
        _manifest(out, "dedup_annotate", f"{lang}-00000", [{**e, "kind": "documents", "lang_script": lang}],
                  {"docs_in": len(by_lang[lang]), "docs_out": len(kept),
                   "removed": {"minhash_duplicate": len(by_lang[lang]) - len(kept)}}, h, seconds=0.3)

    # filter (layout of pipeline/stages/filter.py): signals (sig_n_words); removal reasons "filter:rule";
    # removed docs under removed/filter/<filter>/<rule>/; per-task stats Parquet under _stats/filter/.
    exp["filter_in"], exp["filter_out"], exp["filter_removed"] = {}, {}, Counter()
    filtered: dict[str, list[dict[str, Any]]] = {}
    for lang, rows in annotated.items():
        kept, removed = [], defaultdict(list)
        for j, d in enumerate(rows):
            d = dict(d, sig_n_words=len(d["text"].split()))
            reason = ("gopher_rep:dup_line_frac" if j % 4 == 1 else "fineweb_qual:line_punct_ratio" if j % 7 == 2
                      else "fineweb_qual:short_line_ratio" if j % 7 == 5 else None)
            if reason:
                removed[reason].append(dict(d, removal_reason=reason))
            else:
                kept.append(d)
        filtered[lang] = kept
        files = []
        e = write_table(language_dir(storage.join(out, "filter"), lang) + "/00000.parquet",
                        table_from_rows(kept, FILTERED_SCHEMA))
        files.append({**e, "kind": "documents", "lang_script": lang})
        for reason, rs in sorted(removed.items()):
            e = write_table(storage.join(out, "removed", "filter", *reason.split(":"), f"{lang}-00000.parquet"),
                            table_from_rows(rs, REMOVED_SCHEMA))
            entry = {**e, "kind": "removed", "reason": reason}
            if reason.startswith("gopher_rep"):  # some with their language in the manifest, some without
                entry["lang_script"] = lang
            files.append(entry)
            exp["filter_removed"][(lang, reason)] = len(rs)
        exp["filter_in"][lang], exp["filter_out"][lang] = len(rows), len(kept)
        _manifest(out, "filter", f"{lang}-00000", files,
                  {"docs_in": len(rows), "docs_out": len(kept), "removed": {k: len(v) for k, v in removed.items()},
                   "words": {lang: sum(d["sig_n_words"] for d in kept)}}, h, seconds=0.4)
        names = sorted(removed)
        stats = pl.DataFrame({"task_id": f"{lang}-00000", "lang_script": lang,
                              "level": ["total"] + ["reason"] * len(names),
                              "name": [None, *names], "minhash_cluster_size": None, "docs_in": len(rows),
                              "removed": [sum(map(len, removed.values()))] + [len(removed[n]) for n in names]},
                             schema_overrides={"minhash_cluster_size": pl.Int64})
        stats = stats.with_columns((pl.col("removed") / pl.col("docs_in")).alias("removal_rate"))
        buf = io.BytesIO()
        stats.write_parquet(buf)
        storage.publish_bytes(storage.join(out, "_stats", "filter", f"{lang}.parquet"), buf.getvalue())
    exp["words"] = {lang: sum(d["sig_n_words"] for d in rows) for lang, rows in filtered.items()}

    # finalize: same documents; rebalance: rehydration repeats each document min(cluster size, 3) times.
    exp["rebalance_before"], exp["rebalance_after"] = {}, {}
    for lang, rows in filtered.items():
        e = write_table(language_dir(storage.join(out, "finalize"), lang) + "/00000.parquet",
                        table_from_rows(rows, FILTERED_SCHEMA))
        _manifest(out, "finalize", f"{lang}-00000", [{**e, "kind": "documents", "lang_script": lang}],
                  {"docs_in": len(rows), "docs_out": len(rows)}, h, seconds=0.2)
        up = [d for d in rows for _ in range(min(d["minhash_cluster_size"], 3))]
        e = write_table(language_dir(storage.join(out, "rebalance"), lang) + "/00000.parquet",
                        table_from_rows(up, FILTERED_SCHEMA))
        _manifest(out, "rebalance", f"{lang}-00000", [{**e, "kind": "documents", "lang_script": lang}],
                  {"docs_in": len(rows), "docs_out": len(up)}, h, seconds=0.1)
        exp["rebalance_before"][lang], exp["rebalance_after"][lang] = len(rows), len(up)
    return exp


# --------------------------------------------------------------------------------------- tests


