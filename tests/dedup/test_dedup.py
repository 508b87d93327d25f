"""MinHash dedup: signature semantics, LSH quality against exact Jaccard, components, and the four
stages end to end (determinism, incremental runs)."""

from __future__ import annotations

import hashlib
import random
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from babelsieve.dedup.minhash import MinHasher, band_keys, simplify_batch
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.stages.dedup import bucket_edges, connected_components

from support.dedup import DEDUP_STAGES, doc, mutate, run_stages, vocab, write_fake_extract

# ---------------------------------------------------------------------------------------------
# signatures


def _messy_texts(rng: random.Random, n: int) -> list[str]:
    words = [
        "Ça", "naïve", "Tuesday", "3,14", "don't", "e-mail", "ÅNGSTRÖM", "x²", "Straße", "(hello)", "U.S.A.", "—"
    ]
    words += vocab(rng, 300)
    seps = ["", ",", ".", "!", "\n", "  "]
    return [" ".join(rng.choice(words) + rng.choice(seps) for _ in range(rng.randint(0, 120)))
            for _ in range(n)] + ["", "one two three four", "a b c d e"]


def test_simplify_batch_equals_datatrove():
    from datatrove.utils.text import simplify_text

    texts = _messy_texts(random.Random(1), 300) + ["e\u0301te\u0301 \u05c8x", "\ue000 separator inside"]
    assert simplify_batch(texts) == [simplify_text(t) for t in texts]


def test_datatrove_mode_signatures_are_bit_identical_to_datatrove():
    import datatrove.utils.hashes.xxhash as dtx
    import xxhash
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    # datatrove 0.10.1 hashes str, which xxhash>=4 refuses; hash the UTF-8 bytes like xxhash 3 did
    orig = dtx.xxhash64
    dtx.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
    try:
        dt = MinhashDedupSignature("/tmp/unused-babelsieve-sigs", MinhashConfig(), language="en")
        texts = _messy_texts(random.Random(2), 150)
        ref = []
        for t in texts:
            s = dt.get_shingles(t)
            if s.size:
                ref.append(np.concatenate([np.array(b, dtype=np.uint64) for b in dt.get_signature(s)]))
    finally:
        dtx.xxhash64 = orig
    has, sigs = MinHasher("eng_Latn", shingle_hash="datatrove").signatures(texts)
    assert int(has.sum()) == len(ref)
    assert np.array_equal(sigs, np.array(ref))


def test_chunk_cache_tokens_equal_the_language_tokenizer():
    from babelsieve.langid.word_tokenizers import load_word_tokenizer

    texts = simplify_batch(_messy_texts(random.Random(3), 40))
    for lang in ("eng_Latn", "rus_Cyrl"):
        mh = MinHasher(lang)
        assert mh.chunk_local
        tok = load_word_tokenizer(lang)
        for t in texts:
            th, _ = mh.token_hashes([t])
            import xxhash

            assert th.tolist() == [xxhash.xxh64_intdigest(w.encode()) for w in tok.word_tokenize(t)]


def test_batched_chunk_vocabulary_equals_per_document_tokens():
    from babelsieve.dedup.minhash import simplify_joined

    texts = _messy_texts(random.Random(4), 200) + ["cannot gonna i'm x² ½ ①", "", "ÅNGSTRÖM naïve"]
    for lang in ("eng_Latn", "rus_Cyrl"):
        mh = MinHasher(lang)
        ref = mh.token_hashes(simplify_batch(texts))
        for limit in (4_000_000, 50):  # the vocabulary is reset between batches past its limit
            mh._vocab.LIMIT = limit
            for _ in range(2):
                th, counts = mh.token_hashes_joined(simplify_joined(texts), len(texts))
                assert np.array_equal(th, ref[0]) and np.array_equal(counts, ref[1])


def test_short_documents_have_no_signature_and_batches_do_not_matter():
    mh = MinHasher("eng_Latn")
    texts = ["one two three four", "one two three four five", "", "alpha beta gamma delta epsilon zeta eta"] * 3
    has, sigs = mh.signatures(texts)
    assert has.tolist() == [False, True, False, True] * 3
    one = np.concatenate([mh.signatures([t])[1] for t in texts if len(t.split()) >= 5])
    assert np.array_equal(one, sigs)
    assert np.array_equal(mh.signatures(texts, block=3)[1], sigs)


