"""One file per task with each language in its own row groups: the writer, the per-language pieces the
planners see, and the reader that fetches a shared file once."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from babelsieve.pipeline.core import documents, storage
from babelsieve.pipeline.core.config import load_config
from babelsieve.pipeline.core.documents import (
    DOCUMENT_SCHEMA,
    InputPiece,
    PieceReader,
    language_pieces,
    table_from_rows,
    write_language_parts,
)
from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.core.tasks import Task, inputs_by_language, work_sized_tasks

from support.data import SAMPLE_WARC


def _docs(lang: str, n: int) -> pa.Table:
    return table_from_rows([{"text": f"{lang} document {i}", "id": f"{lang}-{i}", "lang_script": lang}
                            for i in range(n)])


def test_languages_round_trip_through_their_row_groups(tmp_path):
    # 25,000 rows of one language span three row groups of 10,000: its piece covers all three
    parts = [("deu_Latn", _docs("deu_Latn", 3)), ("eng_Latn", _docs("eng_Latn", 25_000)),
             ("zho_Hans", _docs("zho_Hans", 1))]
    url = str(tmp_path / "000001.parquet")
    entry = write_language_parts(url, parts)
    assert entry["rows"] == 25_004
    assert [x[:4] for x in entry["language_row_groups"]] == [["deu_Latn", 0, 1, 3], ["eng_Latn", 1, 3, 25_000],
                                                             ["zho_Hans", 4, 1, 1]]
    assert pq.ParquetFile(url).metadata.num_row_groups == 5
    pieces = language_pieces(entry)
    assert [(p["lang_script"], p["rows"], p["row_groups"]) for p in pieces] == [
        ("deu_Latn", 3, [0, 1]), ("eng_Latn", 25_000, [1, 3]), ("zho_Hans", 1, [4, 1])]
    assert all(p["path"] == url and p["sha256"] == entry["sha256"] and p["bytes"] > 0 for p in pieces)
    assert sum(p["bytes"] for p in pieces) < entry["bytes"]  # the footer is nobody's
    # a lone piece (ranged read) and every piece of the file (one fetch) give the language's rows exactly
    for lang, table in parts:
        piece = next(InputPiece(p["path"], tuple(p["row_groups"])) for p in pieces if p["lang_script"] == lang)
        assert PieceReader([piece]).read(piece).equals(table)
    all_pieces = [InputPiece(p["path"], tuple(p["row_groups"])) for p in pieces]
    reader = PieceReader(all_pieces, columns=["text"])
    for (_, table), piece in zip(parts, all_pieces, strict=True):
        assert reader.read(piece).column("text").equals(table.column("text"))
    # an entry without language_row_groups is its own piece (files of single-language stages)
    single = {"path": url, "lang_script": "eng_Latn", "rows": 1}
    assert language_pieces(single) == [single]


def test_a_file_is_fetched_once_per_task_and_a_big_one_by_ranges(tmp_path, monkeypatch):
    url = str(tmp_path / "000000.parquet")
    entry = write_language_parts(url, [(lang, _docs(lang, 20)) for lang in ("a_Latn", "b_Latn", "c_Latn")])
    pieces = [InputPiece(p["path"], tuple(p["row_groups"]), p["file_bytes"]) for p in language_pieces(entry)]
    assert all(p.file_bytes == entry["bytes"] for p in pieces)
    fetched: list[str] = []
    real = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda u, o=None: fetched.append(u) or real(u, o))
    reader = PieceReader(pieces)
    got = [reader.read(p) for p in reversed(pieces)]
    assert fetched == [url] and [t.num_rows for t in got] == [20, 20, 20]  # a small file: one whole GET
    assert got[0].column("lang_script")[0].as_py() == "c_Latn"
    # a file above WHOLE_FILE_BYTES is never fetched whole: footer and the task's row groups only
    monkeypatch.setattr(documents, "WHOLE_FILE_BYTES", 100)
    fetched.clear()
    reader = PieceReader(pieces[1:])
    assert [reader.read(p).column("id")[0].as_py() for p in pieces[1:]] == ["b_Latn-0", "c_Latn-0"]
    assert fetched == []


def test_absurd_row_groups_and_a_truncated_file_are_errors_naming_the_file(tmp_path, monkeypatch):
    url = str(tmp_path / "000000.parquet")
    write_language_parts(url, [("a_Latn", _docs("a_Latn", 5))])
    for bad in [(1, 1), (0, 2), (-1, 1), (0, 0)]:
        with pytest.raises(ValueError, match="000000.parquet"):
            PieceReader([InputPiece(url, bad)]).read(InputPiece(url, bad))
    data = (tmp_path / "000000.parquet").read_bytes()
    (tmp_path / "000000.parquet").write_bytes(data[: len(data) // 2])
    for pieces in ([InputPiece(url, (0, 1))], [InputPiece(url, (0, 1)), InputPiece(url, (0, 1))]):
        with pytest.raises(ValueError, match="000000.parquet"):
            PieceReader(pieces).read(pieces[0])
    # read by ranges (a "big" file) with a size that lies, longer or shorter than the object
    monkeypatch.setattr(documents, "WHOLE_FILE_BYTES", 0)
    size = (tmp_path / "000000.parquet").stat().st_size
    for lie in (size + 1000, size - 10, 3):
        piece = InputPiece(url, (0, 1), lie)
        with pytest.raises(ValueError, match="000000.parquet"):
            PieceReader([piece]).read(piece)
    with pytest.raises(ValueError, match="without rows"):
        write_language_parts(url, [("a_Latn", DOCUMENT_SCHEMA.empty_table())])


def test_planner_groups_pieces_of_many_languages_and_tasks_read_their_language_only(tmp_path):
    # two shards x three languages in two files; a task per 30 documents takes pieces, not files
    entries = []
    for shard in range(2):
        url = str(tmp_path / f"{shard:05d}.parquet")
        langs = ("a_Latn", "b_Latn", "c_Latn")
        parts = [(lang, _docs(lang, 10 + 5 * shard + k)) for k, lang in enumerate(langs)]
        entries += language_pieces(write_language_parts(url, parts))
    config = load_config(None, output=str(tmp_path / "out"), sets=["tasks.target_documents=30"])
    tasks = work_sized_tasks("filter", entries, config)
    assert [t.params["lang_scripts"] for t in tasks] == [["a_Latn", "a_Latn", "b_Latn"],
                                                         ["b_Latn", "c_Latn", "c_Latn"]]
    assert all(len(t.params["row_groups"]) == 2 * len(t.inputs) == 2 * len(t.params["file_bytes"]) for t in tasks)
    for t in tasks:
        reader = PieceReader([p for _, ps in inputs_by_language(t) for p in ps])
        for lang, ps in inputs_by_language(t):
            assert set(reader.concat(ps).column("lang_script").to_pylist()) == {lang}
    # the identity follows the pieces: another row-group split of the same file is another task
    t0 = tasks[0]
    moved = Task(t0.stage, t0.task_id, t0.inputs, {**t0.params, "row_groups": [0, 1] * len(t0.inputs)},
                 t0.input_digest)
    assert moved.identity(str(tmp_path / "out")) != t0.identity(str(tmp_path / "out"))


def test_extract_writes_one_file_per_shard_and_dedup_reads_every_language(tmp_path):
    out = tmp_path / "out"
    # extract and dedup only (filter and finalize reading pieces: the dry-run test and the engine tests)
    config = load_config(None, inputs=[str(SAMPLE_WARC)], output=str(out), sets=["stages=[extract,dedup]"])
    summary = run_pipeline(config, show_progress=False)
    assert summary.failed_tasks == 0
    extract_files = sorted(p.relative_to(out).as_posix() for p in (out / "extract").rglob("*.parquet"))
    assert extract_files == ["extract/00000.parquet"]
    manifest = json.loads((out / "_manifests" / "extract" / "00000.json").read_text())
    (entry,) = [f for f in manifest["files"] if f["kind"] == "documents"]
    langs = [x[0] for x in entry["language_row_groups"]]
    assert len(langs) > 10 and langs == sorted(langs)
    table = pq.read_table(out / "extract" / "00000.parquet")
    assert table.column("lang_script").to_pylist() == sorted(table.column("lang_script").to_pylist())
    # dedup's documents too: one file for the task's languages
    assert sorted(p.name for p in (out / "dedup").rglob("*.parquet")) == ["000000.parquet"]
    # every extracted document reaches dedup exactly once, in its own language
    dedup = pq.read_table(out / "dedup" / "000000.parquet")
    assert sorted(dedup.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    assert documents.DOCUMENT_SCHEMA.names == dedup.schema.names
