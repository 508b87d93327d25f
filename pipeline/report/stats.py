"""Run statistics, merged from what the tasks already recorded where the work happened.

Sources, cheapest first:

* task manifests ``<output>/_manifests/<stage>/<task_id>.json`` (stats, files with rows/bytes/kind/
  lang_script, seconds) -- always read;
* the structured task logs ``<output>/_logs/<stage>-<ms>.jsonl`` (failed attempts live only there);
* statistics files written by stages, ``<output>/_stats/<stage>/**.parquet`` (e.g. the filter
  stage's per-language per-filter counts) -- read as they are, whatever their columns;
* a few columns of the Parquet outputs (``lang_script``, ``language_score``,
  ``minhash_cluster_size``, a word-count column if a stage wrote one, the UTF-8 length of
  ``text`` for the last documents stage) -- only with ``scan_parquet=True``, and at most
  ``max_scan_files`` files per stage and kind (evenly spaced; the ``scan`` table says how many).

Nothing here knows the stages in advance: any stage with manifests is picked up, ordered by the
pipeline's stage groups (extract, dedup_*, filter, finalize, rebalance), unknown ones after.
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl
import pyarrow.compute as pc
import pyarrow.parquet as pq

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import language_pieces
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.task_stats import TaskStats
from babelsieve.pipeline.core.tasks import manifest_from_storage
from babelsieve.pipeline.stages import STAGE_ORDER

# Columns that may hold a per-document word count (the filter stage's signals, or a stage's own).
WORD_COLUMNS = ("n_words", "words", "word_count", "sig_n_words", "sig_words", "sig_word_count")
_WORD_RE = re.compile(r"^sig_.*n_words$")

SCORE_BINS = 20  # language-score histogram: 20 bins of width 0.05 over [0, 1]

_SCHEMAS: dict[str, dict[str, Any]] = {
    "tasks": {"stage": pl.Utf8, "task_id": pl.Utf8, "seconds": pl.Float64, "docs_in": pl.Int64,
              "docs_out": pl.Int64, "n_inputs": pl.Int64, "n_files": pl.Int64, "bytes_out": pl.Int64,
              "rows_out": pl.Int64, "config_hash": pl.Utf8, "inputs": pl.List(pl.Utf8)},
    "files": {"stage": pl.Utf8, "task_id": pl.Utf8, "path": pl.Utf8, "kind": pl.Utf8, "lang_script": pl.Utf8,
              "reason": pl.Utf8, "rows": pl.Int64, "bytes": pl.Int64},
    "stages": {"stage": pl.Utf8, "order": pl.Int64, "tasks": pl.Int64, "seconds": pl.Float64,
               "max_task_seconds": pl.Float64, "docs_in": pl.Int64, "docs_out": pl.Int64,
               "bytes_out": pl.Int64, "documents_bytes": pl.Int64, "files": pl.Int64, "removed": pl.Int64,
               "skipped": pl.Int64, "docs_per_core_second": pl.Float64},
    "stage_reasons": {"stage": pl.Utf8, "what": pl.Utf8, "reason": pl.Utf8, "count": pl.Int64},
    "languages": {"stage": pl.Utf8, "lang_script": pl.Utf8, "docs_in": pl.Int64, "docs_out": pl.Int64,
                  "removed": pl.Int64, "bytes_out": pl.Int64, "words": pl.Int64, "utf8_bytes": pl.Int64},
    "removal": {"stage": pl.Utf8, "lang_script": pl.Utf8, "filter": pl.Utf8, "reason": pl.Utf8, "removed": pl.Int64,
                "docs_in": pl.Int64, "rate": pl.Float64},
    "language_score": {"stage": pl.Utf8, "set": pl.Utf8, "lang_script": pl.Utf8, "bin_lo": pl.Float64,
                       "bin_hi": pl.Float64, "documents": pl.Int64},
    "cluster_sizes": {"stage": pl.Utf8, "lang_script": pl.Utf8, "cluster_size": pl.Int64, "documents": pl.Int64},
    "rehydration": {"stage": pl.Utf8, "lang_script": pl.Utf8, "docs_before": pl.Int64, "docs_after": pl.Int64,
                    "bytes_before": pl.Int64, "bytes_after": pl.Int64, "expansion": pl.Float64},
    "logs": {"time": pl.Float64, "stage": pl.Utf8, "task_id": pl.Utf8, "status": pl.Utf8, "seconds": pl.Float64,
             "docs_in": pl.Int64, "docs_out": pl.Int64, "error": pl.Utf8, "log_file": pl.Utf8},
    "scan": {"stage": pl.Utf8, "kind": pl.Utf8, "files_total": pl.Int64, "files_scanned": pl.Int64},
}


def empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=_SCHEMAS[name])


def _frame(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return empty(name)
    return pl.DataFrame(rows, schema=_SCHEMAS[name], strict=False)


def stage_order(stages: list[str]) -> list[str]:
    """Task stages in pipeline order (the registry's order, then unknown names sorted)."""
    rank: dict[str, float] = {s.name: i for i, s in enumerate(STAGE_ORDER)}
    for s in STAGE_ORDER:  # a group name (older outputs) sorts just before its first task stage
        rank.setdefault(s.group, rank[s.name] - 0.5)
    return sorted(set(stages), key=lambda s: (rank.get(s, len(rank)), s))


# --------------------------------------------------------------------------------------- reading


def read_many(urls: list[str], storage_options: dict[str, Any] | None = None) -> dict[str, bytes]:
    """Fetch many small objects in one call (s3fs fetches them concurrently)."""
    if not urls:
        return {}
    fs, _ = storage.filesystem(urls[0], storage_options)
    paths = [storage.filesystem(u, storage_options)[1] for u in urls]
    out: dict[str, bytes] = {}
    got = fs.cat(paths, on_error="omit")
    if isinstance(got, bytes):  # a single path
        got = {paths[0]: got}
    for u, p in zip(urls, paths, strict=True):
        if p in got:
            out[u] = got[p]
    return out


def read_run_info(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The run marker ``_run.json`` ({config_hash, config}) or None."""
    url = RunLayout(output).run_marker
    if not storage.exists(url, storage_options):
        return None
    return storage.read_json(url, storage_options)


def read_manifests(output: str, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All task manifests below ``<output>/_manifests`` (unreadable ones are skipped)."""
    urls = storage.list_files(RunLayout(output).manifests_dir(), ".json", storage_options)
    out = []
    for url, blob in read_many(urls, storage_options).items():
        try:
            m = json.loads(blob)
        except ValueError:
            continue
        if isinstance(m, dict) and m.get("stage") and m.get("task_id") is not None:
            m = manifest_from_storage(output, m)  # paths relative to the output root -> URLs
            m.setdefault("_url", url)
            out.append(m)
    return sorted(out, key=lambda m: (m["stage"], str(m["task_id"])))


def read_logs(output: str, storage_options: dict[str, Any] | None = None) -> pl.DataFrame:
    """Every JSON line of ``<output>/_logs/*.jsonl`` (one line per task attempt), oldest first."""
    urls = storage.list_files(RunLayout(output).logs_dir(), ".jsonl", storage_options)
    rows = []
    for url, blob in read_many(urls, storage_options).items():
        for line in blob.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if not isinstance(d, dict):
                continue
            rows.append({
                "time": d.get("time"), "stage": d.get("stage"), "task_id": d.get("task_id"),
                "status": d.get("status"), "seconds": d.get("seconds"), "docs_in": d.get("docs_in"),
                "docs_out": d.get("docs_out"), "error": d.get("error"), "log_file": url.rsplit("/", 1)[-1],
            })
    df = _frame("logs", rows)
    return df.sort(["time", "stage", "task_id"], nulls_last=True)


def _reason_from_path(path: str, stage: str) -> str | None:
    m = re.search(r"/removed/" + re.escape(stage) + r"/([^/]+)/", path)
    return m.group(1) if m else None


def _lang_from_path(path: str) -> str | None:
    m = re.search(r"lang_script=([^/]+)", path)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------- Parquet scan


def _evenly(items: list[Any], n: int | None) -> list[Any]:
    if n is None or len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _scan_file(url: str, storage_options: dict[str, Any] | None, want_text: bool) -> dict[str, Any] | None:
    """The few columns the report needs from one Parquet file (footer + those column chunks only)."""
    fs, path = storage.filesystem(url, storage_options)
    try:
        # Small blocks: only the footer and the wanted column chunks are fetched from object storage.
        with fs.open(path, "rb", block_size=1 << 20) as f:
            pf = pq.ParquetFile(f)
            names = set(pf.schema_arrow.names)
            word_col = next((c for c in WORD_COLUMNS if c in names), None) or next(
                (c for c in sorted(names) if _WORD_RE.match(c)), None)
            wanted = ("lang_script", "language_score", "minhash_cluster_size", "removal_reason")
            cols = [c for c in wanted if c in names]
            if word_col:
                cols.append(word_col)
            if want_text and "text" in names:
                cols.append("text")
            table = pf.read(columns=cols)
    except Exception:  # noqa: BLE001 - an unreadable file is counted, not fatal
        return None
    out: dict[str, Any] = {"rows": table.num_rows}
    if "text" in cols:
        out["utf8_bytes"] = pc.binary_length(pc.cast(table.column("text"), "binary")).fill_null(0)
        table = table.drop(["text"])
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    if word_col:
        df = df.rename({word_col: "_words"})
    if "utf8_bytes" in out:
        df = df.with_columns(pl.Series("_utf8", out["utf8_bytes"].to_pylist(), dtype=pl.Int64))
    out["df"] = df
    return out


def _scan(files: pl.DataFrame, storage_options: dict[str, Any] | None, max_scan_files: int | None,
          text_stage: str | None) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Scan document files of every stage, and the removed files of extract (for the score histogram)."""
    frames = []
    scan_rows = []
    groups = files.filter(pl.col("kind").is_in(["documents", "removed"])).partition_by(
        ["stage", "kind"], as_dict=True, maintain_order=True)
    for (stage, kind), part in groups.items():
        paths = sorted(set(part["path"].to_list()))  # a multi-language file has a row per language
        reasons = dict(zip(part["path"].to_list(), part["reason"].to_list(), strict=True))
        picked = _evenly(paths, max_scan_files)
        scanned = 0
        for p in picked:
            got = _scan_file(p, storage_options, want_text=(kind == "documents" and stage == text_stage))
            if got is None:
                continue
            scanned += 1
            df = got["df"]
            if "lang_script" not in df.columns:
                df = df.with_columns(pl.lit(_lang_from_path(p) or "und").alias("lang_script"))
            df = df.with_columns(pl.lit(stage).alias("_stage"), pl.lit(kind).alias("_kind"),
                                 pl.lit(reasons.get(p) or _reason_from_path(p, stage), pl.Utf8).alias("_reason"))
            frames.append(df)
        scan_rows.append({"stage": stage, "kind": kind, "files_total": len(paths), "files_scanned": scanned})
    if not frames:
        return pl.DataFrame(), scan_rows
    return pl.concat(frames, how="diagonal_relaxed"), scan_rows


# --------------------------------------------------------------------------------------- merge


def collect_run_stats(output: str, storage_options: dict[str, Any] | None = None, *, scan_parquet: bool = True,
                      max_scan_files: int | None = 2000) -> dict[str, pl.DataFrame]:
    """Statistics of a run (finished, interrupted or running), local or on object storage.

    Returns a dict of polars DataFrames (every key always present, possibly empty):

    ``tasks``        one row per completed task (manifest): seconds, docs in/out, bytes and rows out
    ``files``        one row per published file: stage, kind, lang_script, reason, rows, bytes
    ``stages``       per task stage: tasks, core-seconds, docs in/out, bytes out, removed, docs/core-second
    ``stage_reasons`` per stage: counts of removed/skipped/problem reasons from the manifests' stats
    ``languages``    per stage and language: documents in/out, removed, bytes out, words and UTF-8
                     bytes (when a word column exists / for the last documents stage; else null)
    ``removal``      per stage, language, filter and reason (``filter:rule``): removed documents and
                     rate (removed / documents into that stage for that language)
    ``language_score`` histogram of ``language_score`` (20 bins) per stage, set (kept/removed), language
    ``cluster_sizes`` documents per ``minhash_cluster_size`` value, per stage and language
    ``rehydration``  per language: documents before and after the rebalance stage, and the expansion
    ``logs``         the structured task log lines (one per attempt, including failures)
    ``scan``         which Parquet files were scanned, per stage and kind
    ``stats/<stage>`` each stage's own statistics Parquet files (``_stats/<stage>/``), concatenated
    """
    manifests = read_manifests(output, storage_options)
    task_rows, file_rows, reason_rows, stage_words = _manifest_rows(manifests)
    tasks = _frame("tasks", task_rows)
    files = _frame("files", file_rows)
    stage_reasons = _frame("stage_reasons", reason_rows)
    order = stage_order(tasks["stage"].unique().to_list())
    rank = {s: i for i, s in enumerate(order)}
    doc_stages = [s for s in order if files.filter((pl.col("stage") == s) & (pl.col("kind") == "documents")).height]

    # -------- scan Parquet (optional)
    scanned = pl.DataFrame()
    scan_rows: list[dict[str, Any]] = []
    if scan_parquet and files.height:
        scanned, scan_rows = _scan(files, storage_options, max_scan_files,
                                   text_stage=doc_stages[-1] if doc_stages else None)

    docs = (files.filter(pl.col("kind") == "documents")
            .group_by(["stage", "lang_script"]).agg(pl.col("rows").sum().alias("docs_out"),
                                                    pl.col("bytes").sum().alias("bytes_out")))
    removal = _removal(files, scanned)
    languages = _language_table(files, docs, removal, doc_stages, stage_words, scanned, rank)
    language_score, cluster_sizes = _histograms(scanned, rank)
    result = {
        "tasks": tasks.with_columns(pl.col("stage").replace_strict(rank, default=len(rank)).alias("_o"))
        .sort(["_o", "task_id"]).drop("_o"),
        "files": files,
        "stages": _stage_table(order, rank, tasks, files, stage_reasons),
        "stage_reasons": stage_reasons,
        "languages": languages,
        "removal": _removal_rates(removal, languages, rank),
        "language_score": language_score,
        "cluster_sizes": cluster_sizes,
        "rehydration": _rehydration_table(docs, doc_stages),
        "logs": read_logs(output, storage_options),
        "scan": _frame("scan", scan_rows),
    }
    result.update(read_stage_stats(output, storage_options))
    result.update(quality_tables(result.get("stats/classify")))
    return result


def _file_pieces(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A file's rows for the ``files`` table: one per language of a multi-language file, whose bytes add
    up to the file's (the first language carries the footer), else the entry itself."""
    pieces = language_pieces(entry)
    if len(pieces) > 1 or pieces[0] is not entry:
        rest = int(entry.get("bytes") or 0) - sum(int(p.get("bytes") or 0) for p in pieces)
        pieces[0] = {**pieces[0], "bytes": int(pieces[0].get("bytes") or 0) + rest}
    return pieces


def _manifest_rows(manifests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                               list[dict[str, Any]], dict[tuple[str, str], int]]:
    """Rows of the ``tasks``, ``files`` and ``stage_reasons`` tables, and words per (stage, language)."""
    task_rows: list[dict[str, Any]] = []
    file_rows: list[dict[str, Any]] = []
    reason_rows: list[dict[str, Any]] = []
    stage_words: dict[tuple[str, str], int] = {}
    for m in manifests:
        st = TaskStats.from_dict(m.get("stats"))
        files = m.get("files") or []
        stage = m["stage"]
        for f in (piece for entry in files for piece in _file_pieces(entry)):  # a row per language of a file
            path = f.get("path", "")
            kind = f.get("kind")
            file_rows.append({
                "stage": stage, "task_id": str(m["task_id"]), "path": path, "kind": kind,
                "lang_script": f.get("lang_script") or (_lang_from_path(path) if kind == "documents" else None),
                "reason": f.get("reason") or (_reason_from_path(path, stage) if kind == "removed" else None),
                "rows": f.get("rows"), "bytes": f.get("bytes"),
            })
        task_rows.append({
            "stage": stage, "task_id": str(m["task_id"]), "seconds": float(m.get("seconds") or 0.0),
            "docs_in": st.docs_in, "docs_out": st.docs_out,
            "n_inputs": len(m.get("inputs") or []),
            "n_files": len(files), "bytes_out": sum(int(f.get("bytes") or 0) for f in files),
            "rows_out": sum(int(f.get("rows") or 0) for f in files if f.get("kind") == "documents"),
            "config_hash": m.get("config_hash"), "inputs": [str(x) for x in (m.get("inputs") or [])],
        })
        for what, counts in (("removed", st.removed), ("skipped", st.skipped), ("problems", st.problem_counts)):
            for reason, n in counts.items():
                reason_rows.append({"stage": stage, "what": what, "reason": reason, "count": n})
        for lang, n in st.words.items():
            stage_words[(stage, lang)] = stage_words.get((stage, lang), 0) + n

    return task_rows, file_rows, reason_rows, stage_words


def _language_table(files: pl.DataFrame, docs: pl.DataFrame, removal: pl.DataFrame, doc_stages: list[str],
                    stage_words: dict[tuple[str, str], int], scanned: pl.DataFrame,
                    rank: dict[str, int]) -> pl.DataFrame:
    """Per stage and language: documents in/out, removed, bytes out, words and UTF-8 bytes."""
    removed_by_lang = removal.group_by(["stage", "lang_script"]).agg(pl.col("removed").sum())
    lang_rows = []
    prev_out: dict[str, int] | None = None
    for s in doc_stages:
        cur = docs.filter(pl.col("stage") == s)
        out_by_lang = dict(zip(cur["lang_script"].to_list(), cur["docs_out"].to_list(), strict=True))
        bytes_by_lang = dict(zip(cur["lang_script"].to_list(), cur["bytes_out"].to_list(), strict=True))
        rem = removed_by_lang.filter(pl.col("stage") == s)
        rem_by_lang = dict(zip(rem["lang_script"].to_list(), rem["removed"].to_list(), strict=True))
        # Languages this stage has written something for (a partly done stage lists only those).
        touched = set(files.filter(pl.col("stage") == s)["lang_script"].drop_nulls().to_list())
        langs = sorted(set(out_by_lang) | set(rem_by_lang) | (touched & set(prev_out or {})))
        for lang in langs:
            d_out = int(out_by_lang.get(lang) or 0)
            d_rem = int(rem_by_lang.get(lang) or 0)
            d_in = int(prev_out.get(lang) or 0) if prev_out is not None else d_out + d_rem
            if lang not in rem_by_lang and prev_out is not None:  # removed without files kept aside (dedup)
                d_rem = max(0, d_in - d_out)
            lang_rows.append({"stage": s, "lang_script": lang, "docs_in": d_in, "docs_out": d_out, "removed": d_rem,
                              "bytes_out": int(bytes_by_lang.get(lang) or 0),
                              "words": stage_words.get((s, lang))})
        prev_out = out_by_lang
    languages = _frame("languages", lang_rows)
    if scanned.height:
        kept = scanned.filter(pl.col("_kind") == "documents")
        extra = []
        if "_words" in kept.columns:
            extra.append(pl.col("_words").cast(pl.Int64, strict=False).sum().alias("_w"))
        if "_utf8" in kept.columns:
            extra.append(pl.col("_utf8").sum().alias("_u"))
        if extra:
            agg = kept.group_by(["_stage", "lang_script"]).agg(extra).rename({"_stage": "stage"})
            languages = languages.join(agg, on=["stage", "lang_script"], how="left")
            if "_w" in languages.columns:
                languages = languages.with_columns(
                    pl.when(pl.col("_w") > 0).then(pl.col("_w")).otherwise(pl.col("words")).alias("words"))
            if "_u" in languages.columns:
                languages = languages.with_columns(pl.col("_u").alias("utf8_bytes"))
            languages = languages.select(list(_SCHEMAS["languages"]))
    languages = languages.with_columns(pl.col("stage").replace_strict(rank, default=len(rank)).alias("_o")).sort(
        ["_o", "docs_out", "lang_script"], descending=[False, True, False]).drop("_o")
    return languages


def _removal_rates(removal: pl.DataFrame, languages: pl.DataFrame, rank: dict[str, int]) -> pl.DataFrame:
    """Removed documents per reason with their rate: removed / documents into the stage for that language."""
    if removal.height:
        removal = (removal.drop("docs_in").join(languages.select(["stage", "lang_script", "docs_in"]),
                                                on=["stage", "lang_script"], how="left")
                   .with_columns((pl.col("removed") / pl.col("docs_in")).alias("rate"))
                   .select(list(_SCHEMAS["removal"])))
        removal = _by_stage(removal, rank, ["lang_script", "reason"])
    return removal


def _stage_table(order: list[str], rank: dict[str, int], tasks: pl.DataFrame, files: pl.DataFrame,
                 stage_reasons: pl.DataFrame) -> pl.DataFrame:
    """Per task stage: tasks, core-seconds, documents in/out, bytes, removed and skipped, throughput."""
    stage_rows = []
    for s in order:
        t = tasks.filter(pl.col("stage") == s)
        f = files.filter(pl.col("stage") == s)
        secs = float(t["seconds"].sum())
        d_in = int(t["docs_in"].fill_null(0).sum())
        reasons = stage_reasons.filter(pl.col("stage") == s)
        stage_rows.append({
            "stage": s, "order": rank[s], "tasks": t.height, "seconds": secs,
            "max_task_seconds": float(t["seconds"].max() or 0.0),
            "docs_in": d_in if t["docs_in"].null_count() < t.height else None,
            "docs_out": int(t["docs_out"].fill_null(0).sum()) if t["docs_out"].null_count() < t.height else None,
            "bytes_out": int(f["bytes"].fill_null(0).sum()),
            "documents_bytes": int(f.filter(pl.col("kind") == "documents")["bytes"].fill_null(0).sum()),
            "files": f["path"].n_unique(),  # a multi-language file has a row per language
            "removed": int(reasons.filter(pl.col("what") == "removed")["count"].sum()),
            "skipped": int(reasons.filter(pl.col("what") == "skipped")["count"].sum()),
            "docs_per_core_second": (d_in / secs) if secs > 0 and d_in else None,
        })
    return _frame("stages", stage_rows)


def _histograms(scanned: pl.DataFrame, rank: dict[str, int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``language_score`` (kept and removed, 20 bins) and ``cluster_sizes`` from the scanned Parquet rows."""
    language_score, cluster_sizes = empty("language_score"), empty("cluster_sizes")
    if scanned.height and "language_score" in scanned.columns:
        sc = scanned.filter(pl.col("language_score").is_not_null() & (pl.col("lang_script") != "und"))
        sc = sc.filter((pl.col("_kind") == "documents") | (pl.col("_reason") == "language_score"))
        if sc.height:
            b = (pl.col("language_score").clip(0.0, 1.0) * SCORE_BINS).floor().clip(0, SCORE_BINS - 1)
            language_score = (sc.with_columns(b.alias("_b"),
                                              pl.when(pl.col("_kind") == "documents").then(pl.lit("kept"))
                                              .otherwise(pl.lit("removed")).alias("set"))
                              .group_by(["_stage", "set", "lang_script", "_b"]).agg(pl.len().alias("documents"))
                              .with_columns((pl.col("_b") / SCORE_BINS).alias("bin_lo"),
                                            ((pl.col("_b") + 1) / SCORE_BINS).alias("bin_hi"))
                              .rename({"_stage": "stage"}).select(list(_SCHEMAS["language_score"]))
                              .cast({"documents": pl.Int64}))
            language_score = _by_stage(language_score, rank, ["set", "lang_script", "bin_lo"])
    if scanned.height and "minhash_cluster_size" in scanned.columns:
        cs = scanned.filter((pl.col("_kind") == "documents") & pl.col("minhash_cluster_size").is_not_null())
        if cs.height:
            cluster_sizes = (cs.group_by(["_stage", "lang_script", "minhash_cluster_size"])
                             .agg(pl.len().alias("documents"))
                             .rename({"_stage": "stage", "minhash_cluster_size": "cluster_size"})
                             .select(list(_SCHEMAS["cluster_sizes"]))
                             .cast({"cluster_size": pl.Int64, "documents": pl.Int64}))
            cluster_sizes = _by_stage(cluster_sizes, rank, ["lang_script", "cluster_size"])
    return language_score, cluster_sizes


def _rehydration_table(docs: pl.DataFrame, doc_stages: list[str]) -> pl.DataFrame:
    """Documents and bytes per language before and after the rebalance stage, and the expansion."""
    reh_rows = []
    if "rebalance" in doc_stages and doc_stages.index("rebalance") > 0:
        before_stage = doc_stages[doc_stages.index("rebalance") - 1]
        b = docs.filter(pl.col("stage") == before_stage)
        a = docs.filter(pl.col("stage") == "rebalance")
        bd = {r["lang_script"]: r for r in b.iter_rows(named=True)}
        ad = {r["lang_script"]: r for r in a.iter_rows(named=True)}
        for lang in sorted(set(bd) | set(ad)):
            db = int((bd.get(lang) or {}).get("docs_out") or 0)
            da = int((ad.get(lang) or {}).get("docs_out") or 0)
            reh_rows.append({"stage": before_stage, "lang_script": lang, "docs_before": db, "docs_after": da,
                             "bytes_before": int((bd.get(lang) or {}).get("bytes_out") or 0),
                             "bytes_after": int((ad.get(lang) or {}).get("bytes_out") or 0),
                             "expansion": (da / db) if db else None})
    return _frame("rehydration", reh_rows)


def quality_tables(classify_stats: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    """From the classify stage's ``_stats/classify`` rows: ``quality_scores`` (score histogram per classifier and
    language: documents and kept per 0.05-wide bin) and ``quality_buckets`` (documents, kept and kept share
    per bucket). Empty dict when the run has no classify statistics."""
    if classify_stats is None or not classify_stats.height or "what" not in classify_stats.columns:
        return {}
    keys = ["classifier", "lang_script", "bin", "lo", "hi"]
    agg = [pl.col("documents").sum(), pl.col("kept").sum()]
    scores = (classify_stats.filter(pl.col("what") == "score").group_by(keys).agg(agg).sort(keys))
    buckets = (classify_stats.filter(pl.col("what") == "bucket").group_by(keys).agg(agg).sort(keys)
               .with_columns((pl.col("kept") / pl.col("documents")).alias("kept_share"))
               .rename({"bin": "bucket"}))
    return {"quality_scores": scores, "quality_buckets": buckets}


def _by_stage(df: pl.DataFrame, rank: dict[str, int], then: list[str]) -> pl.DataFrame:
    """Sort by pipeline order of ``stage``, then by ``then``."""
    return (df.with_columns(pl.col("stage").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_o"))
            .sort(["_o", *then]).drop("_o"))


def _removal(files: pl.DataFrame, scanned: pl.DataFrame) -> pl.DataFrame:
    """Removed documents per stage, language and reason.

    Manifest entries that name their language are counted from their ``rows``; otherwise the
    language comes from the removed file's ``lang_script`` column (scanned), or ``und``.
    """
    rem = files.filter(pl.col("kind") == "removed")
    if not rem.height:
        return empty("removal")
    with_lang = rem.filter(pl.col("lang_script").is_not_null())
    rows = [with_lang.group_by(["stage", "lang_script", "reason"]).agg(pl.col("rows").sum().alias("removed"))]
    without = rem.filter(pl.col("lang_script").is_null())
    if without.height:
        if scanned.height and "_kind" in scanned.columns:
            sc = scanned.filter(pl.col("_kind") == "removed")
            counted = sc.group_by(["_stage", "lang_script", "_reason"]).agg(pl.len().alias("removed")).rename(
                {"_stage": "stage", "_reason": "reason"})
            # Only keep what belongs to manifest entries without a language (avoid double counting).
            keys = without.select(["stage", "reason"]).unique()
            rows.append(counted.join(keys, on=["stage", "reason"], how="semi"))
        else:
            rows.append(without.group_by(["stage", "reason"]).agg(pl.col("rows").sum().alias("removed"))
                        .with_columns(pl.lit("und").alias("lang_script")))
    out = pl.concat([r.select(["stage", "lang_script", "reason", "removed"]).cast({"removed": pl.Int64})
                     for r in rows], how="vertical_relaxed")
    out = out.group_by(["stage", "lang_script", "reason"]).agg(pl.col("removed").sum())
    # "gopher_rep:dup_line_frac" -> filter "gopher_rep", reason kept whole
    return out.with_columns(pl.col("reason").str.split(":").list.first().alias("filter"),
                            pl.lit(None, pl.Int64).alias("docs_in"), pl.lit(None, pl.Float64).alias("rate")).select(
        list(_SCHEMAS["removal"]))


def read_stage_stats(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, pl.DataFrame]:
    """``_stats/<stage>/**.parquet`` per stage, concatenated (columns as the stage wrote them)."""
    base = RunLayout(output).stats_dir()
    out: dict[str, pl.DataFrame] = {}
    urls = storage.list_files(base, ".parquet", storage_options)
    by_stage: dict[str, list[pl.DataFrame]] = {}
    prefix = base.rstrip("/") + "/"
    folder = base.rsplit("/", 1)[-1]  # listings may drop the URL's protocol: match on the folder's name
    for url in urls:
        rel = url[len(prefix):] if url.startswith(prefix) else url.split(f"/{folder}/", 1)[-1]
        stage = rel.split("/", 1)[0]
        try:
            df = pl.read_parquet(storage.read_bytes(url, storage_options))
        except Exception:  # noqa: BLE001 - one unreadable statistics file does not stop the report
            continue
        by_stage.setdefault(stage, []).append(df.with_columns(pl.lit(rel).alias("_file")))
    for stage, frames in by_stage.items():
        out[f"stats/{stage}"] = pl.concat(frames, how="diagonal_relaxed")
    return out


def resolve_storage_options(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's own ``storage_options`` (from ``_run.json``) under the caller's (which win)."""
    opts = dict(storage_options or {})
    try:
        run = read_run_info(output, opts)
    except Exception:  # noqa: BLE001 - unreachable or unreadable: the caller's options are all we have
        return opts
    from babelsieve.pipeline.core.config import without_redacted

    # _run.json holds no credentials (redacted when written): those come from the caller or the environment.
    saved = without_redacted(((run or {}).get("config") or {}).get("storage_options") or {})
    return {**saved, **opts}
