"""Run the configured stages in order on the configured engine, with progress and a summary."""

from __future__ import annotations

import errno
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig, redact_secrets
from babelsieve.pipeline.core.inputs import expand_inputs
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.output_lock import LockLostError, OutputLock
from babelsieve.pipeline.core.task_stats import TaskStats
from babelsieve.pipeline.core.tasks import (
    ConfigMismatchError,
    FileSizes,
    check_manifest,
    iter_manifests,
    retire_stale,
    retire_unplanned,
    run_marker,
    write_manifest_index,
)
from babelsieve.pipeline.engines import Engine, get_engine
from babelsieve.pipeline.stages import STAGE_GROUPS, stage_class


@dataclass
class StageSummary:
    stage: str
    tasks: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    docs_in: int = 0
    docs_out: int = 0
    removed: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, res: dict[str, Any]) -> None:
        status = res["status"]
        setattr(self, status, getattr(self, status) + 1)
        if status == "failed":
            self.failures.append({"task": res["task_id"], "inputs": res.get("inputs", []),
                                  "error": res.get("error", "")})
            return
        st = TaskStats.from_dict(res.get("stats"))
        self.docs_in += st.docs_in or 0
        self.docs_out += st.docs_out or 0
        self.removed.update(st.removed)
        self.skipped.update(st.skipped)
        self.problems.update(st.problem_counts)


@dataclass
class RunSummary:
    stages: list[StageSummary] = field(default_factory=list)

    @property
    def failed_tasks(self) -> int:
        return sum(s.failed for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [
                {
                    "stage": s.stage, "tasks": s.tasks, "done": s.done, "cached": s.cached, "failed": s.failed,
                    "docs_in": s.docs_in, "docs_out": s.docs_out, "removed": dict(s.removed),
                    "skipped": dict(s.skipped), "problems": dict(s.problems), "seconds": round(s.seconds, 2),
                    "failures": s.failures,
                }
                for s in self.stages
            ]
        }


def expand_stages(config: PipelineConfig, only: list[str] | None = None) -> list[str]:
    """User-level stage names (all configured, or ``only`` these) -> task stages, in pipeline order."""
    out: list[str] = []
    for name in config.stages:
        if only and name not in only:
            continue
        group = STAGE_GROUPS.get(name)
        if not group:
            raise ValueError(f"stage {name!r} is not available in this installation")
        out.extend(group)
    return out


def _check_run_marker(config: PipelineConfig) -> None:
    url = RunLayout(config.output).run_marker
    try:  # one GET (an exists() first costs a HEAD, and a LIST when the marker is missing)
        previous = storage.read_json(url, config.storage_options)
    except FileNotFoundError:
        previous = None
    if previous is not None:
        if previous.get("config_hash") != config.content_hash():
            raise ConfigMismatchError(
                f"{config.output} was written by a run with config hash {previous.get('config_hash')}; this "
                f"config hashes to {config.content_hash()}. Refusing to mix outputs: use another --output."
            )
        return
    storage.publish_json(url, run_marker(config), config.storage_options)


def run_pipeline(config: PipelineConfig, console: Console | None = None, engine: Engine | None = None,
                 show_progress: bool = True, only: list[str] | None = None) -> RunSummary:
    """Run every configured stage; failed tasks are reported, never fatal to the run.

    ``only`` restricts the run to some of the configured stages (user-level names such as
    ``extract`` or ``dedup``), e.g. one Airflow task per stage; earlier stages must be complete.

    The output is locked for the whole run (:mod:`.output_lock`): configuration problems that can
    be found without writing (a bad shard range, an output of another config) are raised before
    the lock is taken, so a refused run writes nothing.
    """
    if only:
        unknown = sorted(set(only) - set(config.stages))
        if unknown:
            raise ValueError(f"--only {','.join(unknown)}: not among the configured stages {config.stages}")
    if config.inputs.shards and "extract" in expand_stages(config, only):
        expand_inputs(config.inputs.paths, config.inputs.shards, config.storage_options)  # ConfigError if empty
    if storage.exists(RunLayout(config.output).run_marker, config.storage_options):
        _check_run_marker(config)  # read-only when the marker exists: refuses another config
    lock = OutputLock.acquire(config)
    try:
        return _run_locked(config, console, engine, show_progress, only, lock)
    except KeyboardInterrupt:
        if lock.lost:  # the heartbeat interrupted the run: say why
            raise LockLostError(f"stopped: {lock.lost}. Another run may be writing {config.output}.") from None
        raise
    finally:
        lock.release()


