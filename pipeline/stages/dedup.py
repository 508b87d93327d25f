"""Global MinHash deduplication per language as ordinary task stages, with tasks sized by work.

``dedup_signatures`` (extract ``documents`` files grouped into tasks by documents and bytes,
:func:`~babelsieve.pipeline.core.tasks.work_sized_tasks`; plus one task per stored signature file of an
earlier run listed in ``dedup.previous_signatures``)
    signatures of every document with >= n words -> ``dedup_work/signatures/<task>.npz`` (one per task,
    an array per language; kind ``signatures``, reusable by later runs) and, per band, a 64-bit
    band key; (language hash, key, doc id) triples of all the task's languages are written partitioned
    by ``key % partitions`` -> ``dedup_work/bands/part=PPPPP/<task>.npy`` (kind ``bands``): one file
    per (task, partition), not per (task, language, partition).
``dedup_merge``, ``dedup_merge_2`` (no task unless a partition has more than ``tasks.max_input_files``
band files)
    bound the fan-in of ``dedup_buckets``: a partition's band files (sorted by path) are cut into chunks of
    ``max_input_files``, each concatenated into one file ``dedup_work/bands_merged/part=PPPPP/L1-<i>.npy``
    (kind ``bands``, recording the digest of the band files below it); level 2 does the same to level 1's
    files if there are still too many (:func:`merge_tree`).
``dedup_buckets`` (one task per partition)
    reads the partition's band files, or the top of its merge tree, and sorts the partition's (language,
    key, id) triples; every run of equal (language, key) is a band bucket (documents of different
    languages never share one); each member is linked to the smallest id of its bucket (a star: n-1
    edges, not n^2). Buckets holding only documents of earlier runs are skipped. Unique edges, sorted
    by (language hash, u, v) -> ``dedup_work/edges/PPPPP.npy`` (kind ``edges``; the entry records each
    language's row range).
``dedup_clusters`` (languages grouped into tasks by their edge counts)
    connected components over the group's edges, streamed one partition (edge file) at a time
    (see :func:`connected_components`). Edges never join two languages, so one task can cluster
    several. Writes, per annotate task (a range of extract files, planned as ``dedup_annotate`` plans
    it) with duplicates, the rows that are in a cluster: (file index, row, cluster id, cluster size) ->
    ``dedup_work/clusters/<task>-<annotate task>.npy``; so clusters files follow tasks, not extract files.
``dedup_annotate`` (extract ``documents`` files grouped by work, as for signatures)
    keeps the document whose id is the cluster id (the smallest id of the cluster; documents of
    earlier runs have smaller ids, so they win and new near-duplicates of them are removed), sets
    ``minhash_cluster_size`` (1 for singletons), writes kept documents to
    ``dedup/<task>.parquet`` (one file per task, each language in its own row groups, listed in the
    manifest entry's ``language_row_groups``) and the others to
    ``removed/dedup/minhash_duplicate/<task>-<lang>.parquet`` with ``removal_reason`` and
    ``minhash_cluster_id``.

Document ids are int64: ``gen << 56 | file_index << 24 | row`` where ``file_index`` is the position
of the extract piece (one language of one file) in the list of all extract ``documents`` pieces sorted
by (language, path) -- 32 bits: a 90,000-shard snapshot has ~21 million pieces, more than 24 bits hold --
``row`` its row in the piece (< 2^24: a piece is one language of one shard or task) and ``gen`` is
``k`` for the k-th ``previous_signatures`` directory and ``len(previous_signatures)`` for this run.
Stored signatures keep ``gen = 0`` (they are re-based when reused).

Memory of clustering: 16 bytes per document that has at least one near-duplicate (its int64 id in a
sorted array, an int32 parent and an int32 cluster size), nothing for singletons, plus one
partition's edges and the temporaries of merging its ids into the sorted array (~17 bytes per
clustered document at the peak). Per-document outputs are built one extract file at a time.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import xxhash

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import (
    DOCUMENT_SCHEMA,
    REMOVED_EXTRA,
    InputPiece,
    PieceReader,
    write_language_parts,
    write_table,
)
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import (
    Stage,
    Task,
    TaskOutput,
    completed_files,
    entry_language,
    files_digest,
    piece_params,
    plan_work_groups,
    task_pieces,
    work_sized_tasks,
)
from babelsieve.pipeline.stages import documents_input

GEN_SHIFT = 56
FILE_SHIFT = 24
LOCAL_MASK = (1 << GEN_SHIFT) - 1
MAX_FILES = 1 << (GEN_SHIFT - FILE_SHIFT)
REMOVED_SCHEMA = DOCUMENT_SCHEMA.append(REMOVED_EXTRA).append(pa.field("minhash_cluster_id", pa.int64()))
BAND_DTYPE = np.dtype([("lang", "<u8"), ("key", "<u8"), ("id", "<i8")])
EDGE_DTYPE = np.dtype([("u", "<i8"), ("v", "<i8")])
LANG_EDGE_DTYPE = np.dtype([("lang", "<u8"), ("u", "<i8"), ("v", "<i8")])
CLUSTER_DTYPE = np.dtype([("file", "<i8"), ("row", "<i8"), ("cluster", "<i8"), ("size", "<i8")])
BATCH_DOCS = 2000


# ------------------------------------------------------------------------------------------------
# small helpers


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays by name as an uncompressed ``.npz`` (what ``np.load`` reads) with fixed zip timestamps, so
    equal arrays give equal bytes (``np.savez`` stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), npy_bytes(arrays[name]))
    return buf.getvalue()


def load_npz(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    data = storage.read_bytes(url, storage_options)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {name: z[name] for name in sorted(z.files)}
    except (ValueError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"unreadable dedup file {url}: {e}") from e


def load_npy(url: str, storage_options: dict[str, Any] | None = None) -> np.ndarray:
    data = storage.read_bytes(url, storage_options)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"unreadable dedup file {url}: {e}") from e


def sig_dtype(num_perm: int) -> np.dtype:
    return np.dtype([("id", "<i8"), ("sig", "<u8", (num_perm,))])


def doc_ids(gen: int, file_index: int, rows: np.ndarray) -> np.ndarray:
    if file_index >= MAX_FILES:
        raise ValueError(f"too many extract pieces for 32-bit file indexes ({file_index})")
    if len(rows) and int(rows.max()) >= 1 << FILE_SHIFT:
        raise ValueError(f"an extract piece with more than {1 << FILE_SHIFT} rows (row {int(rows.max())})")
    return (np.int64(gen) << GEN_SHIFT) | (np.int64(file_index) << FILE_SHIFT) | rows.astype(np.int64)


def _lang_from_path(url: str) -> str:
    for part in url.split("/"):
        if part.startswith("lang_script="):
            return part.split("=", 1)[1]
    raise ValueError(f"no lang_script=... directory in {url}")


def extract_documents(config) -> list[dict[str, Any]]:
    """The document pieces dedup reads (extract's, or a stage placed before dedup: one entry per
    language of each file), sorted by (language, path) -- the order of the work-sized planner; this
    order defines file indexes."""
    files = completed_files(config, documents_input(config, "dedup_signatures"), kind="documents")
    return sorted(files, key=lambda f: (entry_language(f), f["path"]))


def annotate_groups(config, docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The extract pieces of each ``dedup_annotate`` task (``docs`` in file index order):
    work-sized, with room in the fan-in cap for one clusters file per extract file. ``dedup_clusters``
    writes one file per annotate task it has rows for, so it plans the same groups."""
    tc = config.tasks
    return plan_work_groups(docs, tc.target_documents, tc.target_bytes, max(1, tc.max_input_files // 2))


def _file_task_id(file_index: int) -> str:
    return f"{file_index:06d}"


def language_hash(lang: str) -> int:
    """A language's 64-bit tag in band and edge files (xxh64 of its ``lang_script`` label)."""
    return xxhash.xxh64_intdigest(lang.encode())


# ------------------------------------------------------------------------------------------------
# stage 1: signatures


@lru_cache(maxsize=8)
def _cached_minhasher(lang: str, n: int, bands: int, rows: int, seed: int, shingle_hash: str):
    """One MinHasher per language and parameters per worker process: the tokenizer is loaded once
    and its chunk vocabulary is reused by the next task (signatures do not depend on it)."""
    from babelsieve.dedup.minhash import MinHasher

    return MinHasher(lang, n, bands, rows, seed, shingle_hash)


class DedupSignaturesStage(Stage):
    name = "dedup_signatures"

    def plan(self) -> list[Task]:
        cfg = self.config.dedup
        gen = len(cfg.previous_signatures)
        if gen >= 64:
            raise ValueError("at most 63 previous_signatures directories")
        # the work-sized planner packs the pieces in the order of extract_documents, (language, path): a
        # task's file indexes are the next run of positions (no index of ~21 million pieces in memory)
        tasks, pos = [], 0
        for t in work_sized_tasks(self.name, extract_documents(self.config), self.config, params={"gen": gen}):
            tasks.append(replace(t, params={**t.params, "first_file_index": pos}))
            pos += len(t.inputs)
        for k, d in enumerate(cfg.previous_signatures):
            # one .npz per signature task (an array per language); .npy per (task, language) of earlier versions
            sig_files = sorted(storage.list_files(d, ".npz", self.storage_options)
                               + storage.list_files(d, ".npy", self.storage_options))
            if not sig_files:
                raise ValueError(f"dedup.previous_signatures: no signature files (*.npz, *.npy) below {d}")
            for j, url in enumerate(sig_files):
                params = {"gen": k} if url.endswith(".npz") else {"gen": k, "lang_script": _lang_from_path(url)}
                tasks.append(Task(self.name, f"prev{k:02d}-{j:06d}", (url,), params))
        return tasks

    def _minhasher(self, lang: str):
        c = self.config.dedup
        return _cached_minhasher(lang, c.n_grams, c.num_buckets, c.hashes_per_bucket, c.seed, c.shingle_hash)

    def run(self, task: Task) -> TaskOutput:
        c = self.config.dedup
        num_perm = c.num_buckets * c.hashes_per_bucket
        gen = task.params["gen"]
        files: list[dict[str, Any]] = []
        parts: list[tuple[str, np.ndarray, np.ndarray]] = []  # (language, ids with gen, signatures)
        n_docs = 0
        if task.task_id.startswith("prev"):
            url = task.inputs[0]
            stored = (load_npz(url, self.storage_options) if url.endswith(".npz")
                      else {task.params["lang_script"]: load_npy(url, self.storage_options)})
            for lang, arr in stored.items():
                if arr.dtype != sig_dtype(num_perm):
                    raise ValueError(
                        f"{url}: stored signatures have dtype {arr.dtype}, this config needs "
                        f"{num_perm} hashes ({c.num_buckets}x{c.hashes_per_bucket})"
                    )
                parts.append((lang, (arr["id"] & LOCAL_MASK) | (np.int64(gen) << GEN_SHIFT), arr["sig"]))
                n_docs += len(arr)
        else:
            by_lang: dict[str, list[tuple[InputPiece, int]]] = defaultdict(list)
            pieces = task_pieces(task)
            first = task.params["first_file_index"]
            for lang, piece, fidx in zip(task.params["lang_scripts"], pieces, range(first, first + len(pieces)),
                                         strict=True):
                by_lang[lang].append((piece, fidx))
            reader = PieceReader(pieces, self.storage_options, columns=["text"])
            stored_sigs: dict[str, np.ndarray] = {}
            for lang in sorted(by_lang):
                ids_l, sigs_l = [], []
                for piece, fidx in by_lang[lang]:
                    n, rows, sigs = self._signatures(lang, reader.read(piece), num_perm)
                    n_docs += n
                    ids_l.append(doc_ids(0, fidx, rows))
                    sigs_l.append(sigs)
                arr = np.empty(sum(len(x) for x in ids_l), dtype=sig_dtype(num_perm))
                arr["id"] = np.concatenate(ids_l)
                arr["sig"] = np.concatenate(sigs_l)
                stored_sigs[lang] = arr
                parts.append((lang, arr["id"] | (np.int64(gen) << GEN_SHIFT), arr["sig"]))
            # one file for the task's languages (an array each), kept for dedup.previous_signatures of later runs
            url = self.layout.work_dir("dedup", "signatures", f"{task.task_id}.npz")
            entry = storage.publish_bytes(url, npz_bytes(stored_sigs), self.storage_options)
            files.append({**entry, "kind": "signatures", "rows": int(sum(len(a) for a in stored_sigs.values())),
                          "language_signatures": {lang: len(a) for lang, a in stored_sigs.items()},
                          "sources": sorted({p.path for p in pieces})})
        files += self._write_bands(task, parts)
        return TaskOutput(files=files, stats={"documents": n_docs, "signatures": int(sum(len(p[1]) for p in parts)),
                                              "languages": sorted({p[0] for p in parts})})

    def _signatures(self, lang: str, table: pa.Table, num_perm: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(documents, rows with a signature, signatures) of one extract piece (its ``text`` column)."""
        col = table.column("text")
        n_docs = len(col)
        mh = self._minhasher(lang)
        rows_parts, sig_parts = [], []
        for s in range(0, n_docs, BATCH_DOCS):
            batch = [t or "" for t in col.slice(s, BATCH_DOCS).to_pylist()]
            has, sg = mh.signatures(batch)
            rows_parts.append(np.flatnonzero(has) + s)
            sig_parts.append(sg)
        rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, np.int64)
        sigs = np.concatenate(sig_parts) if sig_parts else np.zeros((0, num_perm), np.uint64)
        return n_docs, rows, sigs

    def _write_bands(self, task: Task, parts: list[tuple[str, np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
        """One band file per partition for all the task's languages: (language hash, key, id)."""
        from babelsieve.dedup.minhash import band_keys

        c = self.config.dedup
        parts = [p for p in parts if len(p[1])]
        if not parts:
            return []
        flat_keys = np.concatenate([band_keys(sigs, c.num_buckets, c.hashes_per_bucket).ravel()
                                    for _, _, sigs in parts])
        flat_ids = np.concatenate([np.repeat(ids, c.num_buckets) for _, ids, _ in parts])
        flat_langs = np.concatenate([np.full(len(ids) * c.num_buckets, language_hash(lang), np.uint64)
                                     for lang, ids, _ in parts])
        names = {language_hash(lang): lang for lang, _, _ in parts}
        part = (flat_keys % np.uint64(c.partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        part_sorted = part[order]
        bounds = np.searchsorted(part_sorted, np.arange(c.partitions + 1))
        out = []
        for p in range(c.partitions):
            s, e = bounds[p], bounds[p + 1]
            if s == e:
                continue
            sel = order[s:e]
            arr = np.empty(e - s, dtype=BAND_DTYPE)
            arr["lang"] = flat_langs[sel]
            arr["key"] = flat_keys[sel]
            arr["id"] = flat_ids[sel]
            url = self.layout.work_dir("dedup", "bands", f"part={p:05d}", f"{task.task_id}.npy")
            entry = storage.publish_bytes(url, npy_bytes(arr), self.storage_options)
            langs = sorted(names[h] for h in np.unique(arr["lang"]).tolist())
            out.append({**entry, "kind": "bands", "partition": p, "rows": int(e - s), "languages": langs})
        return out


# ------------------------------------------------------------------------------------------------
# stage 1b: merge levels (bounded fan-in of dedup_buckets)

MERGE_STAGES = ("dedup_merge", "dedup_merge_2")  # level k is MERGE_STAGES[k - 1]


@dataclass(frozen=True)
class MergeNode:
    """One merged band file of a partition's merge tree: the concatenation of its children (band file
    entries or nodes of the level below), in order."""

    partition: int
    level: int
    index: int
    children: tuple[Any, ...]  # band file entries (dicts) or MergeNode

    @property
    def leaves(self) -> list[dict[str, Any]]:
        """The band file entries below this node, in order."""
        return [leaf for c in self.children for leaf in (c.leaves if isinstance(c, MergeNode) else [c])]

    @property
    def task_id(self) -> str:
        return f"{self.partition:05d}-{self.index:06d}"

    def path(self, layout: RunLayout) -> str:
        return layout.work_dir("dedup", "bands_merged", f"part={self.partition:05d}",
                               f"L{self.level}-{self.index:06d}.npy")


def merge_tree(entries: list[dict[str, Any]], partition: int, cap: int, levels: int = len(MERGE_STAGES)) -> list[Any]:
    """What ``dedup_buckets`` reads for one partition: band file entries, or merge nodes over them.

    While more than ``cap`` items remain (and a merge level is left), the items (sorted by path at
    level 1, in order above) are cut into consecutive chunks of ``cap``; a chunk of two or more becomes
    one node of the next level, a lone last item passes through unmerged. So the tree depends only on
    the set of band files, and a bucket task reads at most ``cap`` files up to ``cap ** (levels + 1)``
    band files per partition (10^9 at the default 1,000)."""
    items: list[Any] = sorted(entries, key=lambda f: f["path"])
    for level in range(1, levels + 1):
        if len(items) <= cap:
            break
        chunks = [items[i:i + cap] for i in range(0, len(items), cap)]
        items = [MergeNode(partition, level, i, tuple(c)) if len(c) > 1 else c[0] for i, c in enumerate(chunks)]
    return items


def merge_levels(n_files: int, cap: int, levels: int = len(MERGE_STAGES)) -> tuple[list[tuple[int, int, int]], int]:
    """The shape of :func:`merge_tree` for a partition of ``n_files`` band files, without the files: per level
    (merged files, files they read, largest fan-in), and how many files the bucket task then reads. For
    projections (``babelsieve plan``, the snapshot simulator); a test holds it to :func:`merge_tree`."""
    out: list[tuple[int, int, int]] = []
    items = n_files
    for _ in range(levels):
        if items <= cap:
            out.append((0, 0, 0))
            continue
        full, rest = divmod(items, cap)
        out.append((full + (1 if rest >= 2 else 0), items - (1 if rest == 1 else 0), cap))  # a lone last item
        items = full + (1 if rest else 0)  # passes through unmerged
    return out, items


def band_languages(entries: list[dict[str, Any]]) -> list[str]:
    """The sorted languages of band file entries (a bucket task maps language hashes back to names)."""
    return sorted({lang for f in entries for lang in f.get("languages") or [entry_language(f)]})


def merge_trees(config) -> dict[int, list[Any]]:
    """partition -> :func:`merge_tree` of its completed band files."""
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for f in completed_files(config, "dedup_signatures", kind="bands"):
        groups[f["partition"]].append(f)
    cap = config.tasks.max_input_files
    return {p: merge_tree(entries, p, cap) for p, entries in sorted(groups.items())}


def tree_nodes(items: list[Any], level: int) -> list[MergeNode]:
    """The nodes of ``level`` in a merge tree, in order."""
    out: list[MergeNode] = []
    for it in items:
        if isinstance(it, MergeNode):
            out += [it] if it.level == level else tree_nodes(list(it.children), level)
    return out


def merged_files(config, below_level: int) -> dict[str, dict[str, Any]]:
    """path -> entry of the merged band files of the merge levels below ``below_level`` (completed tasks)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in MERGE_STAGES[: below_level - 1]:
        out.update({f["path"]: f for f in completed_files(config, stage, kind="bands")})
    return out


def resolve_inputs(items: list[Any], merged: dict[str, dict[str, Any]], layout: RunLayout) -> list[dict[str, Any]]:
    """The files to read for ``items``: a node's merged file when one was made from exactly the node's
    band files (by their recorded content), else its children's files. So a consumer is always correct;
    only a merge that failed or has not run yet makes it read more files."""
    out: list[dict[str, Any]] = []
    for it in items:
        if not isinstance(it, MergeNode):
            out.append(it)
            continue
        entry = merged.get(it.path(layout))
        if entry is not None and entry.get("leaves_digest") == files_digest(it.leaves):
            out.append(entry)
        else:
            out += resolve_inputs(list(it.children), merged, layout)
    return out


class DedupMergeStage(Stage):
    """Level 1 of the merge of band files: plans no task unless a partition has more than
    ``tasks.max_input_files`` band files (:func:`merge_tree`)."""

    name = "dedup_merge"
    level: ClassVar[int] = 1

    def plan(self) -> list[Task]:
        merged = merged_files(self.config, self.level)
        tasks = []
        for items in merge_trees(self.config).values():
            for node in tree_nodes(items, self.level):
                entries = resolve_inputs(list(node.children), merged, self.layout)
                leaves = node.leaves
                tasks.append(Task(self.name, node.task_id, tuple(f["path"] for f in entries),
                                  {"partition": node.partition, "level": self.level, "index": node.index,
                                   "languages": band_languages(leaves), "leaves": len(leaves),
                                   "leaves_digest": files_digest(leaves)},
                                  files_digest(entries)))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        """Concatenate the inputs in order: buckets sort the entries, so their edges do not depend on
        how band files are grouped (same multiset of triples -> same bytes)."""
        p = task.params
        parts = [load_npy(u, self.storage_options) for u in task.inputs]
        for u, a in zip(task.inputs, parts, strict=True):
            if a.dtype != BAND_DTYPE:
                raise ValueError(f"{u}: not a band file (dtype {a.dtype})")
        arr = np.concatenate(parts) if parts else np.zeros(0, BAND_DTYPE)
        node = MergeNode(p["partition"], p["level"], p["index"], ())
        entry = storage.publish_bytes(node.path(self.layout), npy_bytes(arr), self.storage_options)
        return TaskOutput(files=[{**entry, "kind": "bands", "partition": p["partition"], "rows": len(arr),
                                  "languages": p["languages"], "level": p["level"], "leaves": p["leaves"],
                                  "leaves_digest": p["leaves_digest"]}],
                          stats={"band_entries": len(arr), "inputs": len(task.inputs), "level": p["level"]})


class DedupMerge2Stage(DedupMergeStage):
    """Level 2: merges level-1 files where a partition still has more than ``tasks.max_input_files``."""

    name = "dedup_merge_2"
    level: ClassVar[int] = 2


# ------------------------------------------------------------------------------------------------
# stage 2: buckets -> edges


def bucket_edges(keys: np.ndarray, ids: np.ndarray, min_new_id: int, langs: np.ndarray | None = None) -> np.ndarray:
    """Edges (smallest id of the bucket, other member) for all band buckets with >= 2 members and
    at least one document with id >= ``min_new_id``; unique, sorted, as EDGE_DTYPE. With ``langs``
    (a language tag per entry) a bucket is a run of equal (language, key) and the edges carry the
    language (LANG_EDGE_DTYPE, sorted by (language, u, v))."""
    dtype = EDGE_DTYPE if langs is None else LANG_EDGE_DTYPE
    if len(keys) < 2:
        return np.zeros(0, dtype)
    order = np.lexsort((ids, keys)) if langs is None else np.lexsort((ids, keys, langs))
    k, d = keys[order], ids[order]
    new_run = np.concatenate(([True], k[1:] != k[:-1]))
    if langs is not None:
        lg = langs[order]
        new_run[1:] |= lg[1:] != lg[:-1]
    starts = np.flatnonzero(new_run)
    run_len = np.diff(np.append(starts, len(k)))
    run_max = d[np.append(starts[1:], len(k)) - 1]  # ids sorted inside a run: last is the max
    good_run = (run_len >= 2) & (run_max >= min_new_id)
    run_of = np.cumsum(new_run) - 1
    member = good_run[run_of] & ~new_run
    u = d[starts[run_of[member]]]
    v = d[member]
    edges = np.empty(len(u), dtype)
    edges["u"], edges["v"] = u, v
    if langs is not None:
        edges["lang"] = lg[member]
    return np.unique(edges)  # sorts by (lang,) u, v


class DedupBucketsStage(Stage):
    name = "dedup_buckets"

    def plan(self) -> list[Task]:
        # Inputs and their recorded content make the task's identity: a new or changed band file
        # (shards added, a signature task rerun) reruns the bucket task. One task per partition: it reads
        # the partition's band files, or the merged files of its merge tree once there are more than
        # tasks.max_input_files of them (unchanged inputs and identity when there are not).
        merged = merged_files(self.config, len(MERGE_STAGES) + 1)
        tasks = []
        for p, items in merge_trees(self.config).items():
            entries = resolve_inputs(items, merged, self.layout)
            langs = band_languages(entries)
            tasks.append(Task(self.name, f"{p:05d}", tuple(f["path"] for f in entries),
                              {"partition": p, "languages": langs}, files_digest(entries)))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        p = task.params["partition"]
        parts = [load_npy(u, self.storage_options) for u in task.inputs]
        arr = np.concatenate(parts) if parts else np.zeros(0, BAND_DTYPE)
        min_new = len(self.config.dedup.previous_signatures) << GEN_SHIFT
        edges = bucket_edges(arr["key"], arr["id"], min_new, arr["lang"])
        files = []
        if len(edges):
            names = {language_hash(lang): lang for lang in task.params["languages"]}
            tags, starts, counts = np.unique(edges["lang"], return_index=True, return_counts=True)
            ranges = {names[t]: [int(s), int(s + n)] for t, s, n in zip(tags.tolist(), starts.tolist(),
                                                                        counts.tolist(), strict=True)}
            url = self.layout.work_dir("dedup", "edges", f"{p:05d}.npy")
            entry = storage.publish_bytes(url, npy_bytes(edges), self.storage_options)
            files.append({**entry, "kind": "edges", "partition": p, "rows": len(edges),
                          "language_rows": dict(sorted(ranges.items()))})
        return TaskOutput(files=files, stats={"band_entries": len(arr), "edges": len(edges),
                                              "languages": len(task.params["languages"])})


# ------------------------------------------------------------------------------------------------
# stage 3: connected components


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    r = parent[x]
    while True:
        rr = parent[r]
        if np.array_equal(rr, r):
            break
        r = rr
    parent[x] = r  # path compression for the queried nodes
    return r


def _local_components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Min-label of each of n local nodes over edges (a, b): hook roots to the smaller label, then
    shortcut by pointer jumping, until every edge has equal labels (Shiloach-Vishkin style)."""
    lab = np.arange(n, dtype=np.int64)
    while True:
        la, lb = lab[a], lab[b]
        diff = la != lb
        if not diff.any():
            return lab
        la, lb = la[diff], lb[diff]
        lo, hi = np.minimum(la, lb), np.maximum(la, lb)
        np.minimum.at(lab, hi, lo)  # labels are roots (lab[lab] == lab): hook root hi under lo
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt


def connected_components(edge_chunks, nodes: np.ndarray) -> np.ndarray:
    """Union-find over dense node indexes with vectorised batches of edges.

    ``nodes`` is the sorted array of all ids that occur in an edge; ``edge_chunks`` yields
    (u_ids, v_ids) arrays (one edge partition at a time, never all at once). Returns ``parent``
    (int32, or int64 past 2**31 nodes) with ``parent[i]`` = index of the smallest node of i's
    component. Invariant: ``parent[x] <= x`` and roots are the minimum of their component, so the
    result does not depend on the order of chunks or edges.
    """
    n = len(nodes)
    dt = np.int32 if n < 2**31 - 1 else np.int64
    parent = np.arange(n, dtype=dt)
    for u_ids, v_ids in edge_chunks:
        if len(u_ids) == 0:
            continue
        u = np.searchsorted(nodes, u_ids).astype(dt)
        v = np.searchsorted(nodes, v_ids).astype(dt)
        ru, rv = _find(parent, u), _find(parent, v)
        keep = ru != rv
        if not keep.any():
            continue
        ru, rv = ru[keep], rv[keep]
        roots, inv = np.unique(np.concatenate([ru, rv]), return_inverse=True)
        lab = _local_components(inv[: len(ru)], inv[len(ru) :], len(roots))
        parent[roots] = roots[lab]  # every root hooks to its new component's minimum
    # final compression, in increasing order: parent[x] <= x, so earlier blocks are already final
    block = 1 << 20
    for s in range(0, n, block):
        p = parent[s : s + block]
        while True:
            q = parent[p]
            if np.array_equal(q, p):
                break
            p = q
            parent[s : s + block] = p
    return parent


def _merge_unique(nodes: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``np.union1d(nodes, new)`` with fewer temporaries (~17 bytes per node at the peak instead
    of ~33: no flattened copy, the sort is in place)."""
    cat = np.concatenate((nodes, new))
    del nodes
    cat.sort()
    keep = np.empty(len(cat), bool)
    if len(cat):
        keep[0] = True
        np.not_equal(cat[1:], cat[:-1], out=keep[1:])
    return cat[keep]


class DedupClustersStage(Stage):
    name = "dedup_clusters"

    def plan(self) -> list[Task]:
        edge_files = sorted(completed_files(self.config, "dedup_buckets", kind="edges"), key=lambda f: f["path"])
        per_lang: dict[str, int] = defaultdict(int)
        for f in edge_files:
            for lang, (a, b) in (f.get("language_rows") or {}).items():
                per_lang[lang] += b - a
        # languages grouped by edges (a stand-in for clustered documents): long-tail languages share a
        # task, a big language has its own; every task reads the edge files holding its languages
        tc = self.config.tasks
        groups = plan_work_groups([{"path": lang, "lang_script": lang, "rows": n} for lang, n in per_lang.items()],
                                  tc.target_documents * self.config.dedup.num_buckets, 1 << 62, 1 << 30)
        # the annotate tasks (groups of extract files by file index) each clustering task writes to: the groups
        # overlapping the file indexes of its languages (extract files sort by language, then shard)
        docs = extract_documents(self.config)
        lang_range: dict[str, list[int]] = {}
        for i, f in enumerate(docs):
            r = lang_range.setdefault(entry_language(f), [i, i])
            r[1] = i
        starts, pos = [], 0
        for g in annotate_groups(self.config, docs):
            starts.append(pos)
            pos += len(g)
        tasks = []
        for i, g in enumerate(groups):
            langs = [e["lang_script"] for e in g]
            entries = [f for f in edge_files if set(langs) & set(f.get("language_rows") or {})]
            ranges = [lang_range[lang] for lang in langs if lang in lang_range]
            lo = min((r[0] for r in ranges), default=0)
            hi = max((r[1] for r in ranges), default=-1)
            bounds = starts + [pos]
            ann = [[k, bounds[k], bounds[k + 1]] for k in range(len(starts)) if bounds[k] <= hi and bounds[k + 1] > lo]
            tasks.append(Task(self.name, f"{i:06d}", tuple(f["path"] for f in entries),
                              {"lang_scripts": langs, "annotate_groups": ann}, files_digest(entries)))
        return tasks

    def _edges(self, urls, tags: np.ndarray):
        for url in urls:
            e = load_npy(url, self.storage_options)
            e = e[np.isin(e["lang"], tags)]
            yield e["u"], e["v"]

    def run(self, task: Task) -> TaskOutput:
        langs = task.params["lang_scripts"]
        tags = np.array([language_hash(lang) for lang in langs], np.uint64)
        # pass 1: the sorted set of ids that have at least one edge (streamed)
        nodes = np.zeros(0, np.int64)
        for u, v in self._edges(task.inputs, tags):
            nodes = _merge_unique(nodes, np.union1d(u, v))
        # pass 2: components (edges never join two languages: one pass clusters all of the task's)
        parent = connected_components(self._edges(task.inputs, tags), nodes)
        # cluster sizes: counts[r] = members of the component whose root (smallest node) is r
        counts = np.zeros(len(nodes), np.int32)
        np.add.at(counts, parent, 1)
        # outputs: one file per annotate task (a range of extract files) that has clustered documents of this
        # run. Nodes are sorted ids (gen, file, row), so an annotate task's nodes are one contiguous slice;
        # per-document arrays are only built per slice (memory: nodes + parent + counts).
        gen = len(self.config.dedup.previous_signatures)
        lo = int(np.searchsorted(nodes, np.int64(gen) << GEN_SHIFT))
        hi = int(np.searchsorted(nodes, np.int64(gen + 1) << GEN_SHIFT))  # gen <= 63
        files = []
        removed = 0
        for group, first, end in task.params.get("annotate_groups", []):
            s = max(lo, int(np.searchsorted(nodes, (np.int64(gen) << GEN_SHIFT) | (np.int64(first) << FILE_SHIFT))))
            e = min(hi, int(np.searchsorted(nodes, (np.int64(gen) << GEN_SHIFT) | (np.int64(end) << FILE_SHIFT))))
            if s >= e:
                continue
            own = nodes[s:e]
            par = parent[s:e]
            arr = np.empty(e - s, CLUSTER_DTYPE)
            arr["file"] = (own >> FILE_SHIFT) & (MAX_FILES - 1)
            arr["row"] = own & ((1 << FILE_SHIFT) - 1)
            arr["cluster"] = nodes[par]
            arr["size"] = counts[par]
            removed += int((arr["cluster"] != own).sum())
            url = self.layout.work_dir("dedup", "clusters", f"{task.task_id}-{group:06d}.npy")
            entry = storage.publish_bytes(url, npy_bytes(arr), self.storage_options)
            files.append({**entry, "kind": "clusters", "file_range": [int(arr["file"][0]), int(arr["file"][-1])],
                          "rows": len(arr)})
        return TaskOutput(
            files=files,
            stats={
                "languages": langs,
                "clustered_documents": int(len(nodes)),
                "clusters": int(np.count_nonzero(counts)),
                "to_remove": removed,
                # roots are the smallest id of their cluster: earlier runs' ids sort before ``lo``
                "clusters_with_previous_documents": int(np.count_nonzero(counts[:lo])),
                "max_cluster_size": int(counts.max()) if len(counts) else 0,
                "memory_bytes_per_clustered_doc": nodes.itemsize + parent.itemsize + counts.itemsize,
            },
        )


# ------------------------------------------------------------------------------------------------
# stage 4: annotate


class DedupAnnotateStage(Stage):
    name = "dedup_annotate"

    def plan(self) -> list[Task]:
        clusters = sorted(completed_files(self.config, "dedup_clusters", kind="clusters"), key=lambda f: f["path"])
        docs = extract_documents(self.config)
        tasks, pos = [], 0
        for t, g in enumerate(annotate_groups(self.config, docs)):
            lo, hi = pos, pos + len(g) - 1
            pos += len(g)
            # the clusters files with rows of this task's extract files (by file index range)
            cl = [c for c in clusters if c["file_range"][0] <= hi and c["file_range"][1] >= lo]
            tasks.append(Task(self.name, f"{t:06d}", tuple(f["path"] for f in g) + tuple(c["path"] for c in cl),
                              {"lang_scripts": [entry_language(f) for f in g], **piece_params(g),
                               "first_file_index": lo, "documents": len(g)}, files_digest(g + cl)))
        return tasks

    def _annotate(self, table: pa.Table, url: str, fidx: int,
                  cl: np.ndarray) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """(table with minhash_cluster_size set, keep mask, cluster id per row) of one extract piece, given
        its rows of the clusters files."""
        table = table.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
        n = table.num_rows
        size = np.ones(n, np.int64)
        keep = np.ones(n, bool)
        cluster = np.full(n, -1, np.int64)
        if len(cl):
            rows = cl["row"]
            if len(rows) and rows.max() >= n:
                raise ValueError(f"the clusters files refer to row {rows.max()} but {url} has {n} rows")
            gen = len(self.config.dedup.previous_signatures)
            own = doc_ids(gen, fidx, rows)
            size[rows] = cl["size"]
            cluster[rows] = cl["cluster"]
            keep[rows] = cl["cluster"] == own
        table = table.set_column(
            DOCUMENT_SCHEMA.get_field_index("minhash_cluster_size"), "minhash_cluster_size", pa.array(size, pa.int64())
        )
        return table, keep, cluster

    def run(self, task: Task) -> TaskOutput:
        p = task.params
        kept_by_lang: dict[str, list[pa.Table]] = defaultdict(list)
        removed_by_lang: dict[str, list[pa.Table]] = defaultdict(list)
        n = n_kept = in_clusters = 0
        n_docs = p["documents"]
        parts = [load_npy(u, self.storage_options) for u in task.inputs[n_docs:]]
        cl_all = np.concatenate(parts) if parts else np.zeros(0, CLUSTER_DTYPE)
        pieces = task_pieces(task, task.inputs[:n_docs])
        reader = PieceReader(pieces, self.storage_options)
        first = p["first_file_index"]
        for lang, piece, fidx in zip(p["lang_scripts"], pieces, range(first, first + n_docs), strict=True):
            table, keep, cluster = self._annotate(reader.read(piece), piece.path, fidx,
                                                  cl_all[cl_all["file"] == fidx])
            n += table.num_rows
            n_kept += int(keep.sum())
            in_clusters += int((table.column("minhash_cluster_size").to_numpy() > 1).sum())
            kept_by_lang[lang].append(table.filter(pa.array(keep)))
            if (~keep).any():
                rm = table.filter(pa.array(~keep))
                rm = rm.append_column(REMOVED_EXTRA, pa.array(["minhash_duplicate"] * rm.num_rows, pa.string()))
                removed_by_lang[lang].append(rm.append_column("minhash_cluster_id",
                                                              pa.array(cluster[~keep], pa.int64())))
        files = []
        # one file for the task's languages (a row group run each); a language whose every document is
        # a duplicate of one kept elsewhere has no rows in it
        parts = [(lang, pa.concat_tables(kept_by_lang[lang])) for lang in sorted(kept_by_lang)]
        if any(t.num_rows for _, t in parts):
            url = storage.join(self.layout.stage_dir("dedup"), f"{task.task_id}.parquet")
            files.append({**write_language_parts(url, parts, self.storage_options), "kind": "documents"})
        n_removed = n - n_kept
        for lang in sorted(removed_by_lang):
            url = storage.join(self.layout.removed_dir("dedup", "minhash_duplicate"), f"{task.task_id}-{lang}.parquet")
            entry = write_table(url, pa.concat_tables(removed_by_lang[lang]), self.storage_options)
            files.append({**entry, "kind": "removed", "reason": "minhash_duplicate", "lang_script": lang})
        return TaskOutput(
            files=files,
            stats={"languages": sorted(kept_by_lang), "documents": n, "kept": n_kept, "docs_in": n,
                   "docs_out": n_kept, "removed": {"minhash_duplicate": n_removed}, "in_clusters": in_clusters},
        )
