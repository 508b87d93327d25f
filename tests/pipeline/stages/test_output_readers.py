"""The output opens in the tools FineWeb2's users read it with, in FineWeb2's schema.

One real multilingual run (bundled sample WARC, default dry-run config, language ID on) is shared by
the module. Every stage folder is read with Hugging Face ``datasets``, polars, DuckDB and
``pyarrow.dataset`` (hive partitioning); the final stage's schema is compared with FineWeb2's
published one; ``babelsieve export`` is loaded per language with ``datasets.load_dataset(DEST, name)``
offline, as FineWeb2 is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
import yaml

from support.data import BABELSIEVE

# FineWeb2's published columns, in its order, with the Arrow types of its Parquet files (written out
# here, not imported from the code under test), plus babelsieve's lang_script.
FINEWEB2_COLUMNS = [
    ("text", pa.string()), ("id", pa.string()), ("dump", pa.string()), ("url", pa.string()),
    ("date", pa.string()), ("file_path", pa.string()), ("language", pa.string()),
    ("language_score", pa.float64()), ("language_script", pa.string()), ("minhash_cluster_size", pa.int64()),
    ("top_langs", pa.string()),
]
FINAL_SCHEMA = pa.schema(FINEWEB2_COLUMNS + [("lang_script", pa.string())])
DOC_STAGES = ["extract", "dedup", "filter", "finalize"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([BABELSIEVE, *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "out"
    # small work-sized tasks (~20 documents): several tasks per stage, some holding several languages
    r = _run("run", "--output", str(out), "--no-progress", "--workers", "2", "--set", "tasks.target_documents=20")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def hf_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """``datasets`` offline, with its own cache (nothing read from or written to the user's)."""
    cache = tmp_path_factory.mktemp("hf_cache")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(cache),
           "HF_DATASETS_CACHE": str(cache / "datasets")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import datasets  # noqa: F401 - imported with the environment above

    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _manifest_rows(out: Path, stages: list[str], kind: str = "documents") -> int:
    n = 0
    for s in stages:
        for m in (out / "_manifests" / s).glob("*.json"):
            n += sum(f["rows"] for f in json.loads(m.read_text())["files"] if f.get("kind") == kind)
    return n


def _manifest_langs(out: Path, stage: str) -> dict[str, int]:
    langs: dict[str, int] = {}
    for m in (out / "_manifests" / stage).glob("*.json"):
        for f in json.loads(m.read_text())["files"]:
            if f.get("kind") == "documents":
                langs[f["lang_script"]] = langs.get(f["lang_script"], 0) + f["rows"]
    return langs


def _reader_counts(folder: Path) -> dict[str, int]:
    """Rows of every Parquet file below ``folder`` as each reader sees them."""
    import datasets

    files = sorted(str(p) for p in folder.rglob("*.parquet"))
    assert files, f"no Parquet files below {folder}"
    glob = str(folder / "**" / "*.parquet")
    hf = datasets.load_dataset("parquet", data_files=files, split="train")
    return {
        "datasets": hf.num_rows,
        "polars": pl.scan_parquet(glob, hive_partitioning=True).select(pl.len()).collect().item(),
        "duckdb": duckdb.connect().execute(
            f"select count(*) from read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0],
        "pyarrow.dataset": pds.dataset(str(folder), format="parquet", partitioning="hive").count_rows(),
    }


def test_every_stage_folder_loads_in_every_reader_with_the_same_rows(run_out, hf_env):
    counts = {}
    for stage in DOC_STAGES:
        by_reader = _reader_counts(run_out / stage)
        expected = _manifest_rows(run_out, ["dedup_annotate"] if stage == "dedup" else [stage])
        assert set(by_reader.values()) == {expected}, (stage, by_reader, expected)
        counts[stage] = expected
    # Removed documents too (every removed/<stage>/ folder: removal_reason and signal columns).
    for folder in sorted((run_out / "removed").iterdir()):
        by_reader = _reader_counts(folder)
        stage = {"dedup": "dedup_annotate"}.get(folder.name, folder.name)
        assert set(by_reader.values()) == {_manifest_rows(run_out, [stage], "removed")}, (folder.name, by_reader)
    assert counts["extract"] >= counts["dedup"] >= counts["filter"] == counts["finalize"] > 0
    # A multilingual run: several language folders at the final stage.
    assert len(_manifest_langs(run_out, "finalize")) >= 5


def test_no_zero_row_parquet_file_anywhere(run_out):
    files = sorted(run_out.rglob("*.parquet"))
    assert len(files) > 20
    empty = [str(f.relative_to(run_out)) for f in files if pq.ParquetFile(f).metadata.num_rows == 0]
    assert not empty, empty


def test_a_language_removed_at_a_stage_has_no_file_and_its_manifest_says_zero(run_out):
    # The sample run removes every document of some languages at filter (few, short pages): their tasks
    # publish no documents file for them, their stats say 0, and finalize plans nothing for them.
    vanished = []
    for m in (run_out / "_manifests" / "filter").glob("*.json"):
        man = json.loads(m.read_text())
        for lang, kept in man["stats"]["languages"].items():
            if kept == 0:
                vanished.append(lang)
                assert not [f for f in man["files"] if f["kind"] == "documents" and f["lang_script"] == lang]
                assert [f for f in man["files"] if f["kind"] == "removed" and f["lang_script"] == lang]
    assert vanished, "the sample run was expected to lose at least one language at the filter stage"
    finalized = _manifest_langs(run_out, "finalize")
    for lang in vanished:
        if lang not in _manifest_langs(run_out, "filter"):
            assert lang not in finalized
            assert not (run_out / "finalize" / f"lang_script={lang}").exists()


def test_final_schema_is_fineweb2s_plus_lang_script(run_out):
    files = sorted((run_out / "finalize").rglob("*.parquet"))
    for f in files:
        schema = pq.read_schema(f).remove_metadata()
        assert schema.equals(FINAL_SCHEMA), f"{f}: {schema.names}"
    # Earlier stages keep what later stages and refilter need: the filter stage keeps its signals.
    filt = pq.read_schema(next((run_out / "filter").rglob("*.parquet")))
    assert filt.names[:12] == FINAL_SCHEMA.names
    assert "sig_n_words" in filt.names and "sig_line_dup_frac" in filt.names


def _finalize_one(run_out: Path, dest: Path, keep_signals: bool) -> pa.Table:
    """The finalize stage's own code on one filter file, with ``finalize.keep_signals`` set as asked."""
    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.core.tasks import Task
    from babelsieve.pipeline.stages.finalize import FinalizeStage

    cfg = load_config(None, output=str(dest), sets=[f"finalize.keep_signals={str(keep_signals).lower()}"])
    src = sorted((run_out / "filter").rglob("*.parquet"))[0]
    lang = src.parent.name.split("=", 1)[1]
    out = FinalizeStage(cfg).run(Task("finalize", f"{lang}-x", (str(src),), {"lang_scripts": [lang]}))
    (entry,) = out.files
    return pq.read_table(entry["path"])


def test_keep_signals_keeps_the_sig_columns(run_out, tmp_path):
    kept = _finalize_one(run_out, tmp_path / "keep", keep_signals=True)
    sigs = [n for n in kept.column_names if n.startswith("sig_")]
    assert kept.column_names[:12] == FINAL_SCHEMA.names
    assert len(sigs) >= 20 and kept.column_names[12:] == sigs
    default = _finalize_one(run_out, tmp_path / "default", keep_signals=False)
    assert default.schema.remove_metadata().equals(FINAL_SCHEMA)
    assert default.num_rows == kept.num_rows > 0


def test_rebalance_writes_the_final_schema_and_no_file_for_a_language_sampled_away(run_out, tmp_path):
    from babelsieve.pipeline.core.config import load_config
    from babelsieve.pipeline.core.tasks import Task
    from babelsieve.pipeline.stages.rebalance import RebalanceStage

    cfg = load_config(None, output=str(tmp_path / "rb"))
    src = sorted((run_out / "filter").rglob("*.parquet"))[0]  # has sig_* columns
    lang = src.parent.name.split("=", 1)[1]
    stage = RebalanceStage(cfg)
    full = stage.run(Task("rebalance", "000000", (str(src),), {"lang_scripts": [lang], "rates": {lang: 1.0},
                                                                 "weights": {lang: {}}, "languages": {}}))
    (entry,) = full.files
    assert pq.read_schema(entry["path"]).remove_metadata().equals(FINAL_SCHEMA)
    none = stage.run(Task("rebalance", "000001", (str(src),), {"lang_scripts": [lang], "rates": {lang: 0.0},
                                                                 "weights": {lang: {}}, "languages": {}}))
    assert none.files == [] and none.stats["after"] == 0
    assert [p.name for p in (tmp_path / "rb" / "rebalance").rglob("*.parquet")] == ["000000.parquet"]


def _front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def test_export_loads_per_language_as_fineweb2(run_out, tmp_path, hf_env):
    import datasets

    dest = tmp_path / "hub"
    # A 1-byte limit: every row group closes a file, so a language of n documents has n files.
    r = _run("export", str(run_out), str(dest), "--max-file-size", "1")
    assert r.returncode == 0, r.stderr
    langs = _manifest_langs(run_out, "finalize")
    configs = {c["config_name"]: c["data_files"] for c in _front_matter(dest / "README.md")["configs"]}
    assert sorted(configs) == sorted(langs)
    assert "data/<subset>/train/" in (dest / "README.md").read_text()
    for lang, rows in langs.items():
        assert configs[lang] == [{"split": "train", "path": f"data/{lang}/train/*.parquet"}]
        names = sorted(p.name for p in (dest / "data" / lang / "train").iterdir())
        assert names == [f"000_{i:05d}.parquet" for i in range(len(names))]
        assert len(names) == rows
        ds = datasets.load_dataset(str(dest), lang, split="train")
        assert ds.num_rows == rows
        assert ds.column_names == FINAL_SCHEMA.names
        assert set(ds["lang_script"]) == {lang}
        # Rows in the order of the run's files (path order), none lost or repeated.
        src = pl.read_parquet(sorted((run_out / "finalize" / f"lang_script={lang}").glob("*.parquet")))
        assert ds["id"] == src["id"].to_list()
    for f in (dest / "data").rglob("*.parquet"):
        assert pq.read_schema(f).remove_metadata().equals(FINAL_SCHEMA)
        assert pq.ParquetFile(f).metadata.num_rows > 0

    # Deterministic: a second export is byte-identical; a re-export into the same folder removes
    # the files a previous (here: more finely split) export left behind.
    again = tmp_path / "hub2"
    assert _run("export", str(run_out), str(again), "--max-file-size", "1").returncode == 0
    assert _digests(again) == _digests(dest)
    r = _run("export", str(run_out), str(again))
    assert r.returncode == 0, r.stderr
    assert all(len(list((again / "data" / lang / "train").iterdir())) == 1 for lang in langs)
    loaded = sum(datasets.load_dataset(str(again), lang, split="train").num_rows for lang in langs)
    assert loaded == sum(langs.values())


def test_export_jsonl_and_a_language_subset(run_out, tmp_path, hf_env):
    import datasets

    langs = _manifest_langs(run_out, "finalize")
    pick = sorted(langs, key=lambda lab: (-langs[lab], lab))[:2]
    dest = tmp_path / "jsonl"
    r = _run("export", str(run_out), str(dest), "--format", "jsonl", "--languages", ",".join(pick))
    assert r.returncode == 0, r.stderr
    configs = {c["config_name"]: c["data_files"] for c in _front_matter(dest / "README.md")["configs"]}
    assert sorted(configs) == sorted(pick)
    assert sorted(p.name for p in (dest / "data").iterdir()) == sorted(pick)
    for lang in pick:
        assert configs[lang] == [{"split": "train", "path": f"data/{lang}/train/*.jsonl.gz"}]
        ds = datasets.load_dataset(str(dest), lang, split="train")
        assert ds.num_rows == langs[lang]
        assert ds.column_names == FINAL_SCHEMA.names
    # Bad requests are refused with a message, not a traceback.
    bad = _run("export", str(run_out), str(tmp_path / "bad"), "--languages", "xxx_Zzzz")
    assert bad.returncode == 2 and "xxx_Zzzz" in bad.stderr
    assert not (tmp_path / "bad" / "data").exists()
    bad = _run("export", str(run_out), str(tmp_path / "bad"), "--stage", "rebalance")
    assert bad.returncode == 2 and "rebalance" in bad.stderr
    # An unfinished run (one finalize task without its manifest) is refused unless asked for.
    part = _copy_output(run_out, tmp_path / "partial")
    gone = sorted((part / "_manifests" / "finalize").glob("*.json"))[0]
    gone.unlink()
    bad = _run("export", str(part), str(tmp_path / "bad"))
    assert bad.returncode == 2 and "1 finalize task(s)" in bad.stderr and gone.stem in bad.stderr
    assert not (tmp_path / "bad" / "data").exists()
    r = _run("export", str(part), str(tmp_path / "partial-hub"), "--allow-incomplete")
    assert r.returncode == 0, r.stderr


def _copy_output(src: Path, dest: Path) -> Path:
    """A copy of a run's output whose manifests point at the copy (refilter rewrites in place)."""
    shutil.copytree(src, dest)
    for f in list((dest / "_manifests").rglob("*.json")) + [dest / "_run.json"]:
        f.write_text(f.read_text().replace(str(src), str(dest)))
    return dest


def test_tools_work_when_refilter_removes_a_whole_language(run_out, tmp_path, hf_env):
    out = _copy_output(run_out, tmp_path / "out")
    langs = _manifest_langs(out, "filter")
    lang = max(langs, key=lambda lab: (langs[lab], lab))
    r = _run("refilter", str(out), "--language", lang, "--set", "min_doc_words=100000000")
    assert r.returncode == 0, r.stderr
    assert not list((out / "filter" / f"lang_script={lang}").glob("*.parquet"))
    assert lang not in _manifest_langs(out, "filter")
    assert not [f for f in out.rglob("*.parquet") if pq.ParquetFile(f).metadata.num_rows == 0]
    by_reader = _reader_counts(out / "filter")
    assert set(by_reader.values()) == {sum(langs.values()) - langs[lang]}, by_reader
    for cmd in (["status", str(out), "--json"], ["report", str(out), "--no-status"], ["inspect", str(out)],
                ["inspect", str(out), "--stage", "filter"], ["export", str(out), str(tmp_path / "hub")]):
        r = _run(*cmd)
        assert r.returncode in (0, 1), (cmd, r.stderr)  # status exits 1 for incomplete runs
        assert "Traceback" not in r.stderr, (cmd, r.stderr)
    # The planners see the language gone: finalize would plan no task for it.
    from babelsieve.pipeline.cli.refilter import _load_config
    from babelsieve.pipeline.stages.finalize import FinalizeStage

    cfg = _load_config(str(out), {})
    assert lang not in {x for t in FinalizeStage(cfg).plan() for x in t.params["lang_scripts"]}
    # And it comes back: refilter reads a task that has only removed files.
    r = _run("refilter", str(out), "--language", lang, "--set", "min_doc_words=1")
    assert r.returncode == 0, r.stderr
    assert _manifest_langs(out, "filter").get(lang, 0) >= langs[lang]


@pytest.mark.infra  # starts moto's S3 server
def test_export_from_and_to_s3(s3, run_out, tmp_path, hf_env):
    """Source on S3 (moto's server: a real S3 API over HTTP) whose manifests name the local run it was
    copied from: export re-roots them at the given OUTPUT. DEST on S3 too, with the same options."""
    import boto3
    import datasets

    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="runs")
    # What export reads: the run record, the finalize manifests and files.
    for p in [run_out / "_run.json", *(run_out / "_manifests" / "finalize").glob("*.json"),
              *(run_out / "finalize").rglob("*.parquet")]:
        client.put_object(Bucket="runs", Key=f"out/{p.relative_to(run_out)}", Body=p.read_bytes())
    opts = ["--storage-option", f"endpoint_url={s3.endpoint}", "--storage-option", "key=testing",
            "--storage-option", "secret=testing"]
    r = _run("export", "s3://runs/out", str(tmp_path / "hub"), *opts)
    assert r.returncode == 0, r.stderr
    langs = _manifest_langs(run_out, "finalize")
    lang = max(langs, key=lambda lab: (langs[lab], lab))
    assert datasets.load_dataset(str(tmp_path / "hub"), lang, split="train").num_rows == langs[lang]
    from babelsieve.pipeline.cli.export import export

    export("s3://runs/out", "s3://runs/hub",
           storage_options={"endpoint_url": s3.endpoint, "key": "testing", "secret": "testing"})
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="runs", Prefix="hub/")["Contents"])
    assert keys == ["hub/README.md"] + sorted(f"hub/data/{lab}/train/000_00000.parquet" for lab in langs)
    local = {p.relative_to(tmp_path / "hub").as_posix(): p.read_bytes()
             for p in (tmp_path / "hub").rglob("*.parquet")}
    for key in keys[1:]:
        assert client.get_object(Bucket="runs", Key=key)["Body"].read() == local[key.removeprefix("hub/")]