def _run_locked(config: PipelineConfig, console: Console | None, engine: Engine | None, show_progress: bool,
                only: list[str] | None, lock: OutputLock) -> RunSummary:
    """:func:`run_pipeline` once the output's lock is held."""
    console = console or Console(stderr=True)
    if lock.record.get("took_over_from"):
        console.print(f"took over the lock of run {lock.record['took_over_from']}: its process is gone from this host")
    _check_run_marker(config)
    engine = engine or get_engine(config)
    summary = RunSummary()
    try:
        for stage_name in expand_stages(config, only):
            stage = stage_class(stage_name)(config)
            t0 = time.perf_counter()
            tasks = stage.plan()
            retire_unplanned(config, stage, tasks)
            ss = StageSummary(stage_name, tasks=len(tasks))
            sizes = FileSizes(config.storage_options, by_listing=True, root=config.output)
            # skip completed tasks on the driver: no worker start-up for a finished stage. The stage's manifests
            # are streamed (one listing + the stage's index, not a GET per task) and each dropped once checked:
            # extract's 90,000 manifests of a snapshot would not fit in memory as dicts
            planned = {t.task_id: t for t in tasks}
            cached: set[str] = set()
            for task_id, m in iter_manifests(config, stage_name) if tasks else ():  # nothing planned: nothing to check
                t = planned.get(task_id)
                if t is None:
                    continue
                if check_manifest(config, m, t, sizes):
                    ss.add({"task_id": task_id, "status": "cached", "stats": m.get("stats", {})})
                    cached.add(task_id)
                else:
                    retire_stale(config, m)  # other inputs or files missing: never planned from again
            todo = [t for t in tasks if t.task_id not in cached]
            results: list[dict[str, Any]] = []
            log: list[str] = []
            if todo:
                with Progress(
                    TextColumn(f"[bold]{stage_name:<16}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                    console=console, disable=not show_progress, transient=False,
                ) as progress:
                    bar = progress.add_task(stage_name, total=len(todo), rate="")

                    # the loop's values bound as defaults: run_tasks calls this only in this iteration
                    def on_result(res: dict[str, Any], *, ss: StageSummary = ss, log: list[str] = log,
                                  t0: float = t0, bar: TaskID = bar) -> None:
                        ss.add(res)
                        log.append(_log_line(res))
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        progress.update(bar, advance=1, rate=f"{ss.docs_in / elapsed:,.1f} docs/s")

                    results = engine.run_tasks(todo, on_result)
            if log:
                _append_log(config, stage_name, log)
            stage.finish(results)
            if todo or ss.tasks:
                write_manifest_index(config, stage_name)  # later stages and runs read it in one GET
            ss.seconds = time.perf_counter() - t0
            summary.stages.append(ss)
    finally:
        engine.close()
    if lock.lost:
        raise LockLostError(f"{lock.lost}; this run's results may be mixed with another's: rerun to verify")
    _publish_summary(config, summary, console)
    return summary


def _publish_summary(config: PipelineConfig, summary: RunSummary, console: Console) -> None:
    """``_summary.json``; a storage error (disk full) is reported, and the summary is still printed."""
    url = RunLayout(config.output).summary
    try:
        storage.publish_json(url, redact_secrets(summary.to_dict()), config.storage_options)
    except OSError as e:
        console.print("[yellow]warning:[/] " + escape(f"could not write {url}: {describe_os_error(e)}"),
                      soft_wrap=True)


def _log_line(res: dict[str, Any]) -> str:
    st = TaskStats.from_dict(res.get("stats"))
    return json.dumps(redact_secrets({
        "time": round(time.time(), 3), "stage": res.get("stage"), "task_id": res.get("task_id"),
        "inputs": res.get("inputs", []), "status": res.get("status"), "seconds": round(res.get("seconds", 0.0), 3),
        "docs_in": st.docs_in, "docs_out": st.docs_out, "removed": st.removed, "skipped": st.skipped,
        "error": (res.get("error") or "").splitlines()[0] if res.get("error") else None,
    }), sort_keys=True)


def _append_log(config: PipelineConfig, stage: str, lines: list[str]) -> None:
    """Structured log: one JSON line per task attempt, one file per stage and run attempt."""
    name = f"{stage}-{int(time.time() * 1000)}.jsonl"
    url = storage.join(RunLayout(config.output).logs_dir(), name)
    try:
        storage.publish_bytes(url, ("\n".join(lines) + "\n").encode(), config.storage_options)
    except OSError as e:  # the log is a record, not a result: a full disk must not hide the summary
        Console(stderr=True, soft_wrap=True).print(
            "[yellow]warning:[/] " + escape(f"could not write the task log {url}: {describe_os_error(e)}"))


def print_summary(summary: RunSummary, console: Console) -> None:
    table = Table(title="babelsieve run summary")
    for col in ("stage", "tasks", "done", "cached", "failed", "docs in", "docs out", "removed", "skipped", "seconds"):
        table.add_column(col, justify="right" if col not in ("stage",) else "left")
    for s in summary.stages:
        table.add_row(
            s.stage, str(s.tasks), str(s.done), str(s.cached), str(s.failed), f"{s.docs_in:,}", f"{s.docs_out:,}",
            f"{sum(s.removed.values()):,}", f"{sum(s.skipped.values()):,}", f"{s.seconds:.1f}",
        )
    console.print(table)
    for s in summary.stages:
        if s.removed:
            console.print(f"[bold]{s.stage}[/] removed: "
                          + ", ".join(f"{k}={v}" for k, v in sorted(s.removed.items())))
        if s.skipped:
            console.print(f"[bold]{s.stage}[/] skipped records: "
                          + ", ".join(f"{k}={v}" for k, v in sorted(s.skipped.items())))
        if s.problems:
            console.print(f"[bold]{s.stage}[/] input problems: "
                          + ", ".join(f"{k}={v}" for k, v in sorted(s.problems.items())))
        for f in s.failures:
            first = redact_secrets(f["error"].splitlines()[0]) if f["error"] else ""
            console.print(f"[red]FAILED[/] {s.stage}/{f['task']} {' '.join(redact_secrets(f['inputs'][:1]))}: {first}")


def describe_os_error(e: OSError) -> str:
    """One line for a storage error: what happened, to which path, and what to do."""
    path = e.filename or ""
    what = e.strerror or str(e)
    hint = {
        errno.ENOSPC: "free space on that disk, then rerun to resume",
        errno.EFBIG: "the file size limit (ulimit -f) or the file system's limit was reached",
        errno.EDQUOT: "the disk quota is exhausted: free space, then rerun to resume",
        errno.EACCES: "the output must be writable by this user",
        errno.EPERM: "the output must be writable by this user",
        errno.EROFS: "the output is on a read-only file system: choose another --output",
        errno.ENOTDIR: "give --output a directory, or a path where one can be made",
        errno.EEXIST: "a file is in the way of a directory: choose another --output",
    }.get(e.errno or 0, "")
    return f"{path}: {what}" + (f" ({hint})" if hint else "") if path else what + (f" ({hint})" if hint else "")
