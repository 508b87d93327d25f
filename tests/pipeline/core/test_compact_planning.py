"""Driver planning at snapshot scale (pipeline/core/tasks.py): the manifest index read as a stream (version 2:
gzip JSON lines), old/stale/corrupt indexes never trusted, compact file entries (FileEntry) that plan exactly
the tasks the dict entries did, at a fraction of the memory."""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import random
import tracemalloc

import pytest

from babelsieve.pipeline.core import storage, tasks
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.tasks import (
    FileEntry,
    Task,
    _list_stamps,
    completed_files,
    index_url,
    iter_manifests,
    load_manifests,
    publish_manifest,
    work_sized_tasks,
)

LANGS = ["aaa_Latn", "deu_Latn", "eng_Latn", "rus_Cyrl", "zho_Hani", "zzz_Xxxx", "arb_Arab", "hin_Deva"]


# -- a copy of the dict-based planner of the previous version (the reference the compact one must equal) --
def _old_files_digest(entries):
    blob = json.dumps([[e.get("sha256"), e.get("bytes"), e.get("rows")] for e in entries], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _old_plan_work_groups(entries, target_documents, target_bytes, max_inputs):
    groups, cur, docs, nbytes = [], [], 0, 0
    for e in sorted(entries, key=lambda f: (f.get("lang_script") or "und", f["path"])):
        cur.append(e)
        docs += int(e.get("rows") or 0)
        nbytes += int(e.get("bytes") or 0)
        if docs >= target_documents or nbytes >= target_bytes or len(cur) >= max_inputs:
            groups.append(cur)
            cur, docs, nbytes = [], 0, 0
    if cur:
        groups.append(cur)
    return groups


def _old_work_sized_tasks(stage, entries, config, files_per_entry=1, params=None, first_params=None):
    tc = config.tasks
    cap = max(1, tc.max_input_files // files_per_entry)
    groups = _old_plan_work_groups(entries, tc.target_documents, tc.target_bytes, cap)
    return [Task(stage, f"{i:06d}", tuple(e["path"] for e in g),
                 {"lang_scripts": [e.get("lang_script") or "und" for e in g], **(params or {}),
                  **((first_params or {}) if i == 0 else {})}, _old_files_digest(g))
            for i, g in enumerate(groups)]


def _shard_files(cfg: PipelineConfig, shard: int, rng: random.Random, n_langs: int | None = None) -> list[dict]:
    """An extract manifest's file entries (documents per language + one removed file), files written."""
    files = []
    for lang in sorted(rng.sample(LANGS, n_langs or rng.randint(1, len(LANGS)))):
        data = rng.randbytes(rng.randint(1, 64))
        url = storage.join(cfg.output, f"extract/lang_script={lang}/{shard:05d}.parquet")
        files.append({**storage.publish_bytes(url, data), "kind": "documents", "lang_script": lang,
                      "rows": rng.choice([0, 1, 3, 255, 256, 40_000, 2**40])})
    url = storage.join(cfg.output, f"removed/extract/reason0/{shard:05d}.parquet")
    files.append({**storage.publish_bytes(url, b"r"), "kind": "removed", "reason": "reason0", "rows": 1})
    return files


def _publish(cfg: PipelineConfig, stage: str, task_id: str, files: list[dict], **stats) -> None:
    publish_manifest(cfg, {"stage": stage, "task_id": task_id, "inputs": [], "params": {},
                           "config_hash": cfg.content_hash(), "files": files, "stats": stats})


def _run(tmp_path, shards: int = 12, seed: int = 0) -> PipelineConfig:
    cfg = PipelineConfig(output=str(tmp_path / "out"), tasks={"target_documents": 50_000, "max_input_files": 7})
    rng = random.Random(seed)
    for s in range(shards):
        _publish(cfg, "extract", f"{s:05d}", _shard_files(cfg, s, rng))
    return cfg


def _plan_view(tasks: list[Task], output: str) -> list[tuple]:
    return [(t.stage, t.task_id, t.inputs, json.dumps(t.params, sort_keys=True), t.input_digest, t.identity(output))
            for t in tasks]


def test_file_entry_is_the_dict_it_was_made_from():
    odd = [
        {"path": "p", "bytes": 3, "sha256": "ab" * 32, "kind": "documents", "rows": 5, "lang_script": "deu_Latn"},
        {"path": "p", "rows": None, "bytes": True, "sha256": "AB" * 32, "lang_script": None, "kind": 3},
        {"path": "p", "rows": 2**63, "bytes": -1, "sha256": "xyz", "partition": 3, "languages": ["a", "b"],
         "file_range": [0, 4], "language_rows": {"a": [0, 1]}, "row_group": 7},
        {"path": "p", "rows": 3.0, "bytes": "12"},
        {"path": None, "source": "q"},
        {"path": "p"},
    ]
    for d in odd:
        e = FileEntry(d)
        assert e == d and dict(e) == d and len(e) == len(d) and set(e) == set(d)
        for k, v in d.items():
            assert e[k] == v and type(e[k]) is type(v) and e.get(k, "x") == v
        assert e.get("nope") is None and e.get("nope", 5) == 5 and "nope" not in e
        with pytest.raises(KeyError):
            e["nope"]
        assert pickle.loads(pickle.dumps(e)) == d
        assert json.dumps(dict(e), sort_keys=True) == json.dumps(d, sort_keys=True)


def test_compact_plans_equal_the_dict_plans(tmp_path):
    """Task ids, inputs, params, input digests and identities of the compact planner equal those of the
    previous dict-based one (copied above), on a generated multi-language set of entries, with and without
    the index, and with companion files per entry and first-task params."""
    cfg = _run(tmp_path, shards=40)
    raw = [f for _, m in iter_manifests(cfg, "extract") for f in m["files"] if f.get("kind") == "documents"]
    assert len({f["lang_script"] for f in raw}) == len(LANGS)
    no_index = completed_files(cfg, "extract", kind="documents")
    load_manifests(cfg, "extract", write_index=True)
    with_index = completed_files(cfg, "extract", kind="documents")
    assert all(type(f) is FileEntry for f in with_index) and no_index == with_index == raw
    for kwargs in ({}, {"files_per_entry": 2, "params": {"gen": 0}, "first_params": {"languages": {"x": 1}}}):
        old = _plan_view(_old_work_sized_tasks("filter", raw, cfg, **kwargs), cfg.output)
        assert len(old) > 5
        assert _plan_view(work_sized_tasks("filter", with_index, cfg, **kwargs), cfg.output) == old
        assert _plan_view(work_sized_tasks("filter", no_index, cfg, **kwargs), cfg.output) == old
        assert _plan_view(work_sized_tasks("filter", raw, cfg, **kwargs), cfg.output) == old  # dicts still work
    # removed files and every kind, in task order, as before
    every = [f for _, m in iter_manifests(cfg, "extract") for f in m["files"]]
    assert completed_files(cfg, "extract") == every


def test_version_1_index_is_not_trusted(tmp_path):
    """An index of the previous version (one JSON document) is treated as absent, even when its stamps
    match the listing: every manifest is read, and the driver rewrites the index in the new format."""
    cfg = _run(tmp_path, shards=3)
    stamps = _list_stamps(cfg, "extract")
    lie = {"config_hash": cfg.content_hash(), "files": [], "stage": "extract", "stats": {"docs_in": 999},
           "version": 2}
    blob = json.dumps({"version": 1, "stage": "extract",
                       "manifests": {t: {"stamp": s, "manifest": {**lie, "task_id": t}} for t, s in stamps.items()}})
    storage.publish_bytes(index_url(cfg, "extract"), gzip.compress(blob.encode()))
    tasks._INDEX_CACHE.clear()  # written by another process: this one holds no copy of it
    got = load_manifests(cfg, "extract", write_index=True)
    assert [m["stats"] for m in got.values()] == [{}, {}, {}] and all(m["files"] for m in got.values())
    with gzip.open(tmp_path / "out" / "_index" / "extract.json.gz", "rt") as f:
        lines = f.read().splitlines()
    assert json.loads(lines[0]) == {"stage": "extract", "version": 2} and len(lines) == 4
    assert [json.loads(x)["task_id"] for x in lines[1:]] == sorted(stamps)


@pytest.mark.parametrize("damage", ["truncated", "garbage_line", "out_of_order", "other_stage", "not_gzip"])
def test_damaged_index_is_read_as_far_as_it_is_sound(tmp_path, monkeypatch, damage):
    cfg = _run(tmp_path, shards=6)
    truth = load_manifests(cfg, "extract", write_index=True)
    path = tmp_path / "out" / "_index" / "extract.json.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    if damage == "truncated":
        blob = gzip.compress(b"".join(lines))[:-40]
    elif damage == "garbage_line":
        blob = gzip.compress(b"".join(lines[:3] + [b"{not json\n"] + lines[3:]))
    elif damage == "out_of_order":
        blob = gzip.compress(b"".join([lines[0], lines[4]] + lines[1:4] + lines[5:]))
    elif damage == "other_stage":
        blob = gzip.compress(b"".join([b'{"stage":"filter","version":2}\n'] + lines[1:]))
    else:
        blob = b"".join(lines)
    path.write_bytes(blob)
    monkeypatch.setattr(tasks, "_INDEX_CACHE", {})  # damaged behind this process's back: no copy of it here
    reads = []
    real = storage.read_json
    monkeypatch.setattr(storage, "read_json", lambda url, opts=None: reads.append(url) or real(url, opts))
    assert load_manifests(cfg, "extract") == truth
    assert 0 < len(reads) <= len(truth)  # the damaged part is read from the manifests themselves
    reads.clear()
    load_manifests(cfg, "extract", write_index=True)  # the driver repairs it
    assert load_manifests(cfg, "extract") == truth
    reads.clear()
    assert load_manifests(cfg, "extract") == truth and reads == []


def test_index_is_streamed_not_parsed_whole(tmp_path):
    """Reading an index of N manifests holds about one manifest at a time: the traced peak stays far below
    the index's JSON size (parsing it whole, as the version-1 reader did, peaks above it)."""
    cfg = PipelineConfig(output=str(tmp_path / "out"))
    rng = random.Random(1)
    files = []
    for i in range(200):  # one shared set of files: the manifests' content is what the index holds
        url = storage.join(cfg.output, f"extract/lang_script=l{i:03d}_Latn/x.parquet")
        files.append({**storage.publish_bytes(url, rng.randbytes(8)), "kind": "documents",
                      "lang_script": f"l{i:03d}_Latn", "rows": i + 1})
    n = 300
    for s in range(n):
        _publish(cfg, "extract", f"{s:05d}", files, docs_in=s)
    load_manifests(cfg, "extract", write_index=True)
    whole = len(gzip.decompress((tmp_path / "out" / "_index" / "extract.json.gz").read_bytes()))
    assert whole > 5_000_000

    def consume() -> int:
        count = 0
        for _, m in iter_manifests(cfg, "extract"):
            count += len(m["files"])
        return count

    tracemalloc.start()
    try:
        assert consume() == n * len(files)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole / 5, (peak, whole)


def test_completed_files_entries_are_compact(tmp_path):
    """~21 million extract files at 90,000 shards: the planners' entries must cost far less than dicts
    (~850 bytes each with 64-hex sha256 strings)."""
    cfg = _run(tmp_path, shards=60, seed=3)
    load_manifests(cfg, "extract", write_index=True)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        files = completed_files(cfg, "extract", kind="documents")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    paths = sum(len(f["path"]) + 49 for f in files)  # the path strings a task's inputs need anyway
    assert len(files) > 200
    assert (held - paths) / len(files) < 260, (held, paths, len(files))