# ---------------------------------------------------------------------------------------------
# quality: LSH candidates vs exact Jaccard on 5-gram shingle sets


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = text.split()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def test_lsh_precision_recall_match_theory():
    rng = random.Random(42)
    V = vocab(rng)
    texts, cluster_of = [], []
    for c in range(150):
        base = [rng.choice(V) for _ in range(300)]
        for _ in range(4):
            texts.append(" ".join(mutate(base, rng.uniform(0.0, 0.03), rng, V)))
            cluster_of.append(c)
    for _ in range(300):
        texts.append(" ".join(rng.choice(V) for _ in range(300)))
        cluster_of.append(-1 - len(texts))
    mh = MinHasher("eng_Latn")
    has, sigs = mh.signatures(texts)
    assert has.all()
    keys = band_keys(sigs, 14, 8)
    ids = np.repeat(np.arange(len(texts)), 14)
    e = bucket_edges(keys.ravel(), ids, 0)
    # candidate pairs = pairs sharing at least one band (bucket_edges gives stars: expand per bucket)
    cand = set()
    for b in range(14):
        groups = {}
        for i, k in enumerate(keys[:, b].tolist()):
            groups.setdefault(k, []).append(i)
        for g in groups.values():
            cand.update(combinations(g, 2))
    assert {(int(u), int(v)) for u, v in e.tolist()} <= cand
    sh = [_shingles(t) for t in texts]
    sims = {}
    for c in range(150):
        members = [i for i, x in enumerate(cluster_of) if x == c]
        for i, j in combinations(members, 2):
            sims[(i, j)] = len(sh[i] & sh[j]) / len(sh[i] | sh[j])
    p = lambda s: 1 - (1 - s**8) ** 14  # noqa: E731
    truth = {k for k, s in sims.items() if s >= 0.8}
    cross = cand - set(sims)  # candidates between unrelated documents (Jaccard ~ 0)
    tp = len(truth & cand)
    recall = tp / len(truth)
    precision = tp / len(cand)
    exp_recall = sum(p(sims[k]) for k in truth) / len(truth)
    exp_fp = sum(p(s) for k, s in sims.items() if s < 0.8)
    exp_precision = exp_recall * len(truth) / (exp_recall * len(truth) + exp_fp)
    sv = np.array(list(sims.values()))
    print(f"\nplanted pairs {len(sims)} (Jaccard min {sv.min():.2f} median {np.median(sv):.2f} max {sv.max():.2f}), "
          f"true pairs (J>=0.8) {len(truth)}, candidates {len(cand)}, unrelated candidates {len(cross)}")
    print(f"recall {recall:.3f} (LSH 14x8 expects {exp_recall:.3f}); "
          f"precision {precision:.3f} (expects {exp_precision:.3f})")
    assert 0.15 < len(truth) / len(sims) < 0.85  # the planted similarities straddle the threshold
    assert abs(recall - exp_recall) < 0.05
    assert abs(precision - exp_precision) < 0.06
    assert len(cross) == 0


# ---------------------------------------------------------------------------------------------
# connected components


