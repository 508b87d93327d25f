"""The classify stage (learned quality scores), ``refilter`` on its scores, model fetching/caching, and
``babelsieve classifier train/eval``.

Models are trained in the tests (seconds): real pages of the filter fixture (positives) against word salad
(the same pages' words shuffled) and boilerplate (short menu/footer lines of the same pages), so both the
vocabulary and the word bigrams carry signal. Scores are compared with fastText's own binding, bit for bit.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from babelsieve.pipeline.core import storage  # noqa: E402
from babelsieve.pipeline.core.config import ConfigError, PipelineConfig  # noqa: E402
from babelsieve.pipeline.core.documents import FINAL_SCHEMA, language_dir, table_from_rows, write_table  # noqa: E402
from babelsieve.pipeline.core.tasks import completed_files, execute_task, manifest_url  # noqa: E402
from babelsieve.pipeline.stages import documents_input, stage_class  # noqa: E402

from support.classifiers import LANGS, boilerplate, fixture_pages, train_model, training_sets, word_salad  # noqa: E402,F401

BUCKETS = [0.2, 0.5, 0.8]


def binding_scores(model_path: Path, lines: list[str], label: str = "__label__hq") -> np.ndarray:
    """fastText's own predict(line, k=-1) probability of ``label`` per line."""
    import fasttext

    m = fasttext.load_model(str(model_path))
    out = []
    for line in lines:
        labels, probs = m.predict(line.rstrip("\n"), k=-1)
        out.append(dict(zip(labels, probs, strict=True)).get(label, 0.0))
    return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("quality-models")
    pos, neg, pages, junk = training_sets()
    return {"softmax": train_model(d / "softmax.bin", pos, neg),
            "ova": train_model(d / "ova.bin", pos, neg, loss="ova", epoch=20, lr=0.5, dim=24, minn=2, maxn=4),
            "pages": pages, "junk": junk, "dir": d}


def _fake_extract(config: PipelineConfig, label: str, docs: list[dict], task_id: str = "00000") -> None:
    rows = [{"text": d["text"], "id": d["id"], "url": f"https://example.org/{d['id']}", "language": label[:3],
             "language_script": label[4:], "lang_script": label, "language_score": 0.99, "minhash_cluster_size": 1}
            for d in docs]
    entry = write_table(language_dir(storage.join(config.output, "extract"), label) + f"/{task_id}.parquet",
                        table_from_rows(rows), config.storage_options)
    storage.publish_json(
        manifest_url(config, "extract", f"{label}-{task_id}"),
        {"version": 2, "stage": "extract", "task_id": f"{label}-{task_id}", "inputs": [], "params": {},
         "config_hash": config.content_hash(), "files": [{**entry, "kind": "documents", "lang_script": label,
                                                           "path": entry["path"]}], "stats": {}},
        config.storage_options,
    )


def _run_stage(config: PipelineConfig, name: str) -> list[dict]:
    stage = stage_class(name)(config)
    return [execute_task(t.to_dict(), config.model_dump_json()) for t in stage.plan()]


def _config(out: Path, classifiers: list[dict], stages=("extract", "classify", "finalize"),
            tasks: dict | None = None) -> PipelineConfig:
    cfg = PipelineConfig.model_validate({"output": str(out), "stages": list(stages),
                                         "classify": {"classifiers": classifiers}, "tasks": tasks or {}})
    storage.publish_json(storage.join(cfg.output, "_run.json"),
                         {"config_hash": cfg.content_hash(), "config": cfg.model_dump(mode="json")})
    return cfg


def _docs_by_lang(models) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in models["pages"] + models["junk"]:
        out.setdefault(d["lang_script"], []).append(d)
    return out


def _all_rows(files: list[dict]) -> pa.Table:
    return pa.concat_tables([pq.read_table(f["path"]) for f in files], promote_options="default")


def _two_classifiers(models) -> list[dict]:
    return [
        {"name": "web", "model": str(models["softmax"]), "label": "__label__hq", "threshold": 0.5,
         "thresholds": {"por_Latn": 0.9}, "buckets": BUCKETS},
        {"name": "deu_ova", "model": str(models["ova"]), "label": "hq", "languages": ["deu_Latn"],
         "threshold": 0.5, "max_chars": 300, "lowercase": True, "newlines": "remove", "strip": True},
    ]