def test_export_of_an_older_output_conforms_it(run_out, tmp_path, hf_env):
    """Outputs of earlier versions had every column (sig_*, another order) at finalize and zero-row
    files: export still writes FineWeb2's schema and skips the empty files."""
    import datasets

    out = _copy_output(run_out, tmp_path / "old")
    man_path = sorted((out / "_manifests" / "finalize").glob("*.json"))[0]
    man = json.loads(man_path.read_text())
    entry = man["files"][0]  # a work-sized task: one file per language it holds
    data_path = out / entry["path"]  # manifest paths are relative to the output root
    old = pq.read_table(data_path)
    old = old.append_column("sig_n_words", pa.array([7] * old.num_rows, pa.int64()))
    old = old.select(list(reversed(old.column_names)))
    pq.write_table(old, data_path)
    empty = data_path.with_name("empty.parquet")
    pq.write_table(old.slice(0, 0), empty)
    man["files"].append({**entry, "path": str(empty.relative_to(out)), "rows": 0})
    man_path.write_text(json.dumps(man))
    r = _run("export", str(out), str(tmp_path / "hub"))
    assert r.returncode == 0, r.stderr
    lang = entry["lang_script"]
    for f in (tmp_path / "hub" / "data").rglob("*.parquet"):
        assert pq.read_schema(f).remove_metadata().equals(FINAL_SCHEMA)
        assert pq.ParquetFile(f).metadata.num_rows > 0
    assert datasets.load_dataset(str(tmp_path / "hub"), lang, split="train").num_rows == _manifest_langs(
        run_out, "finalize")[lang]
