"""Filter and finalize stages through the task model, statistics, refilter, and the CLI command."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow.parquet as pq
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from babelsieve.pipeline.core import storage  # noqa: E402
from babelsieve.pipeline.core.config import PipelineConfig  # noqa: E402
from babelsieve.pipeline.core.documents import language_dir, table_from_rows, write_table  # noqa: E402
from babelsieve.pipeline.core.tasks import completed_files, execute_task, manifest_url  # noqa: E402
from babelsieve.pipeline.stages import stage_class  # noqa: E402

from support.data import TEST_DATA

FIXTURE = TEST_DATA / "filter_fixture.jsonl.gz"


def _docs(label: str, n: int) -> list[dict]:
    out = []
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["lang_script"] == label:
                out.append(d)
    return out[:n]


def _fake_extract(config: PipelineConfig, label: str, docs: list[dict], task_id: str = "00000") -> None:
    rows = [
        {"text": d["text"], "id": d["id"], "url": f"https://example.org/{d['id']}", "language": label.split("_")[0],
         "language_script": (label.split("_") + [""])[1], "lang_script": label, "language_score": 0.99,
         "minhash_cluster_size": 1 + i % 3}
        for i, d in enumerate(docs)
    ]
    entry = write_table(language_dir(storage.join(config.output, "extract"), label) + f"/{task_id}.parquet",
                        table_from_rows(rows), config.storage_options)
    storage.publish_json(
        manifest_url(config, "extract", f"{label}-{task_id}"),
        {"version": 1, "stage": "extract", "task_id": f"{label}-{task_id}", "inputs": [], "params": {},
         "config_hash": config.content_hash(), "files": [{**entry, "kind": "documents", "lang_script": label}],
         "stats": {}},
        config.storage_options,
    )


def _run_stage(config: PipelineConfig, name: str) -> list[dict]:
    stage = stage_class(name)(config)
    return [execute_task(t.to_dict(), config.model_dump_json()) for t in stage.plan()]


@pytest.fixture()
def config(tmp_path):
    cfg = PipelineConfig(output=str(tmp_path / "out"), stages=["extract", "filter", "finalize"])
    storage.publish_json(storage.join(cfg.output, "_run.json"),
                         {"config_hash": cfg.content_hash(), "config": cfg.model_dump(mode="json")})
    return cfg


def test_filter_and_finalize_stages(config):
    docs = _docs("deu_Latn", 60)
    _fake_extract(config, "deu_Latn", docs)
    _fake_extract(config, "rus_Cyrl", _docs("rus_Cyrl", 20))
    res = _run_stage(config, "filter")
    # work-sized tasks: both languages (80 documents) are one task, with files per (task, language)
    assert len(res) == 1 and all(r["status"] == "done" for r in res)
    assert res[0]["stats"]["docs_in"] == 80 and set(res[0]["stats"]["languages"]) == {"deu_Latn", "rus_Cyrl"}
    de = {**res[0], "files": [f for f in res[0]["files"] if f["lang_script"] == "deu_Latn"]}
    de["stats"] = {"docs_out": res[0]["stats"]["languages"]["deu_Latn"]}
    kinds = {f["kind"] for f in de["files"]}
    assert kinds == {"documents", "removed", "stats"}
    assert all("lang_script" in f and "kind" in f for r in res for f in r["files"])
    kept = pq.read_table(next(f["path"] for f in de["files"] if f["kind"] == "documents"))
    removed = [pq.read_table(f["path"]) for f in de["files"] if f["kind"] == "removed"]
    assert kept.num_rows + sum(t.num_rows for t in removed) == 60
    assert kept.num_rows == de["stats"]["docs_out"]
    assert "sig_line_dup_frac" in kept.column_names and "removal_reason" not in kept.column_names
    for t, f in zip(removed, [f for f in de["files"] if f["kind"] == "removed"], strict=True):
        assert set(t.column("removal_reason").to_pylist()) == {f["reason"]}
        assert "/removed/filter/" + f["reason"].replace(":", "/") + "/" in f["path"]
    # statistics: totals, per filter, per reason and per cluster size
    st = pq.read_table(next(f["path"] for f in de["files"] if f["kind"] == "stats")).to_pylist()
    total = next(r for r in st if r["level"] == "total")
    assert total["docs_in"] == 60 and total["removed"] == 60 - kept.num_rows
    assert {r["name"] for r in st if r["level"] == "filter"} >= {"gopher_rep", "fineweb_qual", "gopher_qual"}
    cs = [r for r in st if r["level"] == "cluster_size"]
    assert sorted(r["minhash_cluster_size"] for r in cs) == [1, 2, 3] and sum(r["docs_in"] for r in cs) == 60
    # rerun: cached
    assert all(r["status"] == "cached" for r in _run_stage(config, "filter"))
    # finalize reads the kept documents
    fin = _run_stage(config, "finalize")
    assert len(fin) == 1
    out = pq.read_table(next(f["path"] for r in fin for f in r["files"] if f["lang_script"] == "deu_Latn"))
    assert out.num_rows == kept.num_rows
    assert [f["kind"] for r in fin for f in r["files"]] == ["documents", "documents"]


def test_refilter_rethresholds_without_recomputing(config):
    from click.testing import CliRunner

    from babelsieve.pipeline.cli.refilter import refilter, refilter_command

    _fake_extract(config, "deu_Latn", _docs("deu_Latn", 80))
    _fake_extract(config, "rus_Cyrl", _docs("rus_Cyrl", 20))  # same filter task (work-sized): left alone
    _run_stage(config, "filter")
    rus_files = sorted((f["path"], f["sha256"]) for f in completed_files(config, "filter")
                       if f["lang_script"] == "rus_Cyrl")
    assert rus_files
    before = [f for f in completed_files(config, "filter", kind="documents") if f["lang_script"] == "deu_Latn"]
    n_before = sum(f["rows"] for f in before)
    # everything off but the stopword rule with an impossible minimum: everything removed
    summary = refilter(config.output, "deu_Latn", {"gopher_repetition": False, "fineweb_quality": False,
                                                   "min_doc_words": 0, "min_avg_word_length": 0,
                                                   "max_avg_word_length": 0, "max_symbol_word_ratio": 0,
                                                   "max_bullet_lines_ratio": 0, "max_ellipsis_lines_ratio": 0,
                                                   "max_non_alpha_words_ratio": 0, "min_stop_words": 10_000})
    assert summary["kept"] == 0 and summary["removed"] == {"gopher_qual:gopher_enough_stop_words": 80}
    assert sum(f["rows"] for f in completed_files(config, "filter", kind="documents")
               if f["lang_script"] == "deu_Latn") == 0
    # the CLI: loosen everything -> all kept; files and stats rewritten
    r = CliRunner().invoke(refilter_command, [config.output, "--language", "deu_Latn",
                                              "--set", "gopher_repetition=false", "--set", "fineweb_quality=false",
                                              "--set", "gopher_quality=false"])
    assert r.exit_code == 0, r.output
    after = [f for f in completed_files(config, "filter", kind="documents") if f["lang_script"] == "deu_Latn"]
    assert sum(f["rows"] for f in after) == 80 > n_before
    assert [f for f in completed_files(config, "filter", kind="removed") if f["lang_script"] == "deu_Latn"] == []
    st = pq.read_table(next(f["path"] for f in completed_files(config, "filter", kind="stats")
                            if f["lang_script"] == "deu_Latn")).to_pylist()
    assert next(x for x in st if x["level"] == "total")["removed"] == 0
    # a changed stopword list recomputes only that signal
    s = refilter(config.output, "deu_Latn", {"gopher_repetition": False, "fineweb_quality": False,
                                             "stopwords": ["zzzz", "qqqq"]})
    assert s["removed"].get("gopher_qual:gopher_enough_stop_words", 0) > 0
    # the other language of the task: same files, same bytes, still listed
    assert sorted((f["path"], f["sha256"]) for f in completed_files(config, "filter")
                  if f["lang_script"] == "rus_Cyrl") == rus_files
    # bad input: unknown setting, unknown language
    r = CliRunner().invoke(refilter_command, [config.output, "-l", "deu_Latn", "--set", "no_such=1"])
    assert r.exit_code != 0 and "unknown setting" in r.output
    r = CliRunner().invoke(refilter_command, [config.output, "-l", "xyz_Latn", "--set", "dup_line_frac=0.5"])
    assert r.exit_code != 0 and "no filter-stage output" in r.output


def test_filter_stage_language_missing_from_table(config):
    # well-formed label without a FineWeb2 config, and a malformed one: script/global defaults, no crash
    docs = _docs("deu_Latn", 10)
    _fake_extract(config, "eng_Latn", docs)
    _fake_extract(config, "weird", docs, task_id="00001")
    res = _run_stage(config, "filter")
    assert len(res) == 1 and all(r["status"] == "done" for r in res)  # one work-sized task, two languages
    notes = [n for r in res for n in r["stats"].get("notes", [])]
    assert any("no FineWeb2 config" in n for n in notes) and any("malformed" in n for n in notes)
    assert res[0]["stats"]["docs_in"] == 20
