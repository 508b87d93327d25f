"""MinHash dedup benchmark: babelsieve's four stages vs datatrove's four MinHash stages.

Same generated corpus (English-like words, 30% of documents in planted near-duplicate clusters),
14 bands x 8 hashes, word 5-grams, spaCy "en" tokenizer for both.

* signatures: documents/s on one core (the process is pinned with sched_setaffinity);
* buckets + clustering + annotate: wall time and peak RSS (each phase in a fresh process, so the
  peak is that phase's own);
* datatrove: MinhashDedupSignature / MinhashDedupBuckets / MinhashDedupCluster / MinhashDedupFilter
  with LocalPipelineExecutor (1 task for signatures and clustering, 14 for buckets run one at a
  time on the same pinned core, 1 for filtering) on the same Parquet file.

Reproduce:  python benchmarks/bench_minhash.py --docs 1000000
            python benchmarks/bench_minhash.py --docs 100000   (quick)
datatrove 0.10.1 hashes ``str`` with xxhash, which xxhash>=4 refuses; the benchmark patches its
hash function to hash the UTF-8 bytes (what xxhash 3 did internally).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARD_DOCS = 10_000  # documents per corpus file (like one extract task's output file)


def make_corpus(path: Path, n_docs: int, seed: int = 0) -> None:
    """Writes ``path.parent / docs-NNNNN.parquet``, ``SHARD_DOCS`` documents each (``path`` names
    the directory's first file)."""
    import pyarrow.parquet as pq

    from babelsieve.dedup.synthetic import doc, mutate, vocab
    from babelsieve.pipeline.core.documents import table_from_rows

    rng = random.Random(seed)
    V = vocab(rng, 30000)
    rows = []
    i = 0
    while i < n_docs:
        if rng.random() < 0.1:  # a cluster of 2-5 near-duplicates
            base = [rng.choice(V) for _ in range(rng.randint(80, 400))]
            for _ in range(rng.randint(2, 5)):
                rows.append(doc(i, " ".join(mutate(base, rng.uniform(0, 0.02), rng, V))))
                i += 1
        else:
            rows.append(doc(i, " ".join(rng.choice(V) for _ in range(rng.randint(80, 400)))))
            i += 1
    rows = rows[:n_docs]
    table = table_from_rows(rows)
    for k, s in enumerate(range(0, n_docs, SHARD_DOCS)):
        pq.write_table(table.slice(s, SHARD_DOCS), path.parent / f"docs-{k:05d}.parquet", row_group_size=SHARD_DOCS)


def corpus_files(corpus: str) -> list[Path]:
    return sorted(Path(corpus).parent.glob("docs-*.parquet"))


def _child(fn: str, *args: str) -> dict:
    """Run a phase in a fresh pinned process; returns its JSON result with peak RSS."""
    out = subprocess.run([sys.executable, __file__, "--phase", fn, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {fn} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pin() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _peak_mb() -> float:
    """Peak RSS of this process (VmHWM: reset by exec, unlike ru_maxrss which keeps the forking
    parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``), so the
    peak measured afterwards is the phase's own, not the imports'."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# babelsieve phases


def _config(out: str):
    from babelsieve.pipeline.core.config import PipelineConfig

    return PipelineConfig(output=out, dedup={"partitions": 16})


def phase_ours(out: str, stages: str) -> dict:
    from babelsieve.pipeline.core.tasks import execute_task
    from babelsieve.pipeline.stages import stage_class

    cfg = _config(out)
    cj = cfg.model_dump_json()
    import pyarrow.parquet  # noqa: F401

    import babelsieve.dedup.minhash  # noqa: F401  (imports are not the phase's memory)
    import babelsieve.pipeline.stages.dedup  # noqa: F401
    from babelsieve.pipeline.core import storage

    storage.list_files(out, ".json")  # fsspec's local filesystem

    rss0 = _rss_mb()
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for name in stages.split(","):
        for t in stage_class(name)(cfg).plan():
            execute_task(t.to_dict(), cj)
            n += 1
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "peak_mb": _peak_mb(), "tasks": n,
            "rss_before_mb": rss0, "peak_above_start_mb": (_peak_mb() - rss0) if reset else None}


def setup_ours(corpus: str, out: str) -> None:
    from babelsieve.pipeline.core import storage
    from babelsieve.pipeline.core.documents import language_dir
    from babelsieve.pipeline.core.tasks import MANIFEST_VERSION, manifest_url

    cfg = _config(out)
    for k, f in enumerate(corpus_files(corpus)):
        url = language_dir(storage.join(out, "extract"), "eng_Latn") + f"/{k:05d}.parquet"
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, url)
        entry = {"path": url, "kind": "documents", "lang_script": "eng_Latn"}
        storage.publish_json(manifest_url(cfg, "extract", f"{k:05d}"), {
            "version": MANIFEST_VERSION, "stage": "extract", "task_id": f"{k:05d}", "inputs": [], "params": {},
            "config_hash": cfg.content_hash(), "files": [entry], "stats": {}, "seconds": 0})


# ---------------------------------------------------------------------------------------------
# datatrove phases


def _patch_dt():
    import datatrove.utils.hashes.xxhash as dtx
    import xxhash

    dtx.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)


def phase_dt(corpus: str, work: str, step: str) -> dict:
    _patch_dt()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    mc = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    reader = lambda: ParquetReader(str(Path(corpus).parent), glob_pattern="docs-*.parquet", text_key="text")  # noqa
    w = Path(work)
    if step == "signatures":
        pipe, tasks = [reader(), MinhashDedupSignature(str(w / "sigs"), mc, language="en")], 1
    elif step == "buckets":
        pipe, tasks = [MinhashDedupBuckets(str(w / "sigs"), str(w / "buckets"), config=mc)], mc.num_buckets
    elif step == "cluster":
        pipe, tasks = [MinhashDedupCluster(str(w / "buckets"), str(w / "remove_ids"), config=mc,
                                           save_cluster_size=True)], 1
    else:
        pipe, tasks = [reader(), MinhashDedupFilter(str(w / "remove_ids"), load_cluster_sizes=True),
                       ParquetWriter(str(w / "out"))], 1
    t0, c0 = time.perf_counter(), time.process_time()
    LocalPipelineExecutor(pipe, tasks=tasks, workers=1, logging_dir=str(w / f"logs_{step}"),
                          skip_completed=False).run()
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "peak_mb": _peak_mb()}


def phase_dt_sigs_from_ours(corpus: str, work: str) -> dict:
    """datatrove's signature files (``sigs/bucket_BBB/00000.minhash.sig``, one rank) computed with
    babelsieve's ``shingle_hash="datatrove"`` mode, whose signatures are bit-identical to
    ``MinhashDedupSignature`` (tests/dedup/test_dedup.py), written in datatrove's record format
    (``<8QI``: 8 band hashes + the document's index in the reader's stream) and sorted by all
    fields exactly as its ``run`` does. Used to feed datatrove's buckets + clustering on corpora
    where its own signature stage would take hours; ``--check-dt-sigs`` compares the files
    byte for byte with datatrove's own output."""
    import numpy as np
    import pyarrow.parquet as pq

    from babelsieve.dedup.minhash import MinHasher

    mh = MinHasher("eng_Latn", 5, 14, 8, 1, shingle_hash="datatrove")
    rows_per_band, nb = 8, 14
    dtype = np.dtype([(f"field{i + 1}", "<u8") for i in range(rows_per_band)] + [(f"field{rows_per_band + 1}", "<u4")])
    t0, c0 = time.perf_counter(), time.process_time()
    idx_parts, sig_parts, base = [], [], 0
    for f in corpus_files(corpus):
        col = pq.read_table(f, columns=["text"]).column("text")
        for s in range(0, len(col), 2000):
            has, sg = mh.signatures([t or "" for t in col.slice(s, 2000).to_pylist()])
            idx_parts.append(np.flatnonzero(has) + base + s)
            sig_parts.append(sg)
        base += len(col)
    idx = np.concatenate(idx_parts).astype(np.uint32)
    sigs = np.concatenate(sig_parts)
    for bi in range(nb):
        rec = np.empty(len(idx), dtype)
        for j in range(rows_per_band):
            rec[f"field{j + 1}"] = sigs[:, bi * rows_per_band + j]
        rec[f"field{rows_per_band + 1}"] = idx
        rec.sort(order=dtype.names)
        d = Path(work) / "sigs" / f"bucket_{bi:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "00000.minhash.sig").write_bytes(rec.tobytes())
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "peak_mb": _peak_mb(), "docs": base}


def phase_baseline() -> dict:
    import numpy  # noqa: F401
    import pyarrow  # noqa: F401

    return {"seconds": 0.0, "peak_mb": _peak_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--work", default=None, help="work directory (default: a temp dir, removed)")
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--dt-signature-docs", type=int, default=0,
                    help="run datatrove's own signature stage on the first N documents only (its per-core rate); "
                         "its buckets/clustering then read signature files of the whole corpus written by the "
                         "bit-identical datatrove mode (checked byte for byte on those N documents)")
    ap.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    _pin()
    if a.phase:
        name, *args = a.phase
        res = {"ours": lambda: phase_ours(*args), "dt": lambda: phase_dt(*args),
               "dt_sigs_from_ours": lambda: phase_dt_sigs_from_ours(*args),
               "setup": lambda: (setup_ours(*args), {})[1], "baseline": phase_baseline}[name]()
        print(json.dumps(res))
        return
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-minhash-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus" / "docs-00000.parquet"
    corpus.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    if not corpus.exists():
        make_corpus(corpus, a.docs)
    size = sum(f.stat().st_size for f in corpus_files(str(corpus)))
    print(f"corpus: {a.docs:,} documents, {size / 1e6:.1f} MB Parquet in {len(corpus_files(str(corpus)))} files "
          f"({time.perf_counter() - t0:.0f} s)")
    base = _child("baseline")["peak_mb"]
    ours_out = str(work / "ours")
    _child("setup", str(corpus), ours_out)
    r = {}
    r["ours_sig"] = _child("ours", ours_out, "dedup_signatures")
    r["ours_buckets"] = _child("ours", ours_out, "dedup_buckets")
    r["ours_clusters"] = _child("ours", ours_out, "dedup_clusters")
    r["ours_annotate"] = _child("ours", ours_out, "dedup_annotate")
    clusters_stats = json.loads(
        next((Path(ours_out) / "_manifests" / "dedup_clusters").glob("*.json")).read_text())["stats"]
    dt = work / "dt"
    sub_n = 0
    if not a.skip_datatrove:
        files = corpus_files(str(corpus))
        if a.dt_signature_docs and a.dt_signature_docs < a.docs:
            # datatrove's own signature stage on the first files only (its rate per core is
            # measured there); the full corpus's signature files come from the bit-identical mode
            sub = work / "corpus_dt_subset"
            sub.mkdir(exist_ok=True)
            k = max(1, a.dt_signature_docs // SHARD_DOCS)
            for f in files[:k]:
                if not (sub / f.name).exists():
                    os.symlink(f, sub / f.name)
            sub_n = min(k * SHARD_DOCS, a.docs)
            r["dt_signatures"] = _child("dt", str(sub / files[0].name), str(work / "dt_subset"), "signatures")
            r["dt_sigs_from_ours"] = _child("dt_sigs_from_ours", str(corpus), str(dt))
            same = all((work / "dt_subset" / "sigs" / f"bucket_{bi:03d}" / "00000.minhash.sig").read_bytes()
                       == _child_bytes_subset(str(sub / files[0].name), str(work / "dt_subset_check"), bi)
                       for bi in range(14))
            print(f"datatrove signature files from the bit-identical mode == datatrove's own on the first "
                  f"{sub_n:,} documents: {same}")
        else:
            r["dt_signatures"] = _child("dt", str(corpus), str(dt), "signatures")
        for step in ("buckets", "cluster", "filter"):
            r[f"dt_{step}"] = _child("dt", str(corpus), str(dt), step)
    n = a.docs
    print(f"\nbaseline interpreter+numpy+pyarrow RSS: {base:.0f} MB; cores used: 1 (pinned); "
          f"/proc/loadavg at the end: {Path('/proc/loadavg').read_text().strip()}")
    print(f"clustered documents: {clusters_stats['clustered_documents']:,}, clusters {clusters_stats['clusters']:,}, "
          f"to remove {clusters_stats['to_remove']:,}")
    rows = [("signatures", "ours_sig", "dt_signatures"), ("buckets", "ours_buckets", "dt_buckets"),
            ("clustering", "ours_clusters", "dt_cluster"), ("annotate/filter", "ours_annotate", "dt_filter")]
    print(f"{'phase':<16}{'ours wall s':>12}{'ours CPU s':>12}{'ours MB':>9}"
          f"{'dt wall s':>11}{'dt CPU s':>10}{'dt MB':>8}")
    for label, o, d in rows:
        ro, rd = r[o], r.get(d)
        print(f"{label:<16}{ro['seconds']:>12.1f}{ro['cpu']:>12.1f}{ro['peak_mb']:>9.0f}"
              + (f"{rd['seconds']:>11.1f}{rd['cpu']:>10.1f}{rd['peak_mb']:>8.0f}" if rd else ""))
    dt_n = sub_n or n
    line = f"signatures per core: ours {n / r['ours_sig']['cpu']:,.0f} docs/CPU-s"
    if "dt_signatures" in r:
        dr = dt_n / r["dt_signatures"]["cpu"]
        line += (f", datatrove {dr:,.1f} docs/CPU-s (measured on {dt_n:,} documents)"
                 f" -> {n / r['ours_sig']['cpu'] / dr:.1f}x")
    print(line)
    bc_o = r["ours_buckets"]["seconds"] + r["ours_clusters"]["seconds"]
    bc_oc = r["ours_buckets"]["cpu"] + r["ours_clusters"]["cpu"]
    line = f"buckets+clustering: ours {bc_o:.1f} s wall / {bc_oc:.1f} CPU-s"
    if "dt_buckets" in r:
        bc_d = r["dt_buckets"]["seconds"] + r["dt_cluster"]["seconds"]
        bc_dc = r["dt_buckets"]["cpu"] + r["dt_cluster"]["cpu"]
        line += (f", datatrove {bc_d:.1f} s wall / {bc_dc:.1f} CPU-s "
                 f"({bc_d / bc_o:.1f}x wall, {bc_dc / bc_oc:.1f}x CPU)")
    print(line)
    extra = r["ours_clusters"]["peak_above_start_mb"]
    if extra is not None:
        print(f"clustering memory: peak RSS above the process's RSS at its start {extra:.1f} MB = "
              f"{extra * 2**20 / n:.1f} bytes/document "
              f"(structures: {clusters_stats['memory_bytes_per_clustered_doc']} "
              f"bytes per clustered document)")
    print(json.dumps(r))
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


def _child_bytes_subset(corpus: str, work: str, bucket: int) -> bytes:
    f = Path(work) / "sigs" / f"bucket_{bucket:03d}" / "00000.minhash.sig"
    if not f.exists():
        _child("dt_sigs_from_ours", corpus, work)
    return f.read_bytes()


if __name__ == "__main__":
    main()
