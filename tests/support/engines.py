"""Helpers of the engine and S3 tests: small real inputs, configs, output fingerprints."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig, load_config
from babelsieve.pipeline.stages import STAGE_GROUPS

from support.data import SAMPLE_WARC, data_file, make_warc, split_warc

# Fast and deterministic: no language-ID model load, no 20 s URL-blocklist load per process.
FAST_SETS = ["langid.backend=none", "extract.url_filter=false"]


def available_stages(config: PipelineConfig) -> list[str]:
    """The configured default stages that this installation registers (extract at least)."""
    only = [s for s in os.environ.get("BABELSIEVE_TEST_STAGES", "").split(",") if s]  # debugging aid
    return [s for s in config.stages if STAGE_GROUPS.get(s) and (not only or s in only)]


def make_inputs(dest: Path) -> list[Path]:
    """Four real WARC shards: two Common Crawl excerpts and the bundled sample split in two."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("cc/CC-MAIN-2020-34-excerpt.warc.gz", "cc/CC-MAIN-2024-22-whirlwind.warc.gz"):
        p = dest / Path(name).name
        shutil.copyfile(data_file(name), p)
        out.append(p)
    out.extend(split_warc(SAMPLE_WARC, dest / "sample", 2))
    return out


def copies_shard(dest: Path) -> Path:
    """A fourth shard made of the sample's own HTML pages: six republished under other URLs (so
    dedup has clusters spanning shards and languages to resolve) and three under blocklisted
    domains (so the URL filter removes documents). The sample alone has neither."""
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    with open(SAMPLE_WARC, "rb") as f:
        for rec in ArchiveIterator(f):
            ctype = rec.http_headers.get_header("Content-Type", "") if rec.http_headers else ""
            if rec.rec_type == "response" and "html" in ctype:
                pages.append((rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read(), ctype))
    records = [(f"https://mirror.example.net/copy/{i}", body, ctype)
               for i, (_, body, ctype) in enumerate(pages[::7][:6])]
    records += [(f"https://www.pornhub.com/view/{i}", body, ctype) for i, (_, body, ctype) in enumerate(pages[1:4])]
    path = dest / "copies.warc.gz"
    path.write_bytes(make_warc(records))
    return path


def make_config(inputs: list[Any], output: str, engine: str = "local", workers: int = 2,
                sets: list[str] | None = None, storage_options: dict[str, Any] | None = None) -> PipelineConfig:
    cfg = load_config(None, inputs=[str(p) for p in inputs], output=output, engine=engine,
                      sets=FAST_SETS + [f"engine_options.workers={workers}"] + list(sets or []))
    cfg.stages = available_stages(cfg)
    if storage_options:
        cfg.storage_options = storage_options
    return cfg


def data_files(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """{relative path: sha256} of every Parquet data file below ``output`` (not manifests/logs)."""
    base = output.rstrip("/")
    out = {}
    for url in storage.list_files(base, ".parquet", storage_options):
        if url.startswith(base):
            rel = url[len(base):].lstrip("/")
        else:  # the filesystem listed the URL without its protocol
            rel = url.split(base.split("://")[-1], 1)[1].lstrip("/")
        if rel.startswith("_"):
            continue
        out[rel] = hashlib.sha256(storage.read_bytes(url, storage_options)).hexdigest()
    return out


def all_rows(output: str, stage: str = "extract", storage_options: dict[str, Any] | None = None) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for url in storage.list_files(storage.join(output, stage), ".parquet", storage_options):
        rows.extend(pq.read_table(io.BytesIO(storage.read_bytes(url, storage_options))).to_pylist())
    return rows


class InProcessEngine:
    """Runs tasks one after another in this process (no worker start-up): for tests about storage,
    where scheduling is not under test. Engines never change what a task writes (test_engines.py
    checks that for local, Ray and Spark)."""

    name = "in-process"

    def __init__(self, config: PipelineConfig):
        self.config = config

    def run_tasks(self, tasks, on_result):
        from babelsieve.pipeline.core.tasks import TaskFailedError, execute_task
        from babelsieve.pipeline.engines import failed_result

        results = []
        for t in tasks:
            try:
                res = execute_task(t.to_dict(), self.config.model_dump_json())
            except TaskFailedError as e:
                res = failed_result(t, str(e))
            res.setdefault("inputs", list(t.inputs))
            on_result(res)
            results.append(res)
        return results

    def close(self) -> None:
        pass
