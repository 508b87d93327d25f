"""Helpers for the dedup/rebalance tests: a planted near-duplicate corpus and fake extract outputs."""

from __future__ import annotations

from typing import Any

from babelsieve.dedup.synthetic import doc, mutate, vocab  # noqa: F401 - re-exported for the tests
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.documents import language_dir, table_from_rows, write_table
from babelsieve.pipeline.core.tasks import MANIFEST_VERSION, execute_task, manifest_url
from babelsieve.pipeline.stages import STAGE_GROUPS, stage_class


def write_fake_extract(config: PipelineConfig, shards: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    """shards: extract task id -> lang -> rows. Writes Parquet files and extract manifests."""
    for task_id, by_lang in sorted(shards.items()):
        files = []
        for lang, rows in sorted(by_lang.items()):
            url = language_dir(storage.join(config.output, "extract"), lang) + f"/{task_id}.parquet"
            entry = write_table(url, table_from_rows(rows))
            files.append({**entry, "kind": "documents", "lang_script": lang})
        manifest = {"version": MANIFEST_VERSION, "stage": "extract", "task_id": task_id, "inputs": [],
                    "params": {}, "config_hash": config.content_hash(), "files": files, "stats": {}, "seconds": 0}
        storage.publish_json(manifest_url(config, "extract", task_id), manifest)


DEDUP_STAGES = STAGE_GROUPS["dedup"]  # with the merge levels (no task unless a partition has > max_input_files)


def run_stages(config: PipelineConfig, stages: list[str], reverse: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Plan and execute every task of each stage in order (tasks in reverse order if asked)."""
    results = {}
    cj = config.model_dump_json()
    for name in stages:
        tasks = stage_class(name)(config).plan()
        if reverse:
            tasks = tasks[::-1]
        results[name] = [execute_task(t.to_dict(), cj) for t in tasks]
    return results
