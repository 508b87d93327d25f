"""Snapshot simulator: what today's task model costs for a Common Crawl snapshot of N shards.

Nothing is extracted or deduplicated here. For N shards the simulator samples which languages each
shard holds, then *counts* what every stage of today's pipeline would plan and write: tasks, files,
fan-in (input files per task) and S3 requests; and it *measures* the driver's planners on real
manifests of a small sample of shards, extrapolated linearly to N.

Two models are counted for the same sampled shards: *today's* (one task per (shard, language) file after
extract, :func:`stage_model`, the formulas below; "today" is the layout before work-sized tasks) and the
*work-sized* one of this version (:func:`work_model`: the files grouped into tasks by
``config.tasks``; see its docstring). ``--model`` chooses the tables printed.

Languages per shard
    FineWeb2's documents per language, train + test + ``_removed`` rows (``tools/data/``, see
    ``tools/README.md``), normalised to probabilities ``p_l``. Each shard draws its non-English
    documents from Multinomial(D, p) (``--non-english-documents`` D, default 19,000), seeded and
    drawn in a fixed order, so the same seed and N give the same counts. English is not in FineWeb2
    (it is FineWeb's): every shard also holds ``E = responses - D`` English documents (default
    35,000 - 19,000 = 16,000; both figures are the issue's, measured on Common Crawl shards). A
    language *file* is a (shard, language) pair with ``n >= 1`` documents.

Today's model (first run, nothing cached; F = language files = sum over shards of languages present;
P = ``dedup.partitions`` (16), B = ``dedup.num_buckets`` (14); ``q(n) = P * (1 - (1 - 1/P) ** (B * n))``
is the expected number of hash partitions a file of n documents writes a band file to):

=================  ====================================  ============================================
stage              tasks                                  files written (data files, not manifests)
=================  ====================================  ============================================
extract            N                                      F documents + N * R_x removed (R_x reasons)
dedup_signatures   F (one per extract documents file)     F signature files + sum_f q(n_f) band files
dedup_buckets      sum_l q(T_l) (language x partition)    one edge file per task (<=)
dedup_clusters     languages present                      <= F (one per extract file with a duplicate)
dedup_annotate     F                                      F kept + <= F removed
filter             F (one per kept file)                  F kept + F stats + sum_f min(n_f, R_f) removed
finalize           F                                      F
rebalance          F                                      F
=================  ====================================  ============================================

Fan-in: 1 for the per-file stages (dedup_annotate <= 2: the file and its clusters file); a
``dedup_buckets`` task of language l reads ``sum_{f in l} q(n_f) / P`` band files (English: ~N);
a ``dedup_clusters`` task reads one edge file per partition (<= P). ``<=`` marks upper bounds: the
model assumes every language file has a near-duplicate and keeps at least one document.

S3 requests (fsspec/s3fs, one request per call; upper bounds stay upper bounds):

* PUT: one per data file written + one manifest per task (``publish_bytes`` is one ``pipe_file``).
* Driver planning: ``completed_files(upstream)`` = HEAD + ceil(M/1000) LISTs of the upstream
  ``_manifests/<stage>/`` (M manifests), one GET per manifest, and ``FileSizes(by_listing=True)``: one
  LIST page (1,000 keys) per directory of every upstream file; ``retire_unplanned`` lists the stage's
  own manifests (HEAD + LIST pages; extract lists its WARC inputs instead, same count); the runner
  calls ``read_manifest`` per planned task (a HEAD; first run: nothing there). ``dedup_annotate``
  reads two upstreams (extract, dedup_clusters); ``rebalance`` also opens every input Parquet file
  (HEAD + 2 GETs: footer, ``minhash_cluster_size`` column).
* Workers: per task a HEAD (``execute_task`` reads its manifest) and >= 1 GET per input file.

Driver planning cost, measured: for a few sample sizes (e.g. 16, 64, 256 shards) a temporary output in this
version's layout is generated (:class:`WorkManifestTree`): extract's manifests (one per shard, one documents
file per language present, ~230), then for every later stage its real ``plan()`` is timed (wall and CPU
seconds; peak Python allocation of a second call with ``tracemalloc``), the outputs its tasks would write
are generated (sparse data files: realistic recorded sizes, no disk space) and its manifest index written
by the real code, so the next stage plans from them; the runner's ``read_manifest`` per planned task is
timed too. A least-squares line through the points (seconds and bytes against shards) projects N:
planning is linear in manifests and files, which the points show. Local disk, not S3: the projection is a
lower bound for object storage, where every request above is a round trip. The load average is printed
with the figures (on a shared machine wall time includes waiting for a core; CPU time does not).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_FILE = Path(__file__).resolve().parent / "data" / "fineweb2-language-documents.csv.gz"
ENGLISH = "eng_Latn"
STAGES = ["extract", "dedup_signatures", "dedup_buckets", "dedup_clusters", "dedup_annotate", "filter",
          "finalize", "rebalance"]
LIST_PAGE = 1000  # keys per S3 ListObjectsV2 page
CHUNK_SHARDS = 500  # shards sampled at once (memory: CHUNK_SHARDS x languages int64)


@dataclass(frozen=True)
class ModelParams:
    """The shard and pipeline figures the model depends on (defaults: the issue's and the config's)."""

    responses: int = 35_000  # HTML responses per Common Crawl WARC shard (issue 23)
    non_english_documents: int = 19_000  # non-English documents per shard after extraction (issue 23)
    partitions: int = 16  # dedup.partitions default
    num_buckets: int = 14  # dedup.num_buckets default (bands per signature)
    extract_removed_reasons: int = 3  # removed/extract/<reason>/ files per extract task (assumed)
    filter_removed_reasons: int = 3  # distinct removal reasons per filter task, at most one per document (assumed)
    # GETs to read one language of a multi-language file bigger than documents.WHOLE_FILE_BYTES: its footer,
    # then its row groups (an upper bound: a task's pieces of the same file share the footer GET)
    ranged_gets_per_piece: int = 2

    @property
    def english_documents(self) -> int:
        """English is the rest of a shard (FineWeb2 has no English)."""
        return max(self.responses - self.non_english_documents, 0)


# ------------------------------------------------------------------------------------------------
# language distribution and sampling


def load_distribution(path: Path = DATA_FILE) -> tuple[list[str], np.ndarray]:
    """(languages, probabilities) from the packaged FineWeb2 document counts, sorted by name."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [(r["lang_script"], int(r["documents"])) for r in csv.DictReader(f)]
    rows.sort()
    counts = np.array([c for _, c in rows], dtype=np.float64)
    return [lang for lang, _ in rows], counts / counts.sum()