def test_stage_scores_every_document_as_fasttext_thresholds_and_buckets(models, tmp_path):
    from babelsieve.pipeline.stages.classify import STATS_SCHEMA, prepare_texts

    cfg = _config(tmp_path / "out", _two_classifiers(models))
    by_lang = _docs_by_lang(models)
    for lang, docs in by_lang.items():
        _fake_extract(cfg, lang, docs)
    res = _run_stage(cfg, "classify")
    # tasks sized by work: the three languages (~270 documents) share one task at the default target
    assert len(res) == 1 and all(r["status"] == "done" for r in res)
    assert res[0]["stats"]["languages"].keys() == by_lang.keys()
    kept = _all_rows(completed_files(cfg, "classify", kind="documents"))
    removed_files = completed_files(cfg, "classify", kind="removed")
    removed = _all_rows(removed_files)
    assert kept.num_rows + removed.num_rows == sum(len(v) for v in by_lang.values())
    assert kept.num_rows > 20 and removed.num_rows > 20  # both decisions happen on these documents
    every = pa.concat_tables([kept, removed.drop_columns(["removal_reason"])])
    texts = every.column("text").to_pylist()
    langs = every.column("lang_script").to_pylist()
    web = np.asarray(every.column("quality_web").to_pylist(), np.float32)
    # every document scored, equal (float32, bit for bit) to the binding on the same prepared line
    assert np.array_equal(web, binding_scores(models["softmax"], prepare_texts(texts)))
    ova = every.column("quality_deu_ova").to_pylist()
    de = [i for i, lang in enumerate(langs) if lang == "deu_Latn"]
    assert all(ova[i] is None for i in range(len(langs)) if i not in de)  # other languages: not scored
    want = binding_scores(models["ova"], prepare_texts([texts[i] for i in de], 300, True, "remove", True))
    assert np.array_equal(np.asarray([ova[i] for i in de], np.float32), want)
    # thresholds: per-language override for Portuguese, the first classifier of the list decides
    thr = np.array([0.9 if lang == "por_Latn" else 0.5 for lang in langs], np.float32)
    n_kept = kept.num_rows
    assert (web[:n_kept] >= thr[:n_kept]).all()
    reasons = removed.column("removal_reason").to_pylist()
    for i, r in enumerate(reasons):
        j = n_kept + i
        if web[j] < thr[j]:
            assert r == "web:below_threshold"
        else:
            assert r == "deu_ova:below_threshold" and langs[j] == "deu_Latn" and ova[j] < np.float32(0.5)
    kept_de_ova = [ova[i] for i in de if i < n_kept]
    assert all(s >= np.float32(0.5) for s in kept_de_ova)
    assert {f["reason"] for f in removed_files} == {"web:below_threshold", "deu_ova:below_threshold"}
    assert all("/removed/classify/" + f["reason"].split(":")[0] + "/" in f["path"] for f in removed_files)
    # buckets: how many cut points are <= the score; column right after its score
    bucket = np.asarray(every.column("quality_web_bucket").to_pylist())
    assert np.array_equal(bucket, np.searchsorted(np.float32(BUCKETS), web, side="right"))
    assert set(bucket.tolist()) >= {0, 3}
    assert every.column_names.index("quality_web_bucket") == every.column_names.index("quality_web") + 1
    assert "quality_deu_ova_bucket" not in every.column_names
    # statistics per language: histogram and buckets add up to the documents, kept share per bucket
    st = _all_rows(completed_files(cfg, "classify", kind="stats"))
    assert st.schema.equals(STATS_SCHEMA)
    st = st.to_pylist()
    for lang, docs in by_lang.items():
        hist = [r for r in st if r["lang_script"] == lang and r["classifier"] == "web" and r["what"] == "score"]
        assert sum(r["documents"] for r in hist) == len(docs)
        bk = [r for r in st if r["lang_script"] == lang and r["classifier"] == "web" and r["what"] == "bucket"]
        assert [r["bin"] for r in bk] == [0, 1, 2, 3] and sum(r["documents"] for r in bk) == len(docs)
        if lang == "deu_Latn":
            assert all(r["kept"] == 0 for r in bk[:2])  # buckets below the 0.5 threshold keep nothing
    assert not [r for r in st if r["classifier"] == "deu_ova" and r["lang_script"] != "deu_Latn"]
    # the task stats (manifests) count the removals per reason
    assert sum(sum(r["stats"]["removed"].values()) for r in res) == removed.num_rows
    # rerun: cached; finalize keeps the quality columns after FineWeb2's and ours
    assert all(r["status"] == "cached" for r in _run_stage(cfg, "classify"))
    fin = _all_rows(completed_files(cfg, "finalize", kind="documents") or
                    [f for r in _run_stage(cfg, "finalize") for f in r["files"]])
    assert fin.column_names == [f.name for f in FINAL_SCHEMA] + ["quality_web", "quality_web_bucket",
                                                                "quality_deu_ova"]
    assert fin.num_rows == kept.num_rows
    # the report: kept share per bucket and score histogram per language
    from babelsieve.pipeline.report.html import render
    from babelsieve.pipeline.report.stats import collect_run_stats

    stats = collect_run_stats(cfg.output)
    q = stats["quality_buckets"].filter(classifier="web")
    assert q["documents"].sum() == len(texts) and q["kept"].sum() <= kept.num_rows
    assert q.filter(lang_script="deu_Latn", bucket=0)["kept_share"].item() == 0.0
    html = render(stats, [], None, cfg.output)  # the report's HTML (plots left out: matplotlib is slow)
    assert "Quality classifiers: kept share per bucket" in html and "score histogram per language" in html


