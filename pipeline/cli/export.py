"""``babelsieve export OUTPUT DEST``: a run's final documents in FineWeb2's Hub layout.

Writes, below DEST (a local folder or any fsspec URL)::

    README.md                                    dataset card with the Hub's ``configs:`` front matter
    data/<lang_script>/train/000_00000.parquet   FineWeb2's folder layout, one config per lang_script
    data/<lang_script>/train/000_00001.parquet   a new file once one reaches --max-file-size

so ``datasets.load_dataset(DEST, "rus_Cyrl")`` reads a language as it reads FineWeb2's, and
``huggingface-cli upload REPO DEST . --repo-type dataset`` publishes it. The documents come from the
completed tasks of one stage (``rebalance`` when the run has it, else ``finalize``), as listed in
their manifests (never from a directory listing, which could hold files of unfinished tasks).

Deterministic: files of a language are read in path order and rows kept in file order, file names
are numbered from 0, and Parquet is written with fixed settings, so the same run gives the same
bytes. A file is closed once its written size reaches ``--max-file-size`` (whole row groups, so a
file can pass it by at most one row group: at most 10,000 rows, 64MB and a quarter of the limit before
compression).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import click
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from babelsieve.pipeline.cli.options import parse_storage_options, storage_option_flag
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig, without_redacted
from babelsieve.pipeline.core.documents import final_columns, read_table
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import completed_files
from babelsieve.pipeline.stages import documents_input, stage_class

DEFAULT_MAX_FILE_SIZE = 500 * 1024**2
EXPORT_STAGES = ("rebalance", "finalize")
_ROW_GROUP_ROWS = 10_000
_ROW_GROUP_BYTES = 64 * 1024**2  # in memory: small row groups keep the Hub's viewer and streaming readers light
_PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3, "GB": 1024**3}


class ExportError(ValueError):
    """The run cannot be exported as asked (no such stage, language or files)."""


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2G"``, ``"1048576"`` -> bytes (binary units)."""
    t = text.strip().upper().replace("IB", "B")
    num = t.rstrip("KMGB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 500MB, 2GB, 1048576)") from None
    if unit not in _SIZE_UNITS or value <= 0:
        raise ValueError(f"not a size: {text!r} (e.g. 500MB, 2GB, 1048576)")
    return int(value * _SIZE_UNITS[unit])