def _reference_components(n, edges):
    parent = list(range(n))

    def f(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = f(a), f(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [f(x) for x in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_connected_components_any_chunking_and_order(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    nodes = np.sort(rng.choice(1 << 40, n, replace=False)).astype(np.int64)
    m = 2500
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    chain = np.arange(0, 400)  # a long path, to stress depth
    a = np.concatenate([a, chain[:-1]])
    b = np.concatenate([b, chain[1:]])
    ref = np.array(_reference_components(n, list(zip(a.tolist(), b.tolist(), strict=True))))
    for k in (1, 7, 40):
        perm = rng.permutation(len(a))
        chunks = [(nodes[a[p]], nodes[b[p]]) for p in np.array_split(perm, k)]
        parent = connected_components(iter(chunks), nodes)
        assert np.array_equal(parent, ref)


# ---------------------------------------------------------------------------------------------
# the four stages end to end


def _corpus(seed: int, n_clusters: int, n_single: int, lang: str, start: int, bases=None, rng=None):
    rng = rng or random.Random(seed)
    V = vocab(random.Random(7), 5000)
    bases = bases if bases is not None else [[rng.choice(V) for _ in range(120)] for _ in range(n_clusters)]
    rows, truth = [], []
    k = start
    for c, base in enumerate(bases):
        for _ in range(rng.randint(2, 4)):
            rows.append(doc(k, " ".join(mutate(base, 0.005, rng, V)), lang))
            truth.append((lang, c))
            k += 1
    for _ in range(n_single):
        rows.append(doc(k, " ".join(rng.choice(V) for _ in range(120)), lang))
        truth.append((lang, -k))
        k += 1
    rows.append(doc(k, "too short", lang))
    truth.append((lang, -k))
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order], [truth[i] for i in order], bases


def _outputs(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("dedup", "removed") for p in sorted((out / sub).rglob("*.parquet"))}


def _write_run(tmp: Path, name: str, shards, tasks=None, **dedup):
    cfg = PipelineConfig(output=str(tmp / name), dedup={"partitions": 4, **dedup}, tasks=tasks or {})
    write_fake_extract(cfg, shards)
    return cfg


@pytest.mark.parametrize("tasks", [{}, {"target_documents": 20, "max_input_files": 2}],
                         ids=["one-task", "small-tasks"])
def test_four_stages_end_to_end_deterministic_and_incremental(tmp_path, tasks):
    eng, eng_truth, eng_bases = _corpus(1, 25, 30, "eng_Latn", 0)
    rus, rus_truth, _ = _corpus(2, 10, 10, "rus_Cyrl", 10_000)
    half = len(eng) // 2
    shards = {"00000": {"eng_Latn": eng[:half], "rus_Cyrl": rus}, "00001": {"eng_Latn": eng[half:]}}
    truth = {d["id"]: t for d, t in zip(eng + rus, eng_truth + rus_truth, strict=True)}

    cfg = _write_run(tmp_path, "a", shards, tasks)
    res = run_stages(cfg, DEDUP_STAGES)
    # work-sized tasks: three extract files are one task by default; with 20-document tasks and at most
    # two inputs, every file (> 20 documents each) is a task; one task per partition; one clustering task
    # for both languages (~170 edges, under 20 x 14)
    n_tasks = 1 if not tasks else 3
    assert len(res["dedup_signatures"]) == n_tasks and len(res["dedup_annotate"]) == n_tasks
    assert len(res["dedup_buckets"]) == 4 and len(res["dedup_clusters"]) == 1
    # with at most two inputs, each partition's 3 band files are one merged pair and one passing through
    assert len(res["dedup_merge"]) == (0 if not tasks else 4) and not res["dedup_merge_2"]
    out = tmp_path / "a"
    kept = pq.read_table(sorted((out / "dedup").rglob("*.parquet"))).to_pylist() if False else [
        r for p in sorted((out / "dedup").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    removed = [r for p in sorted((out / "removed").rglob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(kept) + len(removed) == len(truth)
    assert {r["id"] for r in kept} | {r["id"] for r in removed} == set(truth)
    # exactly one document kept per planted cluster, with the cluster's size
    sizes = {}
    for t in truth.values():
        sizes[t] = sizes.get(t, 0) + 1
    kept_by_cluster = {}
    for r in kept:
        kept_by_cluster.setdefault(truth[r["id"]], []).append(r)
    assert set(kept_by_cluster) == set(sizes)
    for t, rows in kept_by_cluster.items():
        assert len(rows) == 1 and rows[0]["minhash_cluster_size"] == sizes[t], t
    # The kept document is the one with the smallest dedup id (file_index << 24 | row, file_index =
    # position of its extract file among all extract files sorted by path), and every removed copy
    # names that id as its cluster id: computed here from the layout the test wrote, not from the output.
    files = sorted((f"extract/lang_script={lang}/{tid}.parquet", lang, tid)
                   for tid, by_lang in shards.items() for lang in by_lang)
    position = {d["id"]: (fi << 24) | row for fi, (_, lang, tid) in enumerate(files)
                for row, d in enumerate(shards[tid][lang])}
    members: dict = {}
    for i, t in truth.items():
        members.setdefault(t, []).append(i)
    smallest = {t: min(ids, key=position.__getitem__) for t, ids in members.items()}
    assert {truth[r["id"]]: r["id"] for r in kept} == smallest
    assert {r["id"]: r["minhash_cluster_id"] for r in removed} == {
        i: position[smallest[truth[i]]] for i in truth if i != smallest[truth[i]]}
    # the rule is not "first id in text order": the shuffled layout makes some cluster differ
    assert any(smallest[t] != min(ids) for t, ids in members.items() if len(ids) > 1)
    assert all(r["removal_reason"] == "minhash_duplicate" and r["minhash_cluster_id"] >= 0 for r in removed)
    assert all(r["lang_script"] == r["language"] + "_" + r["language_script"] for r in kept)

    # same inputs, tasks executed in reverse order, another output: byte-identical documents
    cfg_b = _write_run(tmp_path, "b", shards, tasks)
    run_stages(cfg_b, DEDUP_STAGES, reverse=True)
    assert _outputs(out) == _outputs(tmp_path / "b")

    # incremental: a new snapshot with near-duplicates of the old clusters and new documents,
    # deduplicated against run a's stored signatures (run a's texts are deleted: not needed)
    import shutil

    shutil.rmtree(out / "extract")
    rng = random.Random(99)
    new, new_truth, _ = _corpus(3, 0, 15, "eng_Latn", 50_000, bases=eng_bases[:10], rng=rng)
    cfg_c = _write_run(tmp_path, "c", {"00000": {"eng_Latn": new}}, tasks,
                       previous_signatures=[str(out / "dedup_work" / "signatures")])
    res_c = run_stages(cfg_c, DEDUP_STAGES)
    prev_tasks = [r for r in res_c["dedup_signatures"] if r["task_id"].startswith("prev")]
    # one stored signature file per signature task of run a (an array per language in it)
    assert len(prev_tasks) == n_tasks
    assert sorted(p.name for p in (out / "dedup_work" / "signatures").iterdir()) == [
        f"{i:06d}.npz" for i in range(n_tasks)]
    assert all(not r["files"] or r["files"][0]["kind"] == "bands" for r in prev_tasks)
    outc = tmp_path / "c"
    kept_c = [r for p in (outc / "dedup").rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    removed_c = [r for p in (outc / "removed").rglob("*.parquet") for r in pq.read_table(p).to_pylist()]
    planted = [d for d, t in zip(new, new_truth, strict=True) if t[1] >= 0]
    assert {r["id"] for r in removed_c} == {d["id"] for d in planted}  # old copies win
    assert all(r["minhash_cluster_size"] == 1 for r in kept_c)
    old_sizes = {c: sizes[("eng_Latn", c)] for c in range(10)}
    new_counts = {}
    for t in new_truth:
        if t[1] >= 0:
            new_counts[t[1]] = new_counts.get(t[1], 0) + 1
    for r in removed_c:
        assert r["minhash_cluster_id"] >> 56 == 0  # the cluster id is a document of the previous run
    stats = res_c["dedup_clusters"][0]["stats"]
    assert stats["clusters_with_previous_documents"] == len(new_counts)
    assert stats["clustered_documents"] == sum(old_sizes[c] + new_counts[c] for c in new_counts)


def test_document_ids_hold_a_snapshot_of_pieces_and_refuse_an_absurd_piece():
    """~21 million (shard, language) pieces at 90,000 shards: more than 24 bits of file index."""
    from babelsieve.pipeline.stages.dedup import FILE_SHIFT, GEN_SHIFT, MAX_FILES, doc_ids

    rows = np.array([0, 7, (1 << FILE_SHIFT) - 1], np.int64)
    for gen, fidx in [(0, 0), (3, 20_698_154), (63, MAX_FILES - 1)]:
        ids = doc_ids(gen, fidx, rows)
        assert ((ids >> GEN_SHIFT) == gen).all()
        assert ((ids >> FILE_SHIFT) & (MAX_FILES - 1) == fidx).all()
        assert ((ids & ((1 << FILE_SHIFT) - 1)) == rows).all()
    # order of ids = order of (gen, piece, row): the kept document of a cluster does not depend on the layout
    a, b = doc_ids(1, 5, np.array([(1 << FILE_SHIFT) - 1])), doc_ids(1, 6, np.array([0]))
    assert a[0] < b[0]
    with pytest.raises(ValueError, match="pieces"):
        doc_ids(0, MAX_FILES, rows)
    with pytest.raises(ValueError, match="rows"):
        doc_ids(0, 1, np.array([1 << FILE_SHIFT]))