# ------------------------------------------------------------------ tasks sized by work (several languages a task)
SHARED_TARGET = 150  # documents per classify task: deu (2 files) + por's first file, then por's second + spa


def _two_shards_per_language(cfg: PipelineConfig, models) -> dict[str, list[dict]]:
    """Each language's documents cut into two extract files (as two shards would write them)."""
    by_lang = _docs_by_lang(models)
    for lang, docs in by_lang.items():
        half = len(docs) // 2
        _fake_extract(cfg, lang, docs[:half], "00000")
        _fake_extract(cfg, lang, docs[half:], "00001")
    return by_lang


def _expected_decisions(models, by_lang: dict[str, list[dict]]) -> dict[str, tuple]:
    """id -> (language, web score, deu_ova score or None, removal reason or None), computed with fastText's
    binding and :func:`_two_classifiers`' thresholds: what any plan must give, document by document."""
    from babelsieve.pipeline.stages.classify import prepare_texts

    out = {}
    for lang, docs in by_lang.items():
        texts = [d["text"] for d in docs]
        web = binding_scores(models["softmax"], prepare_texts(texts))
        ova = (binding_scores(models["ova"], prepare_texts(texts, 300, True, "remove", True)) if lang == "deu_Latn"
               else [None] * len(docs))
        for d, w, o in zip(docs, web, ova, strict=True):
            reason = None
            if w < np.float32(0.9 if lang == "por_Latn" else 0.5):
                reason = "web:below_threshold"
            elif o is not None and o < np.float32(0.5):
                reason = "deu_ova:below_threshold"
            out[d["id"]] = (lang, float(w), None if o is None else float(o), reason)
    return out


def _decisions(cfg: PipelineConfig) -> dict[str, tuple]:
    """id -> (language, web score, deu_ova score, removal reason) as the classify outputs hold them."""
    kept = _all_rows(completed_files(cfg, "classify", kind="documents")).to_pylist()
    removed = _all_rows(completed_files(cfg, "classify", kind="removed")).to_pylist()
    out = {}
    for r in kept + removed:
        assert r["id"] not in out  # every document once
        out[r["id"]] = (r["lang_script"], r["quality_web"], r["quality_deu_ova"], r.get("removal_reason"))
    return out


def _summed_stats(cfg: PipelineConfig) -> dict[tuple, tuple[int, int]]:
    """The classify statistics summed over tasks: (language, classifier, what, bin) -> (documents, kept)."""
    out: dict[tuple, tuple[int, int]] = {}
    for r in _all_rows(completed_files(cfg, "classify", kind="stats")).to_pylist():
        key = (r["lang_script"], r["classifier"], r["what"], r["bin"])
        d, k = out.get(key, (0, 0))
        out[key] = (d + r["documents"], k + r["kept"])
    return out


def _tree_digests(root: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix == ".parquet"}