def _run_info(output: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    url = RunLayout(output).run_marker
    if not storage.exists(url, storage_options):
        raise ExportError(f"{output} has no _run.json: not a babelsieve output directory")
    return storage.read_json(url, storage_options)


def stage_documents(output: str, stage: str, storage_options: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``{lang_script: [file entries sorted by path]}`` of the stage's completed tasks (this run's
    config hash). Paths are re-rooted at ``output``, so a copied or moved output exports too."""
    from babelsieve.pipeline.report.stats import read_manifests

    run = _run_info(output, storage_options)
    saved = str((run.get("config") or {}).get("output") or "").rstrip("/")
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for m in read_manifests(output, storage_options):
        if m["stage"] != stage or m.get("config_hash") != run.get("config_hash"):
            continue
        for f in m.get("files") or []:
            if f.get("kind") != "documents" or not f.get("rows"):
                continue
            path = str(f["path"])
            if saved and path.startswith(saved + "/"):
                path = storage.join(output, path[len(saved) + 1:])
            by_lang.setdefault(f.get("lang_script") or "und", []).append({**f, "path": path})
    return {lang: sorted(files, key=lambda f: f["path"]) for lang, files in sorted(by_lang.items())}


def missing_tasks(output: str, stage: str, storage_options: dict[str, Any]) -> list[str]:
    """Task ids of ``stage`` planned from the completed tasks before it but without a manifest of this
    run's config (an unfinished run). Rebalance is counted from its input files (one task each), so
    no rehydration weights are computed here."""
    from babelsieve.pipeline.report.stats import read_manifests

    run = _run_info(output, storage_options)
    raw = without_redacted(dict(run.get("config") or {}))  # credentials come from storage_options
    raw["output"] = output
    raw["storage_options"] = {**(raw.get("storage_options") or {}), **storage_options}
    config = PipelineConfig.model_validate(raw)
    if stage not in config.stages:
        return []
    done = {str(m["task_id"]) for m in read_manifests(output, storage_options)
            if m["stage"] == stage and m.get("config_hash") == run.get("config_hash")}
    if stage == "rebalance":
        inputs = completed_files(config, documents_input(config, "rebalance"), kind="documents")
        planned = [f"{i:06d}" for i in range(len(inputs))]
    else:
        planned = [t.task_id for t in stage_class(stage)(config).plan()]
    return [t for t in planned if t not in done]


def default_stage(output: str, storage_options: dict[str, Any]) -> str:
    """``rebalance`` when the run has completed rebalance tasks, else ``finalize``."""
    return "rebalance" if stage_documents(output, "rebalance", storage_options) else "finalize"


def _tables(files: list[dict[str, Any]], storage_options: dict[str, Any], keep_signals: bool) -> Iterator[pa.Table]:
    """The files' tables in the final columns (outputs of older versions had every column there)."""
    for f in files:
        table = read_table(f["path"], storage_options)
        if table.num_rows != f.get("rows"):
            raise ExportError(f"{f['path']} has {table.num_rows} rows, its manifest says {f.get('rows')}: "
                              "the output changed after the run; rerun the stage")
        yield final_columns(table, keep_signals=keep_signals)


def _row_groups(tables: Iterator[pa.Table], max_bytes: int) -> Iterator[pa.Table]:
    """Slices of at most ``_ROW_GROUP_ROWS`` rows and about ``max_bytes`` in memory (at least one row)."""
    for table in tables:
        start = 0
        while start < table.num_rows:
            n = min(_ROW_GROUP_ROWS, table.num_rows - start)
            while n > 1 and table.slice(start, n).nbytes > max_bytes:
                n //= 2
            yield table.slice(start, n)
            start += n


def _parquet_files(groups: Iterator[pa.Table], max_file_size: int) -> Iterator[bytes]:
    buf: io.BytesIO | None = None
    writer: pq.ParquetWriter | None = None
    for g in groups:
        if writer is None:
            buf = io.BytesIO()
            writer = pq.ParquetWriter(buf, g.schema, **_PARQUET_OPTIONS)
        writer.write_table(g, row_group_size=g.num_rows)
        assert buf is not None
        if buf.tell() >= max_file_size:
            writer.close()
            yield buf.getvalue()
            buf, writer = None, None
    if writer is not None and buf is not None:
        writer.close()
        yield buf.getvalue()


def _jsonl_files(groups: Iterator[pa.Table], max_file_size: int) -> Iterator[bytes]:
    buf: io.BytesIO | None = None
    gz: gzip.GzipFile | None = None
    for g in groups:
        if gz is None:
            buf = io.BytesIO()
            gz = gzip.GzipFile(fileobj=buf, mode="wb", mtime=0)  # mtime 0: same rows, same bytes
        for row in g.to_pylist():
            gz.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
        assert buf is not None
        if buf.tell() >= max_file_size:
            gz.close()
            yield buf.getvalue()
            buf, gz = None, None
    if gz is not None and buf is not None:
        gz.close()
        yield buf.getvalue()


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def file_pattern(fmt: str) -> str:
    """The data file glob of one config below ``data/<lang_script>/train/``."""
    return "*.parquet" if fmt == "parquet" else "*.jsonl.gz"


def export_card(output: str, stage: str, languages: list[str], fmt: str,
                storage_options: dict[str, Any]) -> str:
    """The run's dataset card (:func:`babelsieve.pipeline.report.card.dataset_card`) for the
    exported languages, its ``configs:`` pointing at the exported files."""
    import polars as pl

    from babelsieve.pipeline.report.card import dataset_card
    from babelsieve.pipeline.report.stats import collect_run_stats, read_run_info

    stats = collect_run_stats(output, storage_options, scan_parquet=False)
    keep = pl.col("lang_script").is_in(languages)
    stats["languages"] = stats["languages"].filter((pl.col("stage") != stage) | keep)
    card = dataset_card(stats, read_run_info(output, storage_options), output)
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front) or {}
    meta["configs"] = [{"config_name": lab, "data_files": [
        {"split": "train", "path": f"data/{lab}/train/{file_pattern(fmt)}"}]} for lab in languages]
    body = body.replace(f"`{stage}/lang_script=<subset>/`", "`data/<subset>/train/`")
    body = body.replace("are under `removed/<stage>/<reason>/`",
                        "stay in the run's output under `removed/<stage>/<reason>/` (not part of this export)")
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body


