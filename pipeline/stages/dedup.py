"""Global MinHash deduplication per language as four ordinary task stages.

``dedup_signatures`` (one task per extract ``documents`` file, plus one per stored signature file of
an earlier run listed in ``dedup.previous_signatures``)
    signatures of every document with >= n words -> ``dedup_work/signatures/lang_script=X/<task>.npy``
    (kind ``signatures``, reusable by later runs) and, per band, a 64-bit band key; (key, doc id)
    pairs are written partitioned by ``key % partitions`` ->
    ``dedup_work/bands/lang_script=X/part=PPPPP/<task>.npy`` (kind ``bands``).
``dedup_buckets`` (one task per (language, partition))
    sorts the partition's (key, id) pairs; every run of equal keys is a band bucket; each member is
    linked to the smallest id of its bucket (a star: n-1 edges, not n^2). Buckets holding only
    documents of earlier runs are skipped. Unique edges ->
    ``dedup_work/edges/lang_script=X/PPPPP.npy`` (kind ``edges``).
``dedup_clusters`` (one task per language)
    connected components over the language's edge files, streamed one partition at a time
    (see :func:`connected_components`). Writes, per extract file with duplicates, the rows that
    are in a cluster: (row, cluster id, cluster size) -> ``dedup_work/clusters/lang_script=X/<file>.npy``.
``dedup_annotate`` (one task per extract ``documents`` file)
    keeps the document whose id is the cluster id (the smallest id of the cluster; documents of
    earlier runs have smaller ids, so they win and new near-duplicates of them are removed), sets
    ``minhash_cluster_size`` (1 for singletons), writes kept documents to
    ``dedup/lang_script=X/<task>.parquet`` and the others to
    ``removed/dedup/minhash_duplicate/<task>.parquet`` with ``removal_reason`` and
    ``minhash_cluster_id``.

Document ids are int64: ``gen << 56 | file_index << 32 | row`` where ``file_index`` is the position
of the extract file in the sorted list of all extract ``documents`` files and ``gen`` is
``k`` for the k-th ``previous_signatures`` directory and ``len(previous_signatures)`` for this run.
Stored signatures keep ``gen = 0`` (they are re-based when reused).

Memory of clustering: 16 bytes per document that has at least one near-duplicate (its int64 id in a
sorted array, an int32 parent and an int32 cluster size), nothing for singletons, plus one
partition's edges and the temporaries of merging its ids into the sorted array (~17 bytes per
clustered document at the peak). Per-document outputs are built one extract file at a time.
"""

from __future__ import annotations

import io
from collections import defaultdict
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import DOCUMENT_SCHEMA, REMOVED_EXTRA, language_dir, read_table, write_table
from babelsieve.pipeline.core.tasks import Stage, Task, TaskOutput, completed_files, files_digest
from babelsieve.pipeline.stages import documents_input

GEN_SHIFT = 56
FILE_SHIFT = 32
LOCAL_MASK = (1 << GEN_SHIFT) - 1
MAX_FILES = 1 << (GEN_SHIFT - FILE_SHIFT)
REMOVED_SCHEMA = DOCUMENT_SCHEMA.append(REMOVED_EXTRA).append(pa.field("minhash_cluster_id", pa.int64()))
BAND_DTYPE = np.dtype([("key", "<u8"), ("id", "<i8")])
EDGE_DTYPE = np.dtype([("u", "<i8"), ("v", "<i8")])
CLUSTER_DTYPE = np.dtype([("row", "<i8"), ("cluster", "<i8"), ("size", "<i8")])
BATCH_DOCS = 2000


# ------------------------------------------------------------------------------------------------
# small helpers


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


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
        raise ValueError(f"too many extract files for 24-bit file indexes ({file_index})")
    return (np.int64(gen) << GEN_SHIFT) | (np.int64(file_index) << FILE_SHIFT) | rows.astype(np.int64)


def _lang_from_path(url: str) -> str:
    for part in url.split("/"):
        if part.startswith("lang_script="):
            return part.split("=", 1)[1]
    raise ValueError(f"no lang_script=... directory in {url}")