def sample_shards(n_shards: int, probs: np.ndarray, params: ModelParams, seed: int) -> Iterator[np.ndarray]:
    """Document counts per (shard, language) in chunks of shards: columns are the FineWeb2 languages
    then English. Deterministic for (n_shards, probs, params, seed)."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_shards:
        k = min(CHUNK_SHARDS, n_shards - done)
        non_en = rng.multinomial(params.non_english_documents, probs, size=k)
        en = np.full((k, 1), params.english_documents, dtype=non_en.dtype)
        yield np.hstack([non_en, en])
        done += k


def expected_partitions(n: np.ndarray | float, params: ModelParams) -> np.ndarray:
    """Expected non-empty hash partitions of ``n`` documents' band keys (B keys per document)."""
    p = params.partitions
    return p * (1.0 - (1.0 - 1.0 / p) ** (params.num_buckets * np.asarray(n, dtype=np.float64)))


@dataclass
class ShardStats:
    """Per-language sums over the sampled shards (everything the stage model needs)."""

    shards: int
    files: np.ndarray  # F_l: shards holding language l
    documents: np.ndarray  # T_l
    band_files: np.ndarray  # sum over l's files of q(n_f)
    filter_removed: np.ndarray  # sum over l's files of min(n_f, R_f)
    languages_per_shard: list[int] = field(default_factory=list)
    # per language, the documents of each of its files in shard order (the work-sized grouping needs them)
    file_docs: list[list[np.ndarray]] = field(default_factory=list)


def collect(chunks: Iterator[np.ndarray], params: ModelParams) -> ShardStats:
    """Sum the sampled (shard x language) counts into :class:`ShardStats`."""
    stats: ShardStats | None = None
    for m in chunks:
        present = m > 0
        q = np.where(present, expected_partitions(m, params), 0.0)
        rm = np.minimum(m, params.filter_removed_reasons)
        if stats is None:
            width = m.shape[1]
            stats = ShardStats(0, np.zeros(width, np.int64), np.zeros(width, np.int64), np.zeros(width),
                               np.zeros(width, np.int64))
        stats.shards += m.shape[0]
        stats.files += present.sum(axis=0)
        stats.documents += m.sum(axis=0)
        stats.band_files += q.sum(axis=0)
        stats.filter_removed += rm.sum(axis=0)
        stats.languages_per_shard.extend(present.sum(axis=1).tolist())
        if not stats.file_docs:
            stats.file_docs = [[] for _ in range(m.shape[1])]
        for j in np.flatnonzero(present.any(axis=0)):
            col = m[:, j]
            stats.file_docs[j].append(col[col > 0].astype(np.int32))
    if stats is None:
        raise ValueError("no shards")
    return stats


# ------------------------------------------------------------------------------------------------
# the stage model


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The q-quantile of ``values`` each repeated ``weights`` times (the lower value at a tie)."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if not len(values):
        return 0.0
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w)
    return float(v[int(np.searchsorted(cum, q * cum[-1], side="left"))])


def _pages(n: np.ndarray | float) -> np.ndarray:
    """LIST requests to list ``n`` keys (at least one per listing)."""
    return np.maximum(np.ceil(np.asarray(n, dtype=np.float64) / LIST_PAGE), 1.0)


def _listing(n_manifests: float) -> tuple[float, float]:
    """(HEAD, LIST) of ``storage.list_files`` over ``n_manifests`` keys: exists() then paged find()."""
    return 1.0, float(_pages(n_manifests))


def stage_model(stats: ShardStats, params: ModelParams) -> list[dict[str, Any]]:
    """Tasks, files, fan-in and S3 requests per stage of today's pipeline (first run)."""
    P = params.partitions
    n = stats.shards
    F_l = stats.files.astype(np.float64)
    live = F_l > 0
    F = float(F_l.sum())
    langs = int(live.sum())
    bands = float(stats.band_files.sum())
    bucket_tasks_l = np.where(live, expected_partitions(stats.documents, params), 0.0)  # per language
    bucket_fanin_l = stats.band_files / P  # band files per (language, partition) task
    removed_x = n * params.extract_removed_reasons
    filter_removed = float(stats.filter_removed.sum())

    # Directories of each stage's outputs and the LIST pages FileSizes(by_listing=True) needs for them.
    dir_lists = {
        "extract": float(_pages(F_l[live]).sum()) + params.extract_removed_reasons * float(_pages(n)),
        "dedup_signatures": float(_pages(F_l[live]).sum())
        + float((bucket_tasks_l[live] * _pages(bucket_fanin_l[live])).sum()),
        "dedup_buckets": float(langs),
        "dedup_clusters": float(_pages(F_l[live]).sum()),
        "dedup_annotate": float(_pages(F_l[live]).sum()) + float(_pages(F)),
        "filter": float(_pages(F_l[live]).sum()) + float(_pages(F))
        + params.filter_removed_reasons * float(_pages(filter_removed / max(params.filter_removed_reasons, 1))),
        "finalize": float(_pages(F_l[live]).sum()),
    }
    rows: dict[str, dict[str, Any]] = {
        "extract": {"tasks": n, "files": F + removed_x, "fanin": (1, 1), "upstream": [],
                    "inputs": n},
        "dedup_signatures": {"tasks": F, "files": F + bands, "fanin": (1, 1), "upstream": ["extract"],
                             "inputs": F},
        "dedup_buckets": {"tasks": float(bucket_tasks_l.sum()), "files": float(bucket_tasks_l.sum()),
                          "fanin": (float(bucket_fanin_l.max()),
                                    weighted_quantile(bucket_fanin_l, bucket_tasks_l, 0.99)),
                          "upstream": ["dedup_signatures"], "inputs": bands},
        "dedup_clusters": {"tasks": langs, "files": F,
                           "fanin": (float(bucket_tasks_l.max()),
                                     weighted_quantile(bucket_tasks_l, live.astype(float), 0.99)),
                           "upstream": ["dedup_buckets"], "inputs": float(bucket_tasks_l.sum())},
        "dedup_annotate": {"tasks": F, "files": 2 * F, "fanin": (2, 2), "upstream": ["extract", "dedup_clusters"],
                           "inputs": 2 * F},
        "filter": {"tasks": F, "files": 2 * F + filter_removed, "fanin": (1, 1), "upstream": ["dedup_annotate"],
                   "inputs": F},
        "finalize": {"tasks": F, "files": F, "fanin": (1, 1), "upstream": ["filter"], "inputs": F},
        "rebalance": {"tasks": F, "files": F, "fanin": (1, 1), "upstream": ["finalize"], "inputs": F},
    }
    out = []
    for name in STAGES:
        r = rows[name]
        tasks, files = float(r["tasks"]), float(r["files"])
        head = tasks  # runner: read_manifest per planned task (nothing there on a first run)
        lst = 0.0
        get = 0.0
        # extract lists its WARC inputs (expand_inputs); every other stage's retire_unplanned lists its
        # own manifests (extract selects a shard range: it retires nothing)
        h, pages = _listing(tasks)
        head += h
        lst += pages
        for up in r["upstream"]:
            m = float(rows[up]["tasks"])
            h, pages = _listing(m)
            head += h
            lst += pages + dir_lists[up]
            get += m
        if name == "rebalance":  # the planner reads every input's cluster sizes
            head += tasks
            get += 2 * tasks
        planning = {"get": get, "head": head, "list": lst}
        worker = {"head": tasks, "get": float(r["inputs"]), "put": files + tasks}
        total = planning["get"] + planning["head"] + planning["list"] + sum(worker.values())
        out.append({
            "stage": name, "tasks": round(tasks), "files": round(files), "fanin_max": round(r["fanin"][0]),
            "fanin_p99": round(r["fanin"][1]), "put": round(worker["put"]),
            "planning_get": round(planning["get"]), "planning_head": round(planning["head"]),
            "planning_list": round(planning["list"]), "worker_get": round(worker["get"]),
            "worker_head": round(worker["head"]), "requests": round(total),
        })
    return out