def test_languages_sharing_a_task_get_the_scores_and_decisions_of_one_task_per_file(models, tmp_path):
    """Tasks sized by work: with a high ``tasks.target_documents`` several languages share a classify task
    and Portuguese is split across two tasks, yet every document's scores, buckets and decision, the
    statistics and the report equal those of one task per input file (the plan before tasks were sized by
    work, ``target_documents: 1``) and of fastText's binding."""
    from babelsieve.pipeline.report.stats import collect_run_stats

    per_file = _config(tmp_path / "per_file", _two_classifiers(models), tasks={"target_documents": 1})
    shared = _config(tmp_path / "shared", _two_classifiers(models), tasks={"target_documents": SHARED_TARGET})
    by_lang = _two_shards_per_language(per_file, models)
    _two_shards_per_language(shared, models)
    n_files = 2 * len(by_lang)
    res_file, res_shared = _run_stage(per_file, "classify"), _run_stage(shared, "classify")
    assert len(res_file) == n_files  # one task per input file at target 1
    # at the target: two tasks for six files, each holding two languages (por in both), one file per language
    assert [sorted(r["stats"]["languages"]) for r in res_shared] == [["deu_Latn", "por_Latn"],
                                                                      ["por_Latn", "spa_Latn"]]
    out = Path(shared.output)
    assert sorted(str(p.relative_to(out)) for p in out.glob("classify/*/*.parquet")) == [
        "classify/lang_script=deu_Latn/000000.parquet", "classify/lang_script=por_Latn/000000.parquet",
        "classify/lang_script=por_Latn/000001.parquet", "classify/lang_script=spa_Latn/000001.parquet"]
    stats_files = sorted(p.name for p in out.glob("_stats/classify/*.parquet"))
    assert stats_files == ["000000-deu_Latn.parquet", "000000-por_Latn.parquet", "000001-por_Latn.parquet",
                           "000001-spa_Latn.parquet"]
    assert all(p.stem.rsplit("-", 1)[1] in by_lang for p in out.glob("removed/classify/*/*.parquet"))
    # the task count follows the target: <= the input files, fewer as the target grows
    for target, want in ((1, n_files), (SHARED_TARGET, 2), (10**6, 1)):
        cfg = _config(tmp_path / f"plan{target}", _two_classifiers(models), tasks={"target_documents": target})
        _two_shards_per_language(cfg, models)
        tasks = stage_class("classify")(cfg).plan()
        assert len(tasks) == want, target
        assert all(len(set(t.params["lang_scripts"])) >= 1 and len(t.params["lang_scripts"]) == len(t.inputs)
                   for t in tasks)
    # the same decisions, document by document, as one task per file and as the binding
    want = _expected_decisions(models, by_lang)
    got_file, got_shared = _decisions(per_file), _decisions(shared)
    assert got_shared == got_file == want
    assert {r for *_, r in want.values()} == {None, "web:below_threshold", "deu_ova:below_threshold"}
    assert _summed_stats(shared) == _summed_stats(per_file)
    assert [r["stats"]["docs_in"] for r in res_shared] == [
        sum(f["rows"] for f in completed_files(shared, "extract") if f["path"] in t.inputs)
        for t in stage_class("classify")(shared).plan()]
    assert sum(r["stats"]["docs_out"] for r in res_shared) == sum(r["stats"]["docs_out"] for r in res_file)
    # the report's quality tables are the same
    q_file, q_shared = collect_run_stats(per_file.output), collect_run_stats(shared.output)
    for name in ("quality_scores", "quality_buckets"):
        assert q_shared[name].equals(q_file[name]), name


def test_shared_task_rerun_is_cached_and_a_deleted_file_heals(models, tmp_path):
    cfg = _config(tmp_path / "out", _two_classifiers(models), tasks={"target_documents": SHARED_TARGET})
    _two_shards_per_language(cfg, models)
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["done", "done"]
    out = Path(cfg.output)
    before = _tree_digests(out)
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["cached", "cached"]
    # one language's file of a shared task is lost: that task (only) runs again and writes the same bytes
    (out / "classify/lang_script=deu_Latn/000000.parquet").unlink()
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["done", "cached"]
    assert _tree_digests(out) == before
    # a replaced model re-scores the tasks holding a language it covers: deu_ova scores deu_Latn (task 0) only
    ova = tmp_path / "ova.bin"
    ova.write_bytes(models["ova"].read_bytes())
    clf = _two_classifiers(models)
    clf[1]["model"] = str(ova)
    cfg = _config(tmp_path / "model", clf, tasks={"target_documents": SHARED_TARGET})
    _two_shards_per_language(cfg, models)
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["done", "done"]
    ova.write_bytes(models["softmax"].read_bytes())  # another model (it has the label too) at the same path
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["done", "cached"]