def extract_documents(config) -> list[dict[str, Any]]:
    """The document files dedup reads (extract's, or a stage placed before dedup), sorted by path (this
    order defines file indexes)."""
    files = completed_files(config, documents_input(config, "dedup_signatures"), kind="documents")
    return sorted(files, key=lambda f: f["path"])


def _file_task_id(file_index: int) -> str:
    return f"{file_index:06d}"


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
        tasks = [
            Task(self.name, _file_task_id(i), (f["path"],),
                 {"file_index": i, "gen": gen, "lang_script": f["lang_script"]}, files_digest([f]))
            for i, f in enumerate(extract_documents(self.config))
        ]
        for k, d in enumerate(cfg.previous_signatures):
            sig_files = storage.list_files(d, ".npy", self.storage_options)
            if not sig_files:
                raise ValueError(f"dedup.previous_signatures: no signature files (*.npy) below {d}")
            for j, url in enumerate(sig_files):
                tasks.append(
                    Task(self.name, f"prev{k:02d}-{j:06d}", (url,), {"gen": k, "lang_script": _lang_from_path(url)})
                )
        return tasks

    def _minhasher(self, lang: str):
        c = self.config.dedup
        return _cached_minhasher(lang, c.n_grams, c.num_buckets, c.hashes_per_bucket, c.seed, c.shingle_hash)

    def run(self, task: Task) -> TaskOutput:
        c = self.config.dedup
        num_perm = c.num_buckets * c.hashes_per_bucket
        lang = task.params["lang_script"]
        gen = task.params["gen"]
        files: list[dict[str, Any]] = []
        if task.task_id.startswith("prev"):
            arr = load_npy(task.inputs[0], self.storage_options)
            if arr.dtype != sig_dtype(num_perm):
                raise ValueError(
                    f"{task.inputs[0]}: stored signatures have dtype {arr.dtype}, this config needs "
                    f"{num_perm} hashes ({c.num_buckets}x{c.hashes_per_bucket})"
                )
            ids = (arr["id"] & LOCAL_MASK) | (np.int64(gen) << GEN_SHIFT)
            sigs = arr["sig"]
            n_docs = len(arr)
        else:
            table = read_table(task.inputs[0], self.storage_options, columns=["text"])
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
            local = doc_ids(0, task.params["file_index"], rows)
            arr = np.empty(len(rows), dtype=sig_dtype(num_perm))
            arr["id"] = local
            arr["sig"] = sigs
            url = self.layout.work_dir("dedup", "signatures", f"lang_script={lang}", f"{task.task_id}.npy")
            entry = storage.publish_bytes(url, npy_bytes(arr), self.storage_options)
            files.append(
                {**entry, "kind": "signatures", "lang_script": lang, "rows": len(arr), "source": task.inputs[0]}
            )
            ids = local | (np.int64(gen) << GEN_SHIFT)
        files += self._write_bands(task, lang, ids, sigs)
        return TaskOutput(files=files, stats={"documents": n_docs, "signatures": int(len(ids)), "lang_script": lang})

    def _write_bands(self, task: Task, lang: str, ids: np.ndarray, sigs: np.ndarray) -> list[dict[str, Any]]:
        from babelsieve.dedup.minhash import band_keys

        c = self.config.dedup
        if len(ids) == 0:
            return []
        keys = band_keys(sigs, c.num_buckets, c.hashes_per_bucket)  # (n, bands)
        flat_keys = keys.ravel()
        flat_ids = np.repeat(ids, c.num_buckets)
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
            arr["key"] = flat_keys[sel]
            arr["id"] = flat_ids[sel]
            url = self.layout.work_dir("dedup", "bands", f"lang_script={lang}", f"part={p:05d}", f"{task.task_id}.npy")
            entry = storage.publish_bytes(url, npy_bytes(arr), self.storage_options)
            out.append({**entry, "kind": "bands", "lang_script": lang, "partition": p, "rows": int(e - s)})
        return out


# ------------------------------------------------------------------------------------------------
# stage 2: buckets -> edges


