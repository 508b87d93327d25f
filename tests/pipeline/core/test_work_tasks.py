"""Tasks sized by work (pipeline/core/tasks.py: plan_work_groups, work_sized_tasks) and the manifest index
(load_manifests): deterministic grouping, caps respected, a stale index never trusted, one read per
stage instead of one per manifest."""

from __future__ import annotations

import json
import random

import pytest

from babelsieve.pipeline.core import storage, tasks
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.tasks import (
    index_url,
    inputs_by_language,
    load_manifests,
    manifest_url,
    plan_work_groups,
    publish_manifest,
    work_sized_tasks,
)


def _entries(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for lang, n_files in (("aaa_Latn", 1), ("eng_Latn", 40), ("rus_Cyrl", 7), ("zzz_Xxxx", 2), ("deu_Latn", 15)):
        for i in range(n_files):
            out.append({"path": f"/o/extract/lang_script={lang}/{i:05d}.parquet", "lang_script": lang,
                        "rows": rng.randint(1, 900), "bytes": rng.randint(100, 10_000)})
    return out


def test_grouping_is_a_function_of_the_set_of_files():
    entries = _entries()
    a = plan_work_groups(entries, 2000, 1 << 40, 10)
    shuffled = entries[:]
    random.Random(5).shuffle(shuffled)
    b = plan_work_groups(shuffled, 2000, 1 << 40, 10)
    assert [[e["path"] for e in g] for g in a] == [[e["path"] for e in g] for g in b]
    flat = [e for g in a for e in g]
    assert sorted(e["path"] for e in flat) == sorted(e["path"] for e in entries)  # every file once
    assert [(e["lang_script"], e["path"]) for e in flat] == sorted((e["lang_script"], e["path"]) for e in entries)
    for g in a[:-1]:  # a group closes at the file that reaches a target, never before
        docs = sum(e["rows"] for e in g)
        assert len(g) == 10 or docs >= 2000
        assert len(g) == 10 or sum(e["rows"] for e in g[:-1]) < 2000
    assert all(len(g) <= 10 for g in a)
    # long-tail languages share a task; the big one is split
    assert any(len({e["lang_script"] for e in g}) > 1 for g in a)
    assert sum(1 for g in a if any(e["lang_script"] == "eng_Latn" for e in g)) > 1


def test_bytes_target_and_a_file_bigger_than_the_target():
    entries = [{"path": f"p{i}", "lang_script": "x", "rows": 1, "bytes": b} for i, b in enumerate([5, 500, 5, 5])]
    groups = plan_work_groups(entries, 10**9, 100, 1000)
    assert [[e["path"] for e in g] for g in groups] == [["p0", "p1"], ["p2", "p3"]]  # never split a file


def test_work_sized_tasks_carry_languages_and_content(tmp_path):
    cfg = PipelineConfig(output=str(tmp_path), tasks={"target_documents": 1500, "max_input_files": 6})
    entries = [{**e, "sha256": "0" * 64} for e in _entries()]
    tasks = work_sized_tasks("filter", entries, cfg)
    assert [t.task_id for t in tasks] == [f"{i:06d}" for i in range(len(tasks))]
    for t in tasks:
        assert len(t.inputs) <= 6 and len(t.params["lang_scripts"]) == len(t.inputs)
        by_lang = inputs_by_language(t)
        assert [lang for lang, _ in by_lang] == sorted({lang for lang, _ in by_lang})  # one run per language
        assert sum(len(u) for _, u in by_lang) == len(t.inputs)
    # a changed input's recorded content changes only the identity of the task holding it
    changed = [dict(e) for e in entries]
    changed[3]["sha256"] = "1" * 64
    again = work_sized_tasks("filter", changed, cfg)
    diff = [a.task_id for a, b in zip(tasks, again, strict=True) if a.identity(cfg.output) != b.identity(cfg.output)]
    assert len(diff) == 1


def _write_manifests(cfg: PipelineConfig, n: int) -> None:
    for i in range(n):
        publish_manifest(cfg, {"stage": "extract", "task_id": f"{i:05d}", "inputs": [], "params": {},
                               "config_hash": cfg.content_hash(), "files": [], "stats": {"docs_in": i}})


def test_manifest_index_replaces_one_read_per_manifest(tmp_path, monkeypatch):
    cfg = PipelineConfig(output=str(tmp_path / "out"))
    _write_manifests(cfg, 30)
    first = load_manifests(cfg, "extract", write_index=True)
    assert len(first) == 30 and storage.exists(index_url(cfg, "extract"))
    reads = []
    real = storage.read_json
    monkeypatch.setattr(storage, "read_json", lambda url, opts=None: reads.append(url) or real(url, opts))
    fetched = []  # the index opened from storage (it is streamed: storage.filesystem(url) then open)
    real_fs = storage.filesystem
    monkeypatch.setattr(storage, "filesystem", lambda url, opts=None: (
        fetched.append(url) if url.endswith(".json.gz") else None) or real_fs(url, opts))
    again = load_manifests(cfg, "extract")
    assert again == first and reads == []  # everything from the listing and the index
    assert fetched == []  # ... and the index this process just wrote is not fetched again
    monkeypatch.setattr(tasks, "_INDEX_CACHE", {})  # another process reads it: one GET
    assert load_manifests(cfg, "extract") == first and fetched == [index_url(cfg, "extract")] and reads == []
    # no manifest listed (a stage that never ran): its index is not even asked for
    fetched.clear()
    assert load_manifests(cfg, "filter") == {} and fetched == []
    # a manifest rewritten behind the index's back (a rerun task) is read again, never served stale
    publish_manifest(cfg, {"stage": "extract", "task_id": "00007", "inputs": [], "params": {},
                           "config_hash": cfg.content_hash(), "files": [], "stats": {"docs_in": 70}})
    third = load_manifests(cfg, "extract")
    assert third["00007"]["stats"]["docs_in"] == 70 and reads == [manifest_url(cfg, "extract", "00007")]
    # a deleted manifest is gone even though the index still lists it
    storage.remove(manifest_url(cfg, "extract", "00003"), recursive=False)
    assert "00003" not in load_manifests(cfg, "extract")


def test_corrupt_index_or_manifest(tmp_path, monkeypatch):
    cfg = PipelineConfig(output=str(tmp_path / "out"))
    _write_manifests(cfg, 3)
    load_manifests(cfg, "extract", write_index=True)
    storage.publish_bytes(index_url(cfg, "extract"), b"not gzip")  # an unreadable index: manifests are read
    monkeypatch.setattr(tasks, "_INDEX_CACHE", {})  # as another process, which never wrote the index, sees it
    assert len(load_manifests(cfg, "extract")) == 3
    (tmp_path / "out" / "_manifests" / "extract" / "00001.json").write_text(json.dumps([1, 2]))
    with pytest.raises(storage.CorruptFileError):  # a broken manifest is reported, not skipped
        load_manifests(cfg, "extract")