@dataclass(frozen=True)
class WorkTargets:
    """``config.tasks`` of the work-sized model (the defaults)."""

    documents: int = 50_000
    max_inputs: int = 1_000


def work_groups(lang_files: list[np.ndarray], target: int, cap: int) -> dict[str, np.ndarray]:
    """The greedy grouping of :func:`babelsieve.pipeline.core.tasks.plan_work_groups` over files given as
    per-language document counts in (language, path) order, computed a group at a time (searchsorted on
    cumulative sums, not a Python loop per file). Returns per group: files, documents, languages, and
    the (group, language) pieces' documents (what the next stage's files hold)."""
    files, docs, langs, pieces = [], [], [], []
    cf = cd = cl = 0  # the open group's files, documents, languages
    for a in lang_files:
        if not len(a):
            continue
        cum = np.concatenate(([0], np.cumsum(a, dtype=np.int64)))
        i, n = 0, len(a)
        while i < n:
            # files of this language that the open group can still take: it closes on the file that
            # reaches ``target`` documents or ``cap`` files
            by_docs = int(np.searchsorted(cum, cum[i] + (target - cd), side="left"))  # reaching index (1-based)
            j = min(max(by_docs, i + 1), i + (cap - cf), n)
            take_docs = int(cum[j] - cum[i])
            cf, cd, cl = cf + (j - i), cd + take_docs, cl + 1
            pieces.append(take_docs)
            i = j
            if cd >= target or cf >= cap:
                files.append(cf), docs.append(cd), langs.append(cl)
                cf = cd = cl = 0
    if cf:
        files.append(cf), docs.append(cd), langs.append(cl)
    return {"files": np.asarray(files), "documents": np.asarray(docs), "languages": np.asarray(langs),
            "pieces": np.asarray(pieces)}


def _pieces_by_language(lang_files: list[np.ndarray], target: int, cap: int) -> list[np.ndarray]:
    """The (group, language) pieces of :func:`work_groups`, per language: a stage's per-(task, language)
    output files, which the next stage groups again."""
    out: list[np.ndarray] = []
    cf = cd = 0
    for a in lang_files:
        cur: list[int] = []
        if len(a):
            cum = np.concatenate(([0], np.cumsum(a, dtype=np.int64)))
            i, n = 0, len(a)
            while i < n:
                by_docs = int(np.searchsorted(cum, cum[i] + (target - cd), side="left"))
                j = min(max(by_docs, i + 1), i + (cap - cf), n)
                cur.append(int(cum[j] - cum[i]))
                cf, cd = cf + (j - i), cd + int(cum[j] - cum[i])
                i = j
                if cd >= target or cf >= cap:
                    cf = cd = 0
        out.append(np.asarray(cur, np.int64))
    return out


WORK_STAGES = STAGES[:2] + ["dedup_merge", "dedup_merge_2"] + STAGES[2:]  # the work-sized model's stages