def bucket_edges(keys: np.ndarray, ids: np.ndarray, min_new_id: int) -> np.ndarray:
    """Edges (smallest id of the bucket, other member) for all band buckets with >= 2 members and
    at least one document with id >= ``min_new_id``; unique, sorted, as EDGE_DTYPE."""
    if len(keys) < 2:
        return np.zeros(0, EDGE_DTYPE)
    order = np.lexsort((ids, keys))
    k, d = keys[order], ids[order]
    new_run = np.concatenate(([True], k[1:] != k[:-1]))
    starts = np.flatnonzero(new_run)
    run_len = np.diff(np.append(starts, len(k)))
    run_max = d[np.append(starts[1:], len(k)) - 1]  # ids sorted inside a run: last is the max
    good_run = (run_len >= 2) & (run_max >= min_new_id)
    run_of = np.cumsum(new_run) - 1
    member = good_run[run_of] & ~new_run
    u = d[starts[run_of[member]]]
    v = d[member]
    edges = np.empty(len(u), EDGE_DTYPE)
    edges["u"], edges["v"] = u, v
    return np.unique(edges)  # sorts by (u, v)


class DedupBucketsStage(Stage):
    name = "dedup_buckets"

    def plan(self) -> list[Task]:
        # Inputs and their recorded content make the task's identity: a new or changed band file
        # (shards added, a signature task rerun) reruns the bucket task.
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for f in completed_files(self.config, "dedup_signatures", kind="bands"):
            groups[(f["lang_script"], f["partition"])].append(f)
        tasks = []
        for (lang, p), entries in sorted(groups.items()):
            entries = sorted(entries, key=lambda f: f["path"])
            tasks.append(Task(self.name, f"{lang}-{p:05d}", tuple(f["path"] for f in entries),
                              {"lang_script": lang, "partition": p}, files_digest(entries)))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        lang, p = task.params["lang_script"], task.params["partition"]
        parts = [load_npy(u, self.storage_options) for u in task.inputs]
        arr = np.concatenate(parts) if parts else np.zeros(0, BAND_DTYPE)
        min_new = len(self.config.dedup.previous_signatures) << GEN_SHIFT
        edges = bucket_edges(arr["key"], arr["id"], min_new)
        files = []
        if len(edges):
            url = self.layout.work_dir("dedup", "edges", f"lang_script={lang}", f"{p:05d}.npy")
            entry = storage.publish_bytes(url, npy_bytes(edges), self.storage_options)
            files.append({**entry, "kind": "edges", "lang_script": lang, "partition": p, "rows": len(edges)})
        return TaskOutput(files=files, stats={"band_entries": len(arr), "edges": len(edges), "lang_script": lang})


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
        by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for f in completed_files(self.config, "dedup_buckets", kind="edges"):
            by_lang[f["lang_script"]].append(f)
        tasks = []
        for lang, entries in sorted(by_lang.items()):
            entries = sorted(entries, key=lambda f: f["path"])
            tasks.append(Task(self.name, lang, tuple(f["path"] for f in entries), {"lang_script": lang},
                              files_digest(entries)))
        return tasks

    def _edges(self, urls):
        for url in urls:
            e = load_npy(url, self.storage_options)
            yield e["u"], e["v"]

    def run(self, task: Task) -> TaskOutput:
        lang = task.params["lang_script"]
        # pass 1: the sorted set of ids that have at least one edge (streamed)
        nodes = np.zeros(0, np.int64)
        for u, v in self._edges(task.inputs):
            nodes = _merge_unique(nodes, np.union1d(u, v))
        # pass 2: components
        parent = connected_components(self._edges(task.inputs), nodes)
        # cluster sizes: counts[r] = members of the component whose root (smallest node) is r
        counts = np.zeros(len(nodes), np.int32)
        np.add.at(counts, parent, 1)
        # outputs: one file per extract file of this run that has clustered documents. Nodes are
        # sorted ids (gen, file, row), so this run's nodes of one file are one contiguous slice;
        # per-document arrays are only built per slice (memory: nodes + parent + counts).
        gen = len(self.config.dedup.previous_signatures)
        lo = int(np.searchsorted(nodes, np.int64(gen) << GEN_SHIFT))
        hi = int(np.searchsorted(nodes, np.int64(gen + 1) << GEN_SHIFT))  # gen <= 63
        files = []
        removed = 0
        s = lo
        while s < hi:
            fidx = int((nodes[s] >> FILE_SHIFT) & (MAX_FILES - 1))
            e = int(np.searchsorted(nodes, (np.int64(gen) << GEN_SHIFT) | (np.int64(fidx + 1) << FILE_SHIFT)))
            e = min(max(e, s + 1), hi)
            own = nodes[s:e]
            par = parent[s:e]
            arr = np.empty(e - s, CLUSTER_DTYPE)
            arr["row"] = own & ((1 << FILE_SHIFT) - 1)
            arr["cluster"] = nodes[par]
            arr["size"] = counts[par]
            removed += int((arr["cluster"] != own).sum())
            url = self.layout.work_dir("dedup", "clusters", f"lang_script={lang}", f"{_file_task_id(fidx)}.npy")
            entry = storage.publish_bytes(url, npy_bytes(arr), self.storage_options)
            files.append({**entry, "kind": "clusters", "lang_script": lang, "file_index": fidx, "rows": len(arr)})
            s = e
        return TaskOutput(
            files=files,
            stats={
                "lang_script": lang,
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
        clusters = {f["file_index"]: f for f in completed_files(self.config, "dedup_clusters", kind="clusters")}
        tasks = []
        for i, f in enumerate(extract_documents(self.config)):
            entries = [f] + ([clusters[i]] if i in clusters else [])
            tasks.append(Task(self.name, _file_task_id(i), tuple(e["path"] for e in entries),
                              {"file_index": i, "lang_script": f["lang_script"]}, files_digest(entries)))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        lang = task.params["lang_script"]
        table = read_table(task.inputs[0], self.storage_options)
        table = table.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
        n = table.num_rows
        size = np.ones(n, np.int64)
        keep = np.ones(n, bool)
        cluster = np.full(n, -1, np.int64)
        if len(task.inputs) > 1:
            cl = load_npy(task.inputs[1], self.storage_options)
            rows = cl["row"]
            if len(rows) and rows.max() >= n:
                raise ValueError(f"{task.inputs[1]} refers to row {rows.max()} but {task.inputs[0]} has {n} rows")
            gen = len(self.config.dedup.previous_signatures)
            own = doc_ids(gen, task.params["file_index"], rows)
            size[rows] = cl["size"]
            cluster[rows] = cl["cluster"]
            keep[rows] = cl["cluster"] == own
        table = table.set_column(
            DOCUMENT_SCHEMA.get_field_index("minhash_cluster_size"), "minhash_cluster_size", pa.array(size, pa.int64())
        )
        kept = table.filter(pa.array(keep))
        files = []
        if kept.num_rows:  # every document a duplicate of one kept elsewhere: no (empty) file
            entry = write_table(language_dir(self.layout.stage_dir("dedup"), lang) + f"/{task.task_id}.parquet", kept,
                                self.storage_options)
            files.append({**entry, "kind": "documents", "lang_script": lang})
        n_removed = int((~keep).sum())
        if n_removed:
            rm = table.filter(pa.array(~keep))
            rm = rm.append_column(REMOVED_EXTRA, pa.array(["minhash_duplicate"] * n_removed, pa.string()))
            rm = rm.append_column("minhash_cluster_id", pa.array(cluster[~keep], pa.int64()))
            url = storage.join(self.layout.removed_dir("dedup", "minhash_duplicate"), f"{task.task_id}.parquet")
            entry = write_table(url, rm, self.storage_options)
            files.append({**entry, "kind": "removed", "reason": "minhash_duplicate", "lang_script": lang})
        return TaskOutput(
            files=files,
            stats={"lang_script": lang, "documents": n, "kept": int(keep.sum()), "docs_in": n,
                   "docs_out": int(keep.sum()), "removed": {"minhash_duplicate": n_removed},
                   "in_clusters": int((size > 1).sum())},
        )
