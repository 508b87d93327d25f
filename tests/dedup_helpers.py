"""Helpers for the dedup/rebalance tests: a planted near-duplicate corpus and fake extract outputs."""

from __future__ import annotations

import random
from typing import Any

from babelsieve.pipeline import storage
from babelsieve.pipeline.config import PipelineConfig
from babelsieve.pipeline.documents import language_dir, table_from_rows, write_table
from babelsieve.pipeline.tasks import MANIFEST_VERSION, execute_task, manifest_url, stage_class


def vocab(rng: random.Random, n: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(n)})


def mutate(words: list[str], rate: float, rng: random.Random, vocab_: list[str]) -> list[str]:
    """Replace a fraction ``rate`` of word positions by random words."""
    out = list(words)
    for i in rng.sample(range(len(out)), int(round(rate * len(out)))):
        out[i] = rng.choice(vocab_)
    return out


def doc(idx: int, text: str, lang: str = "eng_Latn", dump: str = "CC-TEST") -> dict[str, Any]:
    language, script = lang.split("_")
    return {
        "text": text,
        "id": f"<urn:uuid:{idx:08d}>",
        "dump": dump,
        "url": f"https://example.com/{lang}/{idx}",
        "date": "2024-01-01T00:00:00Z",
        "file_path": "test.warc.gz",
        "language": language,
        "language_script": script,
        "language_score": 0.99,
        "top_langs": "{}",
        "minhash_cluster_size": None,
        "lang_script": lang,
    }


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


DEDUP_STAGES = ["dedup_signatures", "dedup_buckets", "dedup_clusters", "dedup_annotate"]


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