def work_model(stats: ShardStats, params: ModelParams, targets: WorkTargets = WorkTargets()) -> list[dict[str, Any]]:
    """Tasks, files, fan-in and S3 requests per stage with tasks sized by work (this branch's planners).

    Per-language stages group their inputs by :func:`work_groups` (sorted by language, then path).
    Upper bounds as in :func:`stage_model`: no document is removed before rebalance, every language
    piece has a near-duplicate and a removed file, up to 3 filter removal reasons per (task, language).
    Extract and dedup_annotate write one file per task (each language in its own row groups) and
    dedup_signatures one signature file per task; a stage reading one language of such a file reads it by
    ranges (``ranged_gets_per_piece``), filter, classify, finalize and rebalance write one file per (task,
    language). S3 requests of the planners: one LIST page per 1,000 upstream manifests and one GET of the
    upstream stage's index (its manifests in one object), one LIST page per 1,000 upstream files
    (``FileSizes`` lists a stage's top directory once), the stage's own manifests listed twice (retire,
    skip check) with its index read; workers: one GET per input and one GET of the task's manifest.
    ``dedup_merge``/``dedup_merge_2`` and the bucket fan-in follow dedup's ``merge_levels`` on a partition's
    ~band files / P band files; their planners also read the band files' (and lower levels') manifests."""
    P, B = params.partitions, params.num_buckets
    n = stats.shards
    D, C = targets.documents, targets.max_inputs
    # columns are FineWeb2's languages sorted by name, then English: the planners' order up to English's place
    lang_files = [np.concatenate(parts) if parts else np.zeros(0, np.int32) for parts in stats.file_docs]
    F = float(stats.files.sum())
    removed_x = n * params.extract_removed_reasons
    R = float(params.ranged_gets_per_piece)

    sig = work_groups(lang_files, D, C)
    ann_pieces = _pieces_by_language(lang_files, D, max(1, C // 2))
    ann = work_groups(lang_files, D, max(1, C // 2))
    flt = work_groups(ann_pieces, D, C)
    flt_pieces = _pieces_by_language(ann_pieces, D, C)
    fin = work_groups(flt_pieces, D, C)
    fin_pieces = _pieces_by_language(flt_pieces, D, C)
    reb = work_groups(fin_pieces, D, C)
    G = float(len(sig["files"]))
    band_files = float(np.minimum(expected_partitions(sig["documents"], params), P).sum())
    docs_l = np.asarray([float(a.sum()) for a in lang_files])
    # clustering: languages grouped by edges, modelled as documents x bands (an upper bound on edges)
    clu = work_groups([np.asarray([d * B], np.int64) for d in docs_l if d > 0], D * B, 1 << 30)
    clusters_files = float(len(ann["files"]) + len(clu["files"]))
    ann_pieces_n = float(sum(len(p) for p in ann_pieces))
    flt_pieces_n = float(sum(len(p) for p in flt_pieces))
    fin_pieces_n = float(sum(len(p) for p in fin_pieces))
    flt_removed = float(sum(np.minimum(p, params.filter_removed_reasons).sum() for p in flt_pieces))
    # merge levels: every partition holds ~band_files / P band files (a signature task of thousands of documents
    # writes to every partition); the bucket task reads the top of the partition's merge tree
    from babelsieve.pipeline.stages.dedup import merge_levels

    merge, bucket_fanin = merge_levels(round(band_files / P), C)

    rows: dict[str, dict[str, Any]] = {
        "extract": {"tasks": n, "files": n + removed_x, "fanin": (1, 1), "upstream": None, "inputs": n},
        "dedup_signatures": {"tasks": G, "files": G + band_files,
                             "fanin": (float(sig["files"].max()), float(np.percentile(sig["files"], 99))),
                             "upstream": "extract", "inputs": R * F},
        "dedup_merge": {"tasks": float(merge[0][0] * P), "files": float(merge[0][0] * P),
                        "fanin": (float(merge[0][2]),) * 2, "upstream": "dedup_signatures",
                        "inputs": float(merge[0][1] * P)},
        "dedup_merge_2": {"tasks": float(merge[1][0] * P), "files": float(merge[1][0] * P),
                          "fanin": (float(merge[1][2]),) * 2, "upstream": "dedup_merge",
                          "inputs": float(merge[1][1] * P), "also": ["dedup_signatures"]},
        "dedup_buckets": {"tasks": float(P), "files": float(P), "fanin": (float(bucket_fanin),) * 2,
                          "upstream": "dedup_signatures", "inputs": float(bucket_fanin * P),
                          "also": ["dedup_merge", "dedup_merge_2"]},
        # one clusters file per (clustering task, annotate task) with rows: at most the annotate tasks plus one
        # more per clustering task (its language range may start inside an annotate task's files)
        "dedup_clusters": {"tasks": float(len(clu["files"])), "files": clusters_files, "fanin": (float(P), float(P)),
                           "upstream": "dedup_buckets", "inputs": float(len(clu["files"]) * P)},
        # an annotate task reads its extract files and the clusters files of its range (<= 2 here: upper bound)
        "dedup_annotate": {"tasks": float(len(ann["files"])), "files": float(len(ann["files"])) + ann_pieces_n,
                           "fanin": (float(ann["files"].max()) + 2, float(np.percentile(ann["files"], 99)) + 2),
                           "upstream": "extract", "inputs": R * F + clusters_files},
        "filter": {"tasks": float(len(flt["files"])), "files": 2 * flt_pieces_n + flt_removed,
                   "fanin": (float(flt["files"].max()), float(np.percentile(flt["files"], 99))),
                   "upstream": "dedup_annotate", "inputs": R * ann_pieces_n},
        "finalize": {"tasks": float(len(fin["files"])), "files": fin_pieces_n,
                     "fanin": (float(fin["files"].max()), float(np.percentile(fin["files"], 99))),
                     "upstream": "filter", "inputs": flt_pieces_n},
        "rebalance": {"tasks": float(len(reb["files"])), "files": fin_pieces_n,
                      "fanin": (float(reb["files"].max()), float(np.percentile(reb["files"], 99))),
                      "upstream": "finalize", "inputs": fin_pieces_n},
    }
    out = []
    for name in WORK_STAGES:
        r = rows[name]
        tasks, files = float(r["tasks"]), float(r["files"])
        # own manifests: listed by retire_unplanned and by the skip check (one page each when empty),
        # index read twice (absent on a first run: one GET each); the index is written once (a PUT)
        lst = 2 * float(_pages(tasks)) if name != "extract" else 1.0
        get = 2.0 if name != "extract" else 0.0
        head = 0.0
        up = r["upstream"]
        if up:
            m = float(rows[up]["tasks"])
            lst += float(_pages(m)) + float(_pages(rows[up]["files"]))
            get += 1.0  # the upstream index
            if name == "dedup_annotate":  # also the clusters' manifests and files
                lst += float(_pages(rows["dedup_clusters"]["tasks"])) + float(_pages(rows["dedup_clusters"]["files"]))
                get += 1.0
            for also in r.get("also", []):  # the merge levels' planners also read the band files' manifests
                lst += float(_pages(rows[also]["tasks"])) + float(_pages(rows[also]["files"]))
                get += 1.0
        if name == "rebalance":  # the planner reads every input's cluster sizes (2 GETs: footer, column)
            get += 2 * float(r["inputs"])
        planning = {"get": get, "head": head, "list": lst}
        # the index is written once by a stage with tasks (a stage that plans none writes nothing)
        worker = {"head": 0.0, "get": float(r["inputs"]) + tasks, "put": files + tasks + (1 if tasks else 0)}
        total = planning["get"] + planning["head"] + planning["list"] + sum(worker.values())
        out.append({
            "stage": name, "tasks": round(tasks), "files": round(files), "fanin_max": round(r["fanin"][0]),
            "fanin_p99": round(r["fanin"][1]), "put": round(worker["put"]),
            "planning_get": round(planning["get"]), "planning_head": round(planning["head"]),
            "planning_list": round(planning["list"]), "worker_get": round(worker["get"]),
            "worker_head": round(worker["head"]), "requests": round(total),
        })
    return out


# ------------------------------------------------------------------------------------------------
# driver planning, measured on real manifests


def _tiny_parquet() -> bytes:
    """A one-row documents file (the rebalance planner reads ``minhash_cluster_size`` of each input)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": ["x"], "minhash_cluster_size": pa.array([1], pa.int64())}), buf)
    return buf.getvalue()


class ManifestTree:
    """Writes manifests (in the stored shape) and data files below a temporary output root."""

    def __init__(self, root: str, config: Any, params: ModelParams):
        from babelsieve.pipeline.core.tasks import manifest_to_storage

        self.root = root
        self.config = config
        self.params = params
        self.to_storage = manifest_to_storage
        self.config_hash = config.content_hash()
        self.files_written = 0
        self._dirs: set[str] = set()

    def _touch(self, rel: str, data: bytes = b"", rows: int | None = None, **extra: Any) -> dict[str, Any]:
        path = os.path.join(self.root, rel)
        d = os.path.dirname(path)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            self._dirs.add(d)
        with open(path, "wb") as f:
            f.write(data)
        self.files_written += 1
        entry = {"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), **extra}
        if rows is not None:
            entry["rows"] = rows
        return entry

    def manifest(self, stage: str, task_id: str, inputs: list[str], files: list[dict[str, Any]],
                 params: dict[str, Any] | None = None) -> None:
        """One manifest in the stored shape (relative paths, version 2), serialised as publish_json does."""
        m = {"stage": stage, "task_id": task_id, "inputs": inputs, "params": params or {}, "input_digest": "",
             "identity": "", "config_hash": self.config_hash, "files": files, "stats": {}, "seconds": 0.0}
        self._touch(os.path.join("_manifests", stage, f"{task_id}.json"),
                    json.dumps(self.to_storage(self.root, m), sort_keys=True, indent=1).encode())
        self.files_written -= 1  # count data files only


class WorkManifestTree(ManifestTree):
    """The manifests and data files this version's stages leave for some shards: extract writes one
    manifest per shard with one file per language present (~230), and every later stage the files its
    ``run`` writes for the tasks its real ``plan()`` planned (tasks sized by work; see :func:`write_stage`).

    Data files are sparse (a recorded size of 1,000 bytes per document without the disk space), so the
    manifests hold realistic ``bytes`` and distinct ``sha256`` values while the planners' size checks
    (one listing per directory) pass; the finalize files are real one-row Parquet files (rebalance's
    planner reads them)."""

    bytes_per_row = 1000

    def __init__(self, root: str, config: Any, params: ModelParams):
        super().__init__(root, config, params)
        from babelsieve.pipeline.core.layout import RunLayout

        self.layout = RunLayout(root)
        self.rows: dict[tuple[str, str], int] = {}  # (documents file, language) -> rows
        self._parquet = _tiny_parquet()

    def _sparse(self, url: str, rows: int, **extra: Any) -> dict[str, Any]:
        """A data file of ``rows`` documents at ``url`` (absolute, below the root), written sparse."""
        d = os.path.dirname(url)
        if d not in self._dirs:
            os.makedirs(d, exist_ok=True)
            self._dirs.add(d)
        size = max(rows, 1) * self.bytes_per_row
        with open(url, "wb") as f:
            f.truncate(size)
        self.files_written += 1
        entry = {"path": url, "bytes": size, "sha256": hashlib.sha256(url.encode()).hexdigest(), "rows": rows,
                 **extra}
        if extra.get("kind") == "documents" and extra.get("lang_script"):
            self.rows[(url, extra["lang_script"])] = rows
        return entry

    def _language_file(self, url: str, parts: list[tuple[str, int]]) -> dict[str, Any]:
        """One file of several languages (extract's, dedup_annotate's): sorted by language, each in its own
        row groups of 10,000 rows, listed in the entry's ``language_row_groups``."""
        entry = self._sparse(url, sum(n for _, n in parts), kind="documents")
        groups, rg = [], 0
        for lang, n in sorted(parts):
            count = max(1, -(-n // 10_000))
            groups.append([lang, rg, count, n, n * self.bytes_per_row])
            self.rows[(url, lang)] = n
            rg += count
        entry["language_row_groups"] = groups
        return entry

    def build_extract(self, counts: np.ndarray, langs: list[str]) -> None:
        """Extract's manifests: one per shard, one documents file holding every language present (a row-group
        run each) + removed files."""
        p = self.params
        for s, row in enumerate(counts):
            tid = f"{s:05d}"
            present = [(langs[j], int(row[j])) for j in np.flatnonzero(row)]
            files = [self._language_file(f"{self.layout.stage_dir('extract')}/{tid}.parquet", present)] if present \
                else []
            files += [self._sparse(self.layout.removed_dir("extract", f"reason{r}") + f"/{tid}.parquet", 1,
                                   kind="removed", reason=f"reason{r}") for r in range(p.extract_removed_reasons)]
            self.manifest("extract", tid, [f"warc/{tid}.warc.gz"], files)

    def _by_language(self, task: Any) -> list[tuple[str, list[str], int]]:
        """(language, documents files, rows) of a work-sized task, in input order (``lang_scripts`` names the
        leading inputs; dedup_annotate's clusters files follow them)."""
        out: list[tuple[str, list[str], int]] = []
        langs = task.params["lang_scripts"]
        for lang, url in zip(langs, task.inputs[:len(langs)], strict=True):
            if not out or out[-1][0] != lang:
                out.append((lang, [], 0))
            out[-1][1].append(url)
            out[-1] = (lang, out[-1][1], out[-1][2] + self.rows.get((url, lang), 0))
        return out

    def write_stage(self, name: str, tasks: list[Any]) -> bool:
        """Write what ``run`` of stage ``name`` writes for ``tasks`` (the shapes of the stages' manifest
        entries, upper bounds as in the model: every language has edges and duplicates). False for a stage
        this tree does not know (its later stages are then not timed)."""
        p, lay = self.params, self.layout
        for t in tasks:
            tid, files = t.task_id, []
            if name == "dedup_signatures":
                by_lang = self._by_language(t)
                langs = [lang for lang, _, _ in by_lang]
                total = sum(n for _, _, n in by_lang)
                files.append(self._sparse(lay.work_dir("dedup", "signatures", f"{tid}.npz"), total, kind="signatures",
                                          language_signatures={lang: n for lang, _, n in by_lang},
                                          sources=sorted({u for _, docs, _ in by_lang for u in docs})))
                for part in range(min(p.partitions, round(float(expected_partitions(total, p))) or 1)):
                    files.append(self._sparse(lay.work_dir("dedup", "bands", f"part={part:05d}", f"{tid}.npy"),
                                              total, kind="bands", partition=part, languages=langs))
            elif name in ("dedup_merge", "dedup_merge_2"):  # one merged band file per task
                q = t.params
                node_path = lay.work_dir("dedup", "bands_merged", f"part={q['partition']:05d}",
                                         f"L{q['level']}-{q['index']:06d}.npy")
                files.append(self._sparse(node_path, q["leaves"], kind="bands", partition=q["partition"],
                                          languages=q["languages"], level=q["level"], leaves=q["leaves"],
                                          leaves_digest=q["leaves_digest"]))
            elif name == "dedup_buckets":
                langs = t.params.get("languages", [])
                files.append(self._sparse(lay.work_dir("dedup", "edges", f"{t.params['partition']:05d}.npy"),
                                          len(langs), kind="edges", partition=t.params["partition"],
                                          language_rows={lang: [i, i + 1] for i, lang in enumerate(langs)}))
            elif name == "dedup_clusters":
                for group, first, end in t.params.get("annotate_groups", []):
                    files.append(self._sparse(lay.work_dir("dedup", "clusters", f"{tid}-{group:06d}.npy"),
                                              end - first, kind="clusters", file_range=[first, end - 1]))
            elif name == "dedup_annotate":  # one documents file for the task's languages, removed per language
                by_lang = self._by_language(t)
                files.append(self._language_file(f"{lay.stage_dir('dedup')}/{tid}.parquet",
                                                 [(lang, n) for lang, _, n in by_lang]))
                for lang, _, _ in by_lang:
                    rm = lay.removed_dir("dedup", "minhash_duplicate") + f"/{tid}-{lang}.parquet"
                    files.append(self._sparse(rm, 1, kind="removed", reason="minhash_duplicate", lang_script=lang))
            elif name in ("filter", "finalize"):
                out_dir = lay.stage_dir(name)
                for lang, _, n in self._by_language(t):
                    url = f"{out_dir}/lang_script={lang}/{tid}.parquet"
                    if name == "finalize":  # real Parquet: the rebalance planner reads each file
                        e = self._touch(os.path.relpath(url, self.root), self._parquet, kind="documents",
                                        lang_script=lang, rows=n)
                        self.rows[(url, lang)] = n
                        files.append(e)
                        continue
                    files.append(self._sparse(url, n, kind="documents", lang_script=lang))
                    files.append(self._sparse(lay.stats_dir("filter") + f"/{tid}-{lang}.parquet", 1, kind="stats",
                                              lang_script=lang))
                    files += [self._sparse(lay.removed_dir("filter", f"rule{r}") + f"/{tid}-{lang}.parquet", 1,
                                           kind="removed", lang_script=lang, reason=f"rule{r}")
                              for r in range(min(n, p.filter_removed_reasons))]
            else:
                return False
            self.manifest(name, tid, list(t.inputs), files, t.params)
        return True


def _measure(fn: Any, trace_memory: bool = True) -> tuple[float, int, Any]:
    """(wall seconds of an untraced call, peak traced bytes of a second call, result of the first); the
    first call's CPU seconds of this process are in ``_measure.cpu_seconds`` (on a machine shared with
    other jobs, wall time includes waiting for a core; CPU time is what one core of the driver spends).

    ``trace_memory=False`` skips the traced call (peak 0): tracemalloc has crashed CPython 3.11 here
    (a segmentation fault in a native thread, about one run in three) when the planners' Arrow/polars
    threads allocate while it traces, so the test suite times without it."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    seconds = time.perf_counter() - t0
    _measure.cpu_seconds = time.process_time() - c0  # type: ignore[attr-defined]
    if not trace_memory:
        return seconds, 0, result
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seconds, peak, result


def measure_planning(sample_sizes: list[int], langs: list[str], probs: np.ndarray, params: ModelParams,
                     seed: int, workdir: str | None = None, trace_memory: bool = True) -> dict[str, Any]:
    """Time every stage's real ``plan()`` (and the runner's ``read_manifest`` per task) on generated
    manifests of each sample size, in this version's layout (:class:`WorkManifestTree`): extract's
    manifests are written, then each later stage is planned by its real planner (timed, peak traced),
    its outputs written as its tasks would (so the next stage plans from them), its index written by the
    real code (``load_manifests(write_index=True)``, as the runner does after a stage) and its
    ``read_manifest`` per task timed. Returns {"points": [...], "not_timed": {stage: why}, load averages}."""
    from babelsieve.pipeline.core.config import PipelineConfig
    from babelsieve.pipeline.core.runner import expand_stages
    from babelsieve.pipeline.core.tasks import load_manifests, read_manifest
    from babelsieve.pipeline.stages import stage_class

    points: list[dict[str, Any]] = []
    not_timed: dict[str, str] = {
        "extract": "planned from the input listing (one LIST of the WARC paths), not from manifests",
    }
    load_before = os.getloadavg()
    for n in sample_sizes:
        counts = np.vstack(list(sample_shards(n, probs, params, seed)))
        with tempfile.TemporaryDirectory(prefix="babelsieve-sim-", dir=workdir) as tmp:
            config = PipelineConfig(output=tmp, stages=["extract", "dedup", "filter", "finalize", "rebalance"],
                                    dedup={"partitions": params.partitions, "num_buckets": params.num_buckets})
            tree = WorkManifestTree(tmp, config, params)
            t0 = time.perf_counter()
            tree.build_extract(counts, langs + [ENGLISH])
            load_manifests(config, "extract", write_index=True)
            point: dict[str, Any] = {"shards": n, "language_files": int((counts > 0).sum()),
                                     "files_generated": 0, "generate_seconds": 0.0, "stages": {},
                                     "load_average": list(os.getloadavg())}
            gen = time.perf_counter() - t0
            blocked = ""
            for name in expand_stages(config):
                if name == "extract":
                    continue
                if blocked:
                    not_timed[name] = blocked
                    continue
                try:
                    stage = stage_class(name)(config)
                    seconds, peak, tasks = _measure(stage.plan, trace_memory)
                    cpu = _measure.cpu_seconds  # type: ignore[attr-defined]
                    t1 = time.perf_counter()
                    if name != "rebalance" and not tree.write_stage(name, tasks):
                        blocked = f"its upstream {name} has no generated outputs (unknown to the simulator)"
                    load_manifests(config, name, write_index=True)
                    gen += time.perf_counter() - t1

                    def check(stage_name: str = name, planned: list = tasks, cfg: PipelineConfig = config) -> None:
                        for t in planned:
                            read_manifest(cfg, stage_name, t.task_id)

                    # no rebalance manifests are generated: its check would only time HEADs of absent files
                    check_seconds = round(_measure(check, False)[0], 3) if name != "rebalance" else None
                    point["stages"][name] = {"tasks": len(tasks), "plan_seconds": round(seconds, 3),
                                             "plan_cpu_seconds": round(cpu, 3), "plan_peak_bytes": peak,
                                             "check_seconds": check_seconds}
                except Exception as e:  # noqa: BLE001 - reported per stage: the others still get timed
                    not_timed[name] = f"{type(e).__name__}: {e}"
                    blocked = f"its upstream {name} was not planned"
            point["files_generated"] = tree.files_written
            point["generate_seconds"] = round(gen, 2)
            points.append(point)
    return {"points": points, "not_timed": not_timed,
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through the points (one point: through the origin)."""
    if len(xs) == 1:
        return (ys[0] / xs[0] if xs[0] else 0.0), 0.0
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope), float(intercept)


def extrapolate(points: list[dict[str, Any]], n_shards: int) -> dict[str, dict[str, float]]:
    """Per stage: planning seconds, check seconds and peak bytes projected linearly to ``n_shards``
    (a quantity not measured for a stage is left out)."""
    out: dict[str, dict[str, float]] = {}
    stages = sorted({s for p in points for s in p["stages"]})
    for name in stages:
        pts = [p for p in points if name in p["stages"]]
        xs = [float(p["shards"]) for p in pts]
        proj = {}
        for key in ("plan_seconds", "check_seconds", "plan_peak_bytes"):
            if any(p["stages"][name][key] is None for p in pts):
                continue  # not measured for this stage
            slope, intercept = linear_fit(xs, [float(p["stages"][name][key]) for p in pts])
            proj[key] = max(slope * n_shards + intercept, 0.0)
        out[name] = proj
    return out


# ------------------------------------------------------------------------------------------------
# output


def simulate(n_shards: int, langs: list[str], probs: np.ndarray, params: ModelParams, seed: int,
             targets: WorkTargets = WorkTargets()) -> dict[str, Any]:
    """The stage tables for ``n_shards`` (counts only; no files): today's model (``stages``) and the
    work-sized one (``work_stages``)."""
    stats = collect(sample_shards(n_shards, probs, params, seed), params)
    lps = np.asarray(stats.languages_per_shard)
    return {
        "shards": n_shards,
        "languages_present": int((stats.files > 0).sum()),
        "languages_per_shard_mean": round(float(lps.mean()), 1),
        "languages_per_shard_p99": int(np.percentile(lps, 99)),
        "language_files": int(stats.files.sum()),
        "stages": stage_model(stats, params),
        "work_stages": work_model(stats, params, targets),
    }


def _human(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def render(result: dict[str, Any], projection: dict[str, dict[str, float]] | None, key: str = "stages") -> str:
    """A plain-text (Markdown) table of one simulation, with projected planning cost if measured.
    ``key``: ``stages`` (today's model) or ``work_stages`` (tasks sized by work)."""
    title = "today's model" if key == "stages" else "tasks sized by work"
    head = (f"### {result['shards']:,} shards, {title}\n\n{result['languages_per_shard_mean']} languages per shard "
            f"on average (p99 {result['languages_per_shard_p99']}), {result['languages_present']:,} languages "
            f"present, {result['language_files']:,} (shard, language) files.\n\n")
    cols = ["stage", "tasks", "files", "fan-in max", "fan-in p99", "PUT", "plan GET", "plan HEAD", "plan LIST",
            "worker GET", "worker HEAD", "S3 requests", "plan s", "check s", "plan peak"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    total = 0
    for r in result[key]:
        total += r["requests"]
        pr = (projection or {}).get(r["stage"])
        check = f"{pr['check_seconds']:,.0f}" if pr and "check_seconds" in pr else "-"
        timing = ([f"{pr['plan_seconds']:,.0f}", check,
                   _human(pr["plan_peak_bytes"]) + "B"] if pr else ["-", "-", "-"])
        lines.append("| " + " | ".join([r["stage"], f"{r['tasks']:,}", f"{r['files']:,}", f"{r['fanin_max']:,}",
                                        f"{r['fanin_p99']:,}", _human(r["put"]), _human(r["planning_get"]),
                                        _human(r["planning_head"]), _human(r["planning_list"]),
                                        _human(r["worker_get"]), _human(r["worker_head"]), _human(r["requests"])]
                                       + timing) + " |")
    lines.append(f"| **all stages** | {sum(r['tasks'] for r in result[key]):,} | "
                 f"{sum(r['files'] for r in result[key]):,} | | | | | | | | | **{_human(total)}** | | | |")
    return head + "\n".join(lines) + "\n"


def render_points(measured: dict[str, Any]) -> str:
    """The measured planning points (what the projection is fitted to)."""
    lines = ["Measured driver planning on generated manifests in this version's layout (local disk; plan seconds, "
             "peak traced MB; projection: a least-squares line in the number of shards):", ""]
    for p in measured["points"]:
        per = ", ".join(f"{k} {v['plan_seconds']:.2f}s/{v['plan_peak_bytes'] / 1e6:.1f}MB"
                        + (f" (+check {v['check_seconds']:.2f}s)" if v["check_seconds"] else "")
                        for k, v in p["stages"].items())
        load = "/".join(f"{x:.2f}" for x in p.get("load_average", []))
        lines.append(f"- {p['shards']} shards ({p['language_files']:,} language files, {p['files_generated']:,} "
                     f"data files generated in {p['generate_seconds']} s; load average {load}): {per}")
    for k, why in measured["not_timed"].items():
        lines.append(f"- not timed: {k}: {why}")
    if "load_average_after" in measured:
        before, after = ("/".join(f"{x:.2f}" for x in measured[k])
                         for k in ("load_average_before", "load_average_after"))
        lines.append(f"- load average (1/5/15 min) before {before}, after {after}; "
                     f"max RSS of the process {measured['max_rss_bytes'] / 1e6:,.0f} MB")
    return "\n".join(lines) + "\n"


def render_planning(measured: dict[str, Any], n_shards: int) -> str:
    """Per stage: the measured points (wall and CPU seconds, peak traced MB) and the least-squares
    projection to ``n_shards`` (``a * N + b`` in the number of shards N, coefficients shown), as Markdown."""
    pts = measured["points"]
    stages = [s for s in STAGES if any(s in p["stages"] for p in pts)]
    cols = ["stage"] + [f"{p['shards']:,} shards" for p in pts] + [f"{n_shards:,} shards (projected)",
                                                                    "fit: seconds", "fit: CPU s", "fit: peak MB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|"]
    for name in stages:
        cells = []
        for p in pts:
            v = p["stages"].get(name)
            cells.append(f"{v['plan_seconds']:.2f} s ({v.get('plan_cpu_seconds', 0):.2f} CPU) / "
                         f"{v['plan_peak_bytes'] / 1e6:.1f} MB" if v else "-")
        own = [p for p in pts if name in p["stages"]]
        xs = [float(p["shards"]) for p in own]
        a_s, b_s = linear_fit(xs, [p["stages"][name]["plan_seconds"] for p in own])
        a_c, b_c = linear_fit(xs, [p["stages"][name].get("plan_cpu_seconds", 0.0) for p in own])
        a_m, b_m = linear_fit(xs, [p["stages"][name]["plan_peak_bytes"] / 1e6 for p in own])
        proj = (f"{max(a_s * n_shards + b_s, 0):,.0f} s ({max(a_c * n_shards + b_c, 0):,.0f} CPU) / "
                f"{max(a_m * n_shards + b_m, 0) / 1e3:,.2f} GB")
        cells += [proj, f"{a_s:.4g} * N + {b_s:.3g}", f"{a_c:.4g} * N + {b_c:.3g}", f"{a_m:.4g} * N + {b_m:.3g}"]
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` explains the model in short; the module docstring in full)."""
    p = argparse.ArgumentParser(
        prog="snapshot_simulator",
        description=("Project what today's babelsieve task model plans, writes and requests from S3 for a "
                     "Common Crawl snapshot of N WARC shards, with FineWeb2's language distribution. Counts are "
                     "computed, not written; the driver's planners are timed on real manifests of a few sample "
                     "shards and extrapolated linearly. See the module docstring for every formula."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--shards", type=int, nargs="+", default=[1_000, 10_000, 90_000],
                   help="snapshot sizes to simulate (number of WARC shards)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-shard language sampling")
    p.add_argument("--responses", type=int, default=ModelParams.responses,
                   help="HTML responses per shard; English documents = responses - non-English documents")
    p.add_argument("--non-english-documents", type=int, default=ModelParams.non_english_documents,
                   help="non-English documents per shard after extraction, drawn from FineWeb2's distribution")
    p.add_argument("--partitions", type=int, default=ModelParams.partitions, help="dedup.partitions")
    p.add_argument("--num-buckets", type=int, default=ModelParams.num_buckets, help="dedup.num_buckets (bands)")
    p.add_argument("--extract-removed-reasons", type=int, default=ModelParams.extract_removed_reasons,
                   help="removed-document files per extract task (one per removal reason; assumed)")
    p.add_argument("--filter-removed-reasons", type=int, default=ModelParams.filter_removed_reasons,
                   help="distinct removal reasons per filter task, at most one per document (assumed)")
    p.add_argument("--sample-shards", type=int, nargs="*", default=[4, 8, 16],
                   help="shard counts whose manifests are generated to time the planners (none: skip timing)")
    p.add_argument("--workdir", default=None, help="where the temporary manifests go (default: the system's)")
    p.add_argument("--distribution", type=Path, default=DATA_FILE,
                   help="CSV(.gz) with lang_script,documents columns")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--model", choices=["today", "work", "both"], default="both",
                   help="which task model's tables to print: one task per (shard, language) file (before work-"
                        "sized tasks), tasks sized by work (the planners of this version; timed), or both")
    p.add_argument("--target-documents", type=int, default=WorkTargets.documents, help="tasks.target_documents")
    p.add_argument("--max-input-files", type=int, default=WorkTargets.max_inputs, help="tasks.max_input_files")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator; print Markdown tables or JSON."""
    args = build_parser().parse_args(argv)
    params = ModelParams(args.responses, args.non_english_documents, args.partitions, args.num_buckets,
                         args.extract_removed_reasons, args.filter_removed_reasons)
    langs, probs = load_distribution(args.distribution)
    measured = (measure_planning(sorted(args.sample_shards), langs, probs, params, args.seed, args.workdir)
                if args.sample_shards else None)
    results = []
    for n in args.shards:
        res = simulate(n, langs, probs, params, args.seed, WorkTargets(args.target_documents, args.max_input_files))
        res["planning_projection"] = extrapolate(measured["points"], n) if measured else None
        results.append(res)
    if args.json:
        json.dump({"params": asdict(params) | {"english_documents": params.english_documents}, "seed": args.seed,
                   "measured_planning": measured, "results": results}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    for res in results:
        if args.model in ("today", "both"):
            print(render(res, res["planning_projection"] if args.model == "today" else None))
        if args.model in ("work", "both"):
            print(render(res, res["planning_projection"], key="work_stages"))
    if measured:
        print(render_points(measured))
        print(render_planning(measured, max(args.shards)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