def export(output: str, dest: str, *, fmt: str = "parquet", languages: list[str] | None = None,
           max_file_size: int = DEFAULT_MAX_FILE_SIZE, stage: str | None = None,
           storage_options: dict[str, Any] | None = None,
           dest_storage_options: dict[str, Any] | None = None, allow_incomplete: bool = False) -> dict[str, Any]:
    """Write the Hub layout of ``output``'s final stage to ``dest``; return
    ``{"stage", "languages": {lang: {"rows", "files"}}, "card", "removed"}``.

    Data files below ``dest/data/`` that this export did not write (an earlier export's) are removed,
    so the folder holds exactly this export. A stage with tasks still to do is refused unless
    ``allow_incomplete`` (the tasks before it are what a rerun would plan from).
    """
    if fmt not in ("parquet", "jsonl"):
        raise ExportError(f"unknown format {fmt!r}: parquet or jsonl")
    if max_file_size <= 0:
        raise ExportError("max_file_size must be positive")
    if output.rstrip("/") == dest.rstrip("/"):
        raise ExportError("DEST must differ from OUTPUT (the export has its own README.md and data/)")
    opts = storage_options or {}
    dopts = opts if dest_storage_options is None else dest_storage_options
    stage = stage or default_stage(output, opts)
    if stage not in EXPORT_STAGES:
        raise ExportError(f"cannot export stage {stage!r}: one of {', '.join(EXPORT_STAGES)}")
    if not allow_incomplete:
        missing = missing_tasks(output, stage, opts)
        if missing:
            raise ExportError(f"{len(missing)} {stage} task(s) of {output} are not done (e.g. {missing[0]}): "
                              "finish the run first (rerunning it resumes), or pass --allow-incomplete")
    docs = stage_documents(output, stage, opts)
    if not docs:
        raise ExportError(f"{output} has no completed {stage} documents (run the stage first, or choose --stage)")
    if languages:
        missing = sorted(set(languages) - set(docs))
        if missing:
            raise ExportError(f"no {stage} documents for {', '.join(missing)} in {output}; "
                              f"languages there: {', '.join(docs)}")
        docs = {lang: docs[lang] for lang in sorted(set(languages))}
    finalize_cfg = (_run_info(output, opts).get("config") or {}).get("finalize") or {}
    keep_signals = bool(finalize_cfg.get("keep_signals", False))
    ext = ".parquet" if fmt == "parquet" else ".jsonl.gz"
    write_files = _parquet_files if fmt == "parquet" else _jsonl_files
    summary: dict[str, Any] = {"stage": stage, "languages": {}}
    written: set[str] = set()
    for lang, files in docs.items():
        groups = _row_groups(_tables(files, opts, keep_signals), max(1, min(max_file_size // 4, _ROW_GROUP_BYTES)))
        rows = sum(int(f["rows"]) for f in files)
        names = []
        for i, data in enumerate(write_files(groups, max_file_size)):
            name = f"000_{i:05d}{ext}"
            url = storage.join(dest, "data", lang, "train", name)
            storage.publish_bytes(url, data, dopts)
            written.add(storage.filesystem(url, dopts)[1])
            names.append(name)
        summary["languages"][lang] = {"rows": rows, "files": names}
    removed = []
    data_root = storage.join(dest, "data")
    for url in storage.list_files(data_root, "", dopts):
        path = storage.filesystem(url, dopts)[1]
        if path not in written and (path.endswith(".parquet") or path.endswith(".jsonl.gz")):
            storage.remove(url, dopts, recursive=False)
            removed.append(url)
    card_url = storage.join(dest, "README.md")
    storage.publish_bytes(card_url, export_card(output, stage, list(docs), fmt, opts).encode("utf-8"), dopts)
    summary["card"] = card_url
    summary["removed"] = removed
    return summary


@click.command("export")
@click.argument("output")
@click.argument("dest")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default="parquet", show_default=True,
              help="Data file format (jsonl: gzip-compressed JSON lines, .jsonl.gz).")
@click.option("--languages", "-l", "languages", multiple=True, metavar="LANG_SCRIPT",
              help="Only these lang_script subsets (repeatable or comma-separated; default: all).")
@click.option("--max-file-size", default="500MB", show_default=True, metavar="SIZE",
              help="Start a new data file once one reaches this size (e.g. 200MB, 1GB).")
@click.option("--stage", type=click.Choice(list(EXPORT_STAGES)), default=None,
              help="Stage to export (default: rebalance when the run has it, else finalize).")
@click.option("--allow-incomplete", is_flag=True, help="Export even if some tasks of the stage are not done.")
@storage_option_flag
def export_command(output: str, dest: str, fmt: str, languages: tuple[str, ...], max_file_size: str,
                   stage: str | None, allow_incomplete: bool, storage_option: tuple[str, ...]) -> None:
    """Write OUTPUT's final documents to DEST in FineWeb2's Hub layout, with the dataset card.

    \b
    DEST/README.md                              dataset card, one Hub config per lang_script
    DEST/data/<lang_script>/train/000_00000.parquet
    Then: datasets.load_dataset("DEST", "rus_Cyrl"), or
          huggingface-cli upload USER/NAME DEST . --repo-type dataset
    """
    from babelsieve.pipeline.report.stats import resolve_storage_options

    try:
        size = parse_size(max_file_size)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--max-file-size") from None
    langs = [x.strip() for item in languages for x in item.split(",") if x.strip()]
    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    # The run's storage options (endpoint, credentials) apply to DEST only on the same kind of storage.
    same_kind = _protocol(output) == _protocol(dest)
    try:
        res = export(output, dest, fmt=fmt, languages=langs or None, max_file_size=size, stage=stage,
                     storage_options=opts, dest_storage_options=opts if same_kind else {},
                     allow_incomplete=allow_incomplete)
    except (ExportError, FileNotFoundError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    total = 0
    for lang, info in res["languages"].items():
        total += info["rows"]
        click.echo(f"  {lang:<12} {info['rows']:>10,} rows  {len(info['files'])} file(s)")
    click.echo(f"exported {total:,} {res['stage']} documents in {len(res['languages'])} subset(s) to {dest}")
    if res["removed"]:
        click.echo(f"removed {len(res['removed'])} data file(s) of an earlier export")
    click.echo(f"dataset card: {res['card']}")