def test_refilter_one_language_of_shared_tasks_leaves_the_others_byte_identical(models, tmp_path):
    """Portuguese shares a task with German and another with Spanish: re-thresholding it rewrites only its
    files (German's and Spanish's are byte-identical), re-decides its rows from the stored scores, keeps the
    manifests' statistics of the other languages, and the next run keeps every classify task."""
    from babelsieve.pipeline.cli.refilter import refilter_command
    from babelsieve.pipeline.core.tasks import load_manifests
    from babelsieve.pipeline.report.stats import collect_run_stats

    model = tmp_path / "copy.bin"
    model.write_bytes(models["softmax"].read_bytes())
    clf = _two_classifiers(models)
    clf[0]["model"] = str(model)
    cfg = _config(tmp_path / "out", clf, tasks={"target_documents": SHARED_TARGET})
    by_lang = _two_shards_per_language(cfg, models)
    _run_stage(cfg, "classify")
    out = Path(cfg.output)
    before = _tree_digests(out)
    first = _decisions(cfg)
    old_stats = {t: m["stats"] for t, m in load_manifests(cfg, "classify").items()}
    model.unlink()  # no re-scoring: the model is gone
    r = CliRunner().invoke(refilter_command, [cfg.output, "-l", "por_Latn", "--set", "classify.web.threshold=0.3"])
    assert r.exit_code == 0, r.output
    after = _tree_digests(out)
    others = {k: v for k, v in before.items() if "por_Latn" not in k}
    assert others and {k: after.get(k) for k in others} == others  # German and Spanish: byte for byte
    assert any(after.get(k) != v for k, v in before.items() if "por_Latn" in k)
    got = _decisions(cfg)
    assert got.keys() == first.keys()
    for doc_id, (lang, web, ova, reason) in got.items():
        assert (web, ova) == first[doc_id][1:3]  # stored scores carried over
        if lang != "por_Latn":
            assert reason == first[doc_id][3]
        else:
            assert reason == (None if web >= np.float32(0.3) else "web:below_threshold")
    assert sum(v[3] is None for v in got.values()) > sum(v[3] is None for v in first.values())
    # the manifests: each file still listed (the readers see every language), statistics re-stated for por only
    manifests = load_manifests(cfg, "classify")
    listed = {str(Path(f["path"]).relative_to(out)) for m in manifests.values() for f in m["files"]}
    assert listed == {k for k in after if not k.startswith("extract/")}
    por_kept = {k: v for k, v in got.items() if v[0] == "por_Latn" and v[3] is None}
    for task_id, m in manifests.items():
        st, old = m["stats"], old_stats[task_id]
        assert st["docs_in"] == old["docs_in"]
        assert {k: v for k, v in st["languages"].items() if k != "por_Latn"} == {
            k: v for k, v in old["languages"].items() if k != "por_Latn"}
        assert st["docs_out"] == sum(st["languages"].values())
        assert sum(st["removed"].values()) == st["docs_in"] - st["docs_out"]
    assert sum(m["stats"]["languages"]["por_Latn"] for m in manifests.values()) == len(por_kept)
    # the report reads it: per-language documents unchanged, Portuguese's kept share up
    q = collect_run_stats(cfg.output)["quality_buckets"].filter(classifier="web")
    assert q.filter(lang_script="por_Latn")["documents"].sum() == len(by_lang["por_Latn"])
    assert q.filter(lang_script="por_Latn")["kept"].sum() == len(por_kept)
    # the next run (its plan hashes the model, so it is put back): every classify task is current, nothing rewritten
    model.write_bytes(models["softmax"].read_bytes())
    assert [r["status"] for r in _run_stage(cfg, "classify")] == ["cached", "cached"]
    assert _tree_digests(out) == after
    # a language the run does not have
    r = CliRunner().invoke(refilter_command, [cfg.output, "-l", "fra_Latn", "--set", "classify.web.threshold=0.3"])
    assert r.exit_code != 0 and "no classify-stage output for fra_Latn" in r.output


def test_classify_goes_where_it_stands_in_the_stages(models, tmp_path):
    """Between filter and finalize (the default place) finalize reads classify's output and classify reads
    filter's; before filter, filter reads classify's."""
    clf = [{"name": "web", "model": str(models["softmax"]), "label": "__label__hq"}]
    cfg = _config(tmp_path / "a", clf, ("extract", "filter", "classify", "finalize"))
    assert [documents_input(cfg, s) for s in ("filter", "classify", "finalize")] == ["extract", "filter", "classify"]
    _fake_extract(cfg, "deu_Latn", _docs_by_lang(models)["deu_Latn"])
    _run_stage(cfg, "filter")
    filtered = sum(f["rows"] for f in completed_files(cfg, "filter", kind="documents"))
    res = _run_stage(cfg, "classify")
    assert res[0]["stats"]["docs_in"] == filtered and res[0]["stats"]["docs_out"] == filtered  # no threshold
    fin = [f for r in _run_stage(cfg, "finalize") for f in r["files"]]
    assert "quality_web" in pq.read_table(fin[0]["path"]).column_names
    before = _config(tmp_path / "b", clf, ("extract", "dedup", "classify", "filter", "finalize"))
    assert [documents_input(before, s) for s in ("classify", "filter", "finalize")] == [
        "dedup_annotate", "classify", "filter"]


