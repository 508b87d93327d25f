"""The task model: stages are lists of tasks; a task writes files, then its manifest.

* A :class:`Task` is a pure function of (input files, stage config). Same inputs + same config
  -> same bytes, whichever engine runs it and however often.
* :func:`execute_task` is the only thing an engine calls. It skips a task whose manifest exists
  with the same config hash, refuses one whose manifest has a different hash, runs the stage,
  publishes the outputs atomically and writes the manifest **last**: the manifest is the only
  proof of completion, so a task killed at any point is simply run again.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from babelsieve.pipeline import storage
from babelsieve.pipeline.config import PipelineConfig

MANIFEST_VERSION = 1


class ConfigMismatchError(RuntimeError):
    """An output location holds results of a run with a different configuration."""


class TaskFailedError(RuntimeError):
    """A task raised; carries the stage, task id and the original message."""


@dataclass(frozen=True)
class Task:
    """One unit of work. ``task_id`` is unique within its stage and sorts in a stable order."""

    stage: str
    task_id: str
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        return cls(stage=d["stage"], task_id=d["task_id"], inputs=tuple(d["inputs"]), params=d.get("params", {}))


@dataclass
class TaskOutput:
    """What a stage's ``run`` returns: published files (manifest entries) and statistics."""

    files: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A pipeline stage. ``plan`` runs on the driver, ``run`` in a worker (any engine)."""

    name: ClassVar[str]

    def __init__(self, config: PipelineConfig):
        self.config = config

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.config.storage_options

    def out(self, *parts: str) -> str:
        """URL below the run's output."""
        return storage.join(self.config.output, *parts)

    @abstractmethod
    def plan(self) -> list[Task]:
        """The tasks of this stage, given the completed outputs of earlier stages."""

    @abstractmethod
    def run(self, task: Task) -> TaskOutput:
        """Do the work of one task and publish its files (not its manifest)."""

    def finish(self, results: list[dict[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Driver-side step after all tasks of the stage (e.g. merge statistics)."""


# name -> "module:Class"; modules are imported lazily so a worker only loads what it runs.
STAGE_REGISTRY: dict[str, str] = {
    "extract": "babelsieve.pipeline.extract:ExtractStage",
    "dedup_signatures": "babelsieve.pipeline.dedup.stages:DedupSignaturesStage",
    "dedup_buckets": "babelsieve.pipeline.dedup.stages:DedupBucketsStage",
    "dedup_clusters": "babelsieve.pipeline.dedup.stages:DedupClustersStage",
    "dedup_annotate": "babelsieve.pipeline.dedup.stages:DedupAnnotateStage",
    "filter": "babelsieve.pipeline.filter_stage:FilterStage",
    "finalize": "babelsieve.pipeline.finalize_stage:FinalizeStage",
    "rebalance": "babelsieve.pipeline.rebalance:RebalanceStage",
}

# User-facing stage names (config `stages:`) -> the task stages they expand to, in order.
STAGE_GROUPS: dict[str, list[str]] = {
    "extract": ["extract"],
    "dedup": ["dedup_signatures", "dedup_buckets", "dedup_clusters", "dedup_annotate"],
    "filter": ["filter"],
    "finalize": ["finalize"],
    "rebalance": ["rebalance"],
}


def register_stage(name: str, target: str, group: str | None = None) -> None:
    STAGE_REGISTRY[name] = target
    if group:
        STAGE_GROUPS.setdefault(group, [])
        if name not in STAGE_GROUPS[group]:
            STAGE_GROUPS[group].append(name)


def stage_class(name: str) -> type[Stage]:
    try:
        target = STAGE_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGE_REGISTRY)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def manifest_url(config: PipelineConfig, stage: str, task_id: str) -> str:
    return storage.join(config.output, "_manifests", stage, f"{task_id}.json")


def read_manifest(config: PipelineConfig, stage: str, task_id: str) -> dict[str, Any] | None:
    url = manifest_url(config, stage, task_id)
    if not storage.exists(url, config.storage_options):
        return None
    return storage.read_json(url, config.storage_options)


def check_manifest(config: PipelineConfig, manifest: dict[str, Any] | None) -> bool:
    """True when the task is complete for this config; raise if it was made by another config."""
    if manifest is None:
        return False
    if manifest.get("config_hash") != config.content_hash():
        raise ConfigMismatchError(
            f"{config.output} holds task {manifest.get('stage')}/{manifest.get('task_id')} made with config "
            f"{manifest.get('config_hash')}, but this run's config is {config.content_hash()}. "
            "Outputs of different configs are never mixed: choose a new --output, or delete the old one."
        )
    return True


def _maybe_inject_fault(config: PipelineConfig, task: Task) -> None:
    """Test switch: BABELSIEVE_FAULT=stage:task_id[:kill|:transient|:sleep] makes that task fail once (marker
    file): an error (default), a SIGKILL of its worker, a dropped connection (a transient error), or
    a 60 s pause before it runs normally (a long task, to interrupt)."""
    spec = os.environ.get("BABELSIEVE_FAULT")
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != task.stage or parts[1] != task.task_id:
        return
    marker = storage.join(config.output, "_faults", f"{task.stage}-{task.task_id}")
    if storage.exists(marker, config.storage_options):
        return
    storage.publish_bytes(marker, b"1", config.storage_options)
    if len(parts) > 2 and parts[2] == "kill":
        os.kill(os.getpid(), 9)
    if len(parts) > 2 and parts[2] == "sleep":
        time.sleep(60)
        return
    if len(parts) > 2 and parts[2] == "transient":
        raise ConnectionResetError(f"injected transient fault in {task.stage}/{task.task_id}")
    raise RuntimeError(f"injected fault in {task.stage}/{task.task_id}")


def execute_task(task_dict: dict[str, Any], config_json: str) -> dict[str, Any]:
    """Run one task (or skip it if already complete). Picklable entry point for every engine.

    Returns a result dict: {stage, task_id, status: done|cached, stats, files, seconds}.
    Raises :class:`TaskFailedError` when the stage raised, so engines can retry.
    """
    config = PipelineConfig.model_validate_json(config_json)
    task = Task.from_dict(task_dict)
    existing = read_manifest(config, task.stage, task.task_id)
    if check_manifest(config, existing):
        assert existing is not None
        return {
            "stage": task.stage,
            "task_id": task.task_id,
            "status": "cached",
            "stats": existing.get("stats", {}),
            "files": existing.get("files", []),
            "seconds": 0.0,
        }
    t0 = time.perf_counter()
    try:
        _maybe_inject_fault(config, task)
        stage = stage_class(task.stage)(config)
        out = stage.run(task)
    except Exception as e:  # noqa: BLE001 - reported with the task's identity, then re-raised
        raise TaskFailedError(
            f"{task.stage}/{task.task_id} ({', '.join(task.inputs[:2])}): {type(e).__name__}: {e}\n"
            + traceback.format_exc(limit=6)
        ) from None
    seconds = time.perf_counter() - t0
    manifest = {
        "version": MANIFEST_VERSION,
        "stage": task.stage,
        "task_id": task.task_id,
        "inputs": list(task.inputs),
        "params": task.params,
        "config_hash": config.content_hash(),
        "files": out.files,
        "stats": out.stats,
        "seconds": round(seconds, 3),
    }
    storage.publish_json(manifest_url(config, task.stage, task.task_id), manifest, config.storage_options)
    return {
        "stage": task.stage,
        "task_id": task.task_id,
        "status": "done",
        "stats": out.stats,
        "files": out.files,
        "seconds": seconds,
    }


def completed_files(config: PipelineConfig, stage: str, kind: str | None = None) -> list[dict[str, Any]]:
    """All files published by completed tasks of ``stage`` (from manifests), in task order.

    ``kind`` filters on the manifest entry's ``kind`` field (e.g. "documents", "removed").
    """
    base = storage.join(config.output, "_manifests", stage)
    files = []
    for url in storage.list_files(base, ".json", config.storage_options):
        m = storage.read_json(url, config.storage_options)
        if m.get("config_hash") != config.content_hash():
            continue
        for f in m.get("files", []):
            if kind is None or f.get("kind") == kind:
                files.append(f)
    return files
