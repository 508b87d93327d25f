"""The task model: stages are lists of tasks; a task writes files, then its manifest.

* A :class:`Task` is a pure function of (input files, stage config). Same inputs + same config
  -> same bytes, whichever engine runs it and however often.
* :func:`execute_task` is the only thing an engine calls. It skips a task whose manifest is
  *current* (see :func:`check_manifest`), refuses one whose manifest has a different config hash,
  runs the stage, publishes the outputs atomically and writes the manifest **last**: the manifest
  is the only proof of completion, so a task killed at any point is simply run again. Files the
  task's previous manifest listed and the new one does not are deleted after the new manifest is
  written (write, then retire).
* A manifest is current when it has the run's config hash, the task's :meth:`Task.identity` (its
  inputs, by path relative to the output and by the sha256/size the upstream manifests recorded,
  and its parameters) and every file it lists exists with the recorded size.
* Paths in manifests are relative to the output root (version 2), so an output can be copied or
  moved and resumed there. Version-1 manifests (paths as given) are still read, never trusted as
  current: their tasks are rerun.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from babelsieve.pipeline import storage
from babelsieve.pipeline.config import PipelineConfig

MANIFEST_VERSION = 2
# keys of a manifest file entry that hold a path below the output root
_PATH_KEYS = ("path", "source")


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
    # Content of the inputs as recorded by the upstream manifests (:func:`files_digest`); empty for
    # inputs outside the output (WARC shards, previous runs' signatures), known by path only.
    input_digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(stage=d["stage"], task_id=d["task_id"], inputs=tuple(d["inputs"]), params=d.get("params", {}),
                   input_digest=d.get("input_digest", ""))

    def identity(self, output: str) -> str:
        """What the task reads: its inputs (paths relative to ``output``, plus their recorded content),
        its parameters. A manifest made for another identity is not this task's result."""
        blob = json.dumps({"inputs": [relative_path(output, p) for p in self.inputs], "params": self.params,
                           "input_digest": self.input_digest}, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def files_digest(entries: list[dict[str, Any]]) -> str:
    """Digest of upstream manifest file entries by content (sha256, bytes, rows), in the given order.

    Paths are left out on purpose: the task's relative input paths are part of its identity already."""
    blob = json.dumps([[e.get("sha256"), e.get("bytes"), e.get("rows")] for e in entries], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def relative_path(output: str, path: str) -> str:
    """``path`` relative to the output root when it lies below it; else unchanged (external input)."""
    root = output.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def _is_relative(path: str) -> bool:
    return "://" not in path and not path.startswith("/")


def manifest_to_storage(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as stored: paths below ``output`` relative to it, ``version`` 2."""
    m = dict(manifest)
    m["version"] = MANIFEST_VERSION
    m["inputs"] = [relative_path(output, p) for p in m.get("inputs", [])]
    m["files"] = [{k: (relative_path(output, v) if k in _PATH_KEYS and isinstance(v, str) else v)
                   for k, v in f.items()} for f in m.get("files", [])]
    return m


def manifest_from_storage(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest with its relative paths resolved below ``output`` (where it is now).

    Version-1 manifests kept paths as given (absolute, or relative to the working directory of the
    run): they are returned unchanged and never counted as current (:func:`check_manifest`)."""
    if not isinstance(manifest, dict) or manifest.get("version", 1) < 2:
        return manifest
    m = dict(manifest)

    def resolve(p: Any) -> Any:
        return storage.join(output, p) if isinstance(p, str) and _is_relative(p) else p

    m["inputs"] = [resolve(p) for p in m.get("inputs", [])]
    m["files"] = [{k: (resolve(v) if k in _PATH_KEYS else v) for k, v in f.items()} for f in m.get("files", [])]
    return m


@dataclass
class TaskOutput:
    """What a stage's ``run`` returns: published files (manifest entries) and statistics."""

    files: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A pipeline stage. ``plan`` runs on the driver, ``run`` in a worker (any engine)."""

    name: ClassVar[str]
    # True when plan() selects some of the stage's tasks (extract: a shard range), so tasks outside
    # the plan are kept; False when it lists every task the current upstream outputs call for.
    plan_selects: ClassVar[bool] = False

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
    "classify": "babelsieve.pipeline.classify_stage:ClassifyStage",
    "finalize": "babelsieve.pipeline.finalize_stage:FinalizeStage",
    "rebalance": "babelsieve.pipeline.rebalance:RebalanceStage",
}

# User-facing stage names (config `stages:`) -> the task stages they expand to, in order.
STAGE_GROUPS: dict[str, list[str]] = {
    "extract": ["extract"],
    "dedup": ["dedup_signatures", "dedup_buckets", "dedup_clusters", "dedup_annotate"],
    "filter": ["filter"],
    "classify": ["classify"],
    "finalize": ["finalize"],
    "rebalance": ["rebalance"],
}


# The task stage that publishes each user-level stage's documents (what the next stage reads).
DOCUMENT_STAGE: dict[str, str] = {
    "extract": "extract",
    "dedup": "dedup_annotate",
    "filter": "filter",
    "classify": "classify",
    "finalize": "finalize",
    "rebalance": "rebalance",
}


def input_stage(config: PipelineConfig, group: str) -> str:
    """The task stage whose documents the user-level stage ``group`` reads: the document stage of the
    configured stage just before it (``config.stages`` is the pipeline's order), ``extract`` if none.
    The one place that chains stages, so a stage inserted anywhere (``classify``) is picked up."""
    stages = list(config.stages)
    before = stages[: stages.index(group)] if group in stages else stages
    for g in reversed(before):
        if g in DOCUMENT_STAGE:
            return DOCUMENT_STAGE[g]
    return "extract"


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
    """The task's manifest with paths resolved below the output, or None."""
    url = manifest_url(config, stage, task_id)
    if not storage.exists(url, config.storage_options):
        return None
    return manifest_from_storage(config.output, storage.read_json(url, config.storage_options))


def publish_manifest(config: PipelineConfig, manifest: dict[str, Any]) -> None:
    """Write a task's manifest (paths made relative to the output root)."""
    url = manifest_url(config, manifest["stage"], manifest["task_id"])
    storage.publish_json(url, manifest_to_storage(config.output, manifest), config.storage_options)


class FileSizes:
    """Sizes of published files, for verifying manifests. With ``by_listing`` (the driver checks many
    tasks) each directory is listed once -- one LIST instead of a HEAD per file on object storage."""

    def __init__(self, storage_options: dict[str, Any] | None, by_listing: bool = False):
        self.storage_options = storage_options
        self.by_listing = by_listing
        self._dirs: dict[str, dict[str, int]] = {}

    def size(self, url: str) -> int | None:
        """Size of ``url`` in bytes, None when it does not exist."""
        fs, path = storage.filesystem(url, self.storage_options)
        if not self.by_listing:
            try:
                return int(fs.size(path))
            except (FileNotFoundError, OSError):
                return None
        parent = path.rsplit("/", 1)[0]
        if parent not in self._dirs:
            try:
                listing = fs.ls(parent, detail=True)
            except (FileNotFoundError, OSError):
                listing = []
            self._dirs[parent] = {e["name"].rstrip("/"): int(e.get("size") or 0) for e in listing
                                  if e.get("type") != "directory"}
        return self._dirs[parent].get(path.rstrip("/"))


def missing_files(config: PipelineConfig, manifest: dict[str, Any], sizes: FileSizes | None = None) -> list[str]:
    """Files a manifest lists that are gone or whose size differs from the recorded one."""
    sizes = sizes or FileSizes(config.storage_options)
    bad = []
    for f in manifest.get("files", []):
        got = sizes.size(f["path"])
        if got is None or (f.get("bytes") is not None and got != int(f["bytes"])):
            bad.append(f["path"])
    return bad


def check_manifest(config: PipelineConfig, manifest: dict[str, Any] | None, task: Task | None = None,
                   sizes: FileSizes | None = None) -> bool:
    """True when the manifest proves ``task`` complete: same config hash, same identity (inputs and
    parameters), every listed file present with its recorded size. Raises if another config made it.

    Without ``task`` only the config hash is checked (readers that do not plan)."""
    if manifest is None:
        return False
    if manifest.get("config_hash") != config.content_hash():
        raise ConfigMismatchError(
            f"{config.output} holds task {manifest.get('stage')}/{manifest.get('task_id')} made with config "
            f"{manifest.get('config_hash')}, but this run's config is {config.content_hash()}. "
            "Outputs of different configs are never mixed: choose a new --output, or delete the old one."
        )
    if task is None:
        return True
    if manifest.get("version", 1) < 2 or manifest.get("identity") != task.identity(config.output):
        return False
    return not missing_files(config, manifest, sizes)


def retire_files(config: PipelineConfig, old: dict[str, Any] | None, keep: list[dict[str, Any]]) -> None:
    """Delete the files of an old manifest that ``keep`` does not list (only below the output root:
    a version-1 manifest of a copied output may still name the original's files)."""
    if not old:
        return
    root = config.output.rstrip("/") + "/"
    kept = {f["path"] for f in keep}
    for f in old.get("files", []):
        p = f.get("path")
        if isinstance(p, str) and p.startswith(root) and p not in kept:
            storage.remove(p, config.storage_options, recursive=False)


def retire_stale(config: PipelineConfig, manifest: dict[str, Any] | None) -> None:
    """Delete a manifest that is not current for its task (other inputs, or files missing), and its
    files: the task is about to be rerun, and until it succeeds no later stage may plan from it."""
    if manifest is None:
        return
    retire_files(config, manifest, [])
    storage.remove(manifest_url(config, manifest["stage"], manifest["task_id"]), config.storage_options,
                   recursive=False)


def retire_unplanned(config: PipelineConfig, stage: Stage, tasks: list[Task]) -> int:
    """Delete the manifests (and files) of ``stage``'s tasks that its plan no longer has.

    A global stage's plan covers every completed upstream output, so a task it no longer plans was
    made from a superseded set (e.g. a filter task of a dedup file whose index moved when shards were
    added); left in place, later stages would read its files. Stages whose plan is a selection (a
    shard range of extract) keep their other tasks (:func:`completed_files` leaves out those whose
    files are missing). Returns how many tasks were retired."""
    if stage.plan_selects:
        return 0
    planned = {t.task_id for t in tasks}
    base = storage.join(config.output, "_manifests", stage.name)
    n = 0
    for url in storage.list_files(base, ".json", config.storage_options):
        task_id = url.rsplit("/", 1)[1][: -len(".json")]
        if task_id in planned:
            continue
        try:
            m = manifest_from_storage(config.output, storage.read_json(url, config.storage_options))
        except (ValueError, OSError):
            m = None
        if isinstance(m, dict) and m.get("config_hash") not in (None, config.content_hash()):
            continue  # another config's task: check_manifest refuses the run elsewhere; never delete it
        retire_files(config, m if isinstance(m, dict) else None, [])
        storage.remove(url, config.storage_options, recursive=False)
        n += 1
    return n


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
    if check_manifest(config, existing, task):
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
        "input_digest": task.input_digest,
        "identity": task.identity(config.output),
        "config_hash": config.content_hash(),
        "files": out.files,
        "stats": out.stats,
        "seconds": round(seconds, 3),
    }
    publish_manifest(config, manifest)
    retire_files(config, existing, out.files)  # after the new manifest: a failure leaves a consistent state
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

    ``kind`` filters on the manifest entry's ``kind`` field (e.g. "documents", "removed"). A manifest
    whose files are not all there with their recorded sizes is left out: no later task is planned
    from it (e.g. an extract task of another shard range whose file was deleted; that range's next
    run redoes it). Sizes come from one listing per directory.
    """
    base = storage.join(config.output, "_manifests", stage)
    files = []
    sizes = FileSizes(config.storage_options, by_listing=True)
    for url in storage.list_files(base, ".json", config.storage_options):
        m = manifest_from_storage(config.output, storage.read_json(url, config.storage_options))
        if m.get("config_hash") != config.content_hash() or missing_files(config, m, sizes):
            continue
        for f in m.get("files", []):
            if kind is None or f.get("kind") == kind:
                files.append(f)
    return files


def run_marker(config: PipelineConfig) -> dict[str, Any]:
    """The content of ``_run.json``: config hash and config, with the output root as ``.`` (the
    directory holding the marker), so a copied or moved output carries no path to the original."""
    saved = config.public_dict()  # credentials redacted: _run.json is published with the data
    saved["output"] = "."
    return {"config_hash": config.content_hash(), "config": saved}