def test_refilter_rethresholds_from_stored_scores_without_the_model(models, tmp_path):
    from babelsieve.pipeline.cli.refilter import refilter_command

    model = tmp_path / "copy.bin"
    model.write_bytes(models["softmax"].read_bytes())
    clf = [{"name": "web", "model": str(model), "label": "__label__hq", "threshold": 0.5, "buckets": BUCKETS}]
    cfg = _config(tmp_path / "out", clf)
    docs = _docs_by_lang(models)["spa_Latn"]
    _fake_extract(cfg, "spa_Latn", docs)
    _run_stage(cfg, "classify")
    first = _all_rows(completed_files(cfg, "classify", kind="documents") + completed_files(cfg, "classify", "removed"))
    scores = dict(zip(first.column("id").to_pylist(), first.column("quality_web").to_pylist(), strict=True))
    model.unlink()  # re-deciding must not need the model: any attempt to score would fail now
    r = CliRunner().invoke(refilter_command, [cfg.output, "-l", "spa_Latn", "--set", "classify.web.threshold=0.95",
                                              "--set", "classify.web.buckets=[0.5]"])
    assert r.exit_code == 0, r.output
    kept = _all_rows(completed_files(cfg, "classify", kind="documents"))
    removed = _all_rows(completed_files(cfg, "classify", kind="removed"))
    assert kept.num_rows + removed.num_rows == len(docs)
    assert all(s >= np.float32(0.95) for s in kept.column("quality_web").to_pylist())
    assert all(s < np.float32(0.95) for s in removed.column("quality_web").to_pylist())
    both = pa.concat_tables([kept, removed.drop_columns(["removal_reason"])])
    # the stored scores are carried over unchanged; buckets recomputed from them with the new cut point
    assert dict(zip(both.column("id").to_pylist(), both.column("quality_web").to_pylist(), strict=True)) == scores
    assert both.column("quality_web_bucket").to_pylist() == [int(s >= np.float32(0.5))
                                                              for s in both.column("quality_web").to_pylist()]
    st = _all_rows(completed_files(cfg, "classify", kind="stats")).to_pylist()
    assert [r["bin"] for r in st if r["what"] == "bucket"] == [0, 1]
    audit = (Path(cfg.output) / "_refilter" / "spa_Latn.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["overrides"] == {"classify.web.threshold": 0.95, "classify.web.buckets": [0.5]}
    # bad keys are refused, naming them
    r = CliRunner().invoke(refilter_command, [cfg.output, "-l", "spa_Latn", "--set", "classify.nope.threshold=0.1"])
    assert r.exit_code != 0 and "nope" in r.output
    r = CliRunner().invoke(refilter_command, [cfg.output, "-l", "spa_Latn", "--set", "classify.web.threshold=2"])
    assert r.exit_code != 0 and "threshold" in r.output


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def http_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    _CountingHandler.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(_CountingHandler, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}", _CountingHandler.requests
    srv.shutdown()
    srv.server_close()


def test_url_model_is_cached_verified_and_a_corrupted_cache_refetched(models, http_server, tmp_path, monkeypatch):
    import hashlib

    from babelsieve.pipeline.stages import classify as classify_stage
    from babelsieve.pipeline.stages.classify import load_classifier, prepare_texts, resolve_models

    root, base, requests = http_server
    (root / "q.bin").write_bytes(models["softmax"].read_bytes())
    digest = hashlib.sha256(models["softmax"].read_bytes()).hexdigest()
    monkeypatch.setenv("BABELSIEVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(classify_stage, "_MODELS", {})
    clf = {"name": "web", "model": f"{base}/q.bin", "label": "__label__hq", "sha256": digest}
    cfg = _config(tmp_path / "out", [clf])
    assert resolve_models(cfg) == {"web": digest}
    assert resolve_models(cfg) == {"web": digest}
    assert requests == ["/q.bin"]  # fetched once, then served from the cache
    cached = list((tmp_path / "cache" / "models" / "url").rglob("q.bin"))
    assert len(cached) == 1 and json.loads(cached[0].with_name("q.bin.json").read_text())["sha256"] == digest
    # a corrupted cache is detected (re-hashed against its record) and fetched again
    data = bytearray(cached[0].read_bytes())
    data[-100] ^= 0xFF
    cached[0].write_bytes(bytes(data))
    monkeypatch.setattr(classify_stage, "_MODELS", {})
    lines = prepare_texts([p["text"] for p in models["pages"][:30]])
    scores = load_classifier(cfg.classify.classifiers[0]).scores(lines)
    assert requests == ["/q.bin", "/q.bin"]
    assert np.array_equal(scores, binding_scores(models["softmax"], lines))
    # the server now serves another file: the expected sha256 refuses it, naming the key; nothing cached
    (root / "q.bin").write_bytes(models["ova"].read_bytes())
    for p in cached[0].parent.iterdir():
        p.unlink()
    monkeypatch.setattr(classify_stage, "_MODELS", {})
    with pytest.raises(ConfigError, match=r"classify\.classifiers\[0\]\.model.*sha256"):
        resolve_models(cfg)
    assert not cached[0].exists()
    # the same through the stage's plan (the driver resolves the models before any task runs)
    _fake_extract(cfg, "deu_Latn", _docs_by_lang(models)["deu_Latn"][:5])
    with pytest.raises(ConfigError, match=r"classify\.classifiers\[0\]\.model"):
        stage_class("classify")(cfg).plan()


def test_adversarial_inputs_and_bad_models(models, tmp_path, monkeypatch):
    from babelsieve.pipeline.stages import classify as classify_stage
    from babelsieve.pipeline.stages.classify import QualityModel, prepare_texts, resolve_models

    monkeypatch.setattr(classify_stage, "_MODELS", {})
    m = QualityModel(str(models["softmax"]), "__label__hq")
    rnd = random.Random(3)
    page = models["pages"][0]["text"]
    words = page.split()
    huge = " ".join(rnd.choice(words) for _ in range(400_000))  # ~3 MB, one line
    texts = ["", " ", "\n\n\n", None, "\0\0", "__label__hq __label__cc", huge, "é" * 50_000, page * 30]
    lines = prepare_texts(texts)
    assert np.array_equal(m.scores(lines), binding_scores(models["softmax"], lines))
    # a file that is not a fastText model, a label the model lacks: config errors naming the key
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"<html>404 not found</html>" * 10)
    cfg = _config(tmp_path / "o1", [{"name": "a", "model": str(models["softmax"]), "label": "__label__hq"},
                                    {"name": "b", "model": str(junk), "label": "__label__hq"}])
    with pytest.raises(ConfigError, match=r"classify\.classifiers\[1\]\.model"):
        resolve_models(cfg)
    cfg = _config(tmp_path / "o2", [{"name": "a", "model": str(models["softmax"]), "label": "__label__good"}])
    with pytest.raises(ConfigError, match=r"classify\.classifiers\[0\]\.label.*__label__good.*__label__hq"):
        resolve_models(cfg)
    cfg = _config(tmp_path / "o3", [{"name": "a", "model": str(tmp_path / "missing.bin"), "label": "hq"}])
    with pytest.raises(ConfigError, match=r"classify\.classifiers\[0\]\.model.*not found"):
        resolve_models(cfg)
    # config validation names the key
    from babelsieve.pipeline.core.config import load_config

    yaml = tmp_path / "c.yaml"
    yaml.write_text("stages: [extract, classify]\nclassify:\n  classifiers:\n"
                    "    - {name: a, model: m.bin, label: hq, buckets: [0.5, 0.2]}\n")
    with pytest.raises(ConfigError, match=r"classify\.classifiers\.0\.buckets"):
        load_config(yaml)
    yaml.write_text("stages: [extract, filter]\nclassify:\n  classifiers:\n    - {name: a, model: m.bin, label: hq}\n")
    with pytest.raises(ConfigError, match="'classify' is not in stages"):
        load_config(yaml)
    yaml.write_text("stages: [extract, classify]\nclassify:\n  classifiers:\n"
                    "    - {name: A-1, model: m.bin, label: hq, threshold: 1.5}\n")
    with pytest.raises(ConfigError, match=r"classifiers\.0\.name(.|\n)*classifiers\.0\.threshold"):
        load_config(yaml)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def test_classifier_train_and_eval_cli(models, tmp_path):
    pos, neg, pages, junk = training_sets(seed=5)
    langs = [lang for lang in LANGS for _ in range(0, len(fixture_pages()[lang]), 2)]
    p = _jsonl(tmp_path / "pos.jsonl.gz",
               [{"text": t, "lang_script": lang} for t, lang in zip(pos, langs, strict=True)])
    n_rows = [{"text": t, "lang_script": LANGS[i % 3]} for i, t in enumerate(neg)]
    pq.write_table(pa.Table.from_pylist(n_rows), tmp_path / "neg.parquet")
    exe = str(Path(sys.executable).with_name("babelsieve"))
    args = ["--positive", str(p), "--negative", str(tmp_path / "neg.parquet"), "--dim", "16", "--bucket", "20000",
            "--epoch", "30", "--lr", "1.0", "--seed", "7"]
    r1 = subprocess.run([exe, "classifier", "train", *args, "--out", str(tmp_path / "m1.bin")], capture_output=True,
                        text=True, timeout=120)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([exe, "classifier", "train", *args, "--out", str(tmp_path / "m2.bin")], capture_output=True,
                        text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert (tmp_path / "m1.bin").read_bytes() == (tmp_path / "m2.bin").read_bytes()  # same data + seed: same model
    meta = json.loads((tmp_path / "m1.bin.json").read_text())
    assert meta["fasttext"]["wordNgrams"] == 2 and meta["fasttext"]["seed"] == 7
    held = meta["heldout"]["all"]
    assert held["positives"] > 5 and held["negatives"] > 5 and held["roc_auc"] > 0.7
    # eval on the documents held out of both models: the numbers, per language
    s_pos = _jsonl(tmp_path / "sp.jsonl.gz", pages)
    s_neg = _jsonl(tmp_path / "sn.jsonl.gz", junk)
    r = subprocess.run([exe, "classifier", "eval", str(tmp_path / "m1.bin"), "-p", str(s_pos), "-n", str(s_neg),
                        "--threshold", "0.5", "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res) == {"all", *LANGS}
    assert res["all"]["positives"] == len(pages) and res["all"]["negatives"] == len(junk)
    assert res["all"]["roc_auc"] > 0.7 and 0 < res["all"]["f1"] <= 1
    # --language keeps one language's rows
    r = subprocess.run([exe, "classifier", "eval", str(tmp_path / "m1.bin"), "-p", str(s_pos), "-n", str(s_neg),
                        "-l", "deu_Latn", "--json"], capture_output=True, text=True, timeout=120)
    assert set(json.loads(r.stdout)) == {"all", "deu_Latn"}
    # a label the model does not have
    r = subprocess.run([exe, "classifier", "eval", str(tmp_path / "m1.bin"), "-p", str(s_pos), "-n", str(s_neg),
                        "--label", "__label__x"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "--label" in r.stderr


def test_roc_auc_and_metrics():
    from babelsieve.pipeline.cli.classifier import metrics, roc_auc

    pos = np.array([True, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2], np.float32), pos) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8], np.float32), pos) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5], np.float32), pos) == 0.5  # ties: half credit
    assert roc_auc(np.array([0.5, 0.5], np.float32), np.array([True, True])) is None
    m = metrics(np.array([0.9, 0.4, 0.6, 0.1], np.float32), pos, 0.5)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, 0.5, 0.5)


def test_the_commented_example_in_fineweb2_yaml_is_a_valid_config():
    import yaml

    from babelsieve.pipeline.core.config import bundled_config_path

    text = bundled_config_path("fineweb2").read_text()
    lines = text.split("\n")
    start = lines.index("# classify:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    data = yaml.safe_load(text)
    data["stages"] = ["extract", "dedup", "filter", "classify", "finalize"]
    data.update(yaml.safe_load("\n".join(block)))
    cfg = PipelineConfig.model_validate(data)
    assert [c.name for c in cfg.classify.classifiers] == ["hq"] and cfg.classify.classifiers[0].buckets


def test_cli_run_then_refilter_then_rerun_keeps_scores_and_redoes_finalize(models, tmp_path):
    """The user's path: `babelsieve run` with classify, `refilter` a threshold, `run` again: classify's tasks
    are current (not re-scored), finalize is redone with the new decisions."""
    from support.data import BABELSIEVE, SAMPLE_WARC

    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages: [extract, filter, classify, finalize]\nlangid: {backend: none}\n"
                   "extract: {url_filter: false}\nclassify:\n  classifiers:\n"
                   f"    - {{name: web, model: {models['softmax']}, label: __label__hq, threshold: 0.8, "
                   "buckets: [0.5, 0.9]}\n")
    out = tmp_path / "out"
    run = [BABELSIEVE, "run", str(cfg), "--input", str(SAMPLE_WARC), "--output", str(out),
           "--set", "engine_options.workers=1"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    def finalize_rows() -> pa.Table:
        return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("finalize/**/*.parquet"))])

    before = finalize_rows()
    assert before.column_names[-3:] == ["lang_script", "quality_web", "quality_web_bucket"]
    removed = sum(pq.read_metadata(p).num_rows for p in out.glob("removed/classify/web/*.parquet"))
    assert removed > 0
    r = subprocess.run([BABELSIEVE, "refilter", str(out), "-l", "und", "--set", "classify.web.threshold=0.01"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(next((out / "_manifests" / "classify").glob("*.json")).read_text())
    r = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(next((out / "_manifests" / "classify").glob("*.json")).read_text()) == manifest  # cached
    after = finalize_rows()
    assert after.num_rows == before.num_rows + removed  # all the removed documents are back
    assert set(before.column("id").to_pylist()) < set(after.column("id").to_pylist())


def test_a_failing_compiled_predictor_falls_back_to_the_binding(models, monkeypatch, caplog):
    """If the compiled predictor raises (e.g. numba cannot compile on a machine), the scores come from
    fastText's binding: the same numbers, with a warning."""
    from babelsieve.langid import fasttext_inference
    from babelsieve.pipeline.stages.classify import QualityModel, prepare_texts

    lines = prepare_texts([p["text"] for p in models["pages"][:40]])
    m = QualityModel(str(models["softmax"]), "__label__hq")

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")  # a stand-in for a numba failure, which cannot be caused for real

    monkeypatch.setattr(fasttext_inference, "predict_lines", broken)
    assert np.array_equal(m.scores(lines), binding_scores(models["softmax"], lines))
    assert m.arrays is None and "binding" in caplog.text
