"""Slurm engine: one job array per stage; each array index runs a slice of the stage's tasks.

Every array task runs ``python -m babelsieve.pipeline.engines.slurm_engine PLAN INDEX``, which
calls the same :func:`~babelsieve.pipeline.engines.worker.run_with_retries` (hence the same
``execute_task``) as every engine: the same files, the same manifests, the same bytes.

Two ways to run, because a later stage's plan depends on the earlier stages' *outputs*
(dedup plans from extract's manifests, filter from dedup's, ...):

* ``--wait`` (default): the driver submits **one stage at a time**. It plans the stage after the
  previous one finished (exactly as the local engine does: :func:`runner.run_pipeline`), writes
  the task list to ``_slurm/<stage>-<n>.json``, submits an array of ``min(tasks, max_array_size)``
  indices (index *i* runs tasks *i*, *i + size*, ...), and follows it: results from the
  per-index result files (written right after each task's manifest), queue state from ``squeue``
  and, for an index that left the queue without finishing its slice, its end state from
  ``scontrol show job`` (TIMEOUT, CANCELLED, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY...). The
  unfinished tasks of such an index are resubmitted as a new array, up to
  ``engine_options.max_retries`` times; then they are reported failed with the Slurm state and
  the log file. A bad shard is caught inside the task, fails once and is named in the summary.
  No ``sacct``: clusters without accounting (slurmdbd) are common and ``sacct`` then knows nothing;
  finished jobs stay visible to ``scontrol`` for ``MinJobAge`` (300 s by default).
* ``--no-wait``: the **whole run is submitted at once** and no driver needs to stay alive. The
  first stage with work left is planned on the submitting machine; every later stage is an array
  chained with ``--dependency=afterok:<previous array>`` whose indices **plan the stage
  themselves** when they start (planning is deterministic, so every index computes the same list
  and takes its own slice; completed tasks are skipped by their manifests). Those arrays cannot
  know their task count in advance, so they are as wide as the first submitted array or as the
  partition's CPUs / cpus_per_task (``max_concurrent`` when set), whichever is larger, capped by
  ``max_array_size``; spare indices exit at once. Array tasks write the task logs (``_logs/``)
  themselves, so ``babelsieve status OUTPUT`` shows done / failed / pending.

``afterok`` rather than ``afterany`` + a check: a bad shard does not fail its array task (the
error is caught and logged), so the only thing that fails an index is Slurm killing it or the
task runner crashing -- and then the next stage must *not* start: dedup or rebalance over a
partial previous stage would silently write a different dataset. ``--kill-on-invalid-dep=yes``
removes the dependent arrays instead of leaving them pending forever; rerunning the same
command resubmits only the unfinished tasks (manifests). In ``--no-wait`` mode retries are that
rerun (and Slurm's own requeue on node failure, where the cluster enables it).

Logs: each array task's stdout/stderr is ``_logs/slurm/<stage>-<jobid>_<index>.log``; a failed
task's error names that file on its first line, which is what ``babelsieve logs OUTPUT --failed``
and the run summary show.

Storage: the task lists, batch scripts, per-index results and the Slurm log files are plain
files, so the output must be on a filesystem that every node sees (NFS, Lustre, GPFS, BeeGFS).
With an ``s3://`` output they go to ``./babelsieve-slurm/`` in the submitting directory, which
must then be shared.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import Task, TaskFailedError, check_manifest, read_manifest
from babelsieve.pipeline.engines import Engine, ResultCallback, failed_result
from babelsieve.pipeline.engines.worker import TransientTaskError, run_with_retries
from babelsieve.pipeline.stages import stage_class

POLL_ENV = "BABELSIEVE_SLURM_POLL_S"  # seconds between two looks at the queue (default 2)
# Test switch: BABELSIEVE_SLURM_TEST_SLEEP=stage:task_id:seconds makes the first attempt of that task
# sleep before running (marker file), so tests can cancel it or run it over its time limit.
TEST_SLEEP_ENV = "BABELSIEVE_SLURM_TEST_SLEEP"
# An index that left the queue is given this long for its last result lines to appear (NFS caches).
GONE_GRACE_S = 5.0


class SlurmSubmitError(ValueError):
    """Slurm refused a job or is not reachable (a configuration problem: exit status 2)."""


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------
def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def slurm_dir(config: PipelineConfig) -> Path:
    """Where task lists, batch scripts and per-index results go (must be shared by all nodes)."""
    if _is_local(config.output):
        return Path(config.output.removeprefix("file://")).absolute() / "_slurm"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", config.output.split("://", 1)[1]).strip("_")
    return Path.cwd() / "babelsieve-slurm" / name


def log_dir(config: PipelineConfig) -> Path:
    """Per-array-task stdout/stderr: OUTPUT/_logs/slurm (or next to slurm_dir for object storage)."""
    if _is_local(config.output):
        return Path(RunLayout(config.output.removeprefix("file://")).logs_dir()).absolute() / "slurm"
    return slurm_dir(config) / "logs"


def _write_atomic(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # owner-only: a task list carries the config, whose storage_options may hold credentials
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


def _next_run_name(config: PipelineConfig, stage: str) -> str:
    """``<stage>-<n>``, n one more than any earlier submission of this stage into this output. The
    name is claimed by creating its task list file exclusively: two drivers never share one."""
    d = slurm_dir(config)
    d.mkdir(parents=True, exist_ok=True)
    n = max((int(m.group(1)) for p in d.glob(f"{stage}-*.json")
             if (m := re.fullmatch(re.escape(stage) + r"-(\d+)\.json", p.name))), default=0)
    while True:
        n += 1
        try:
            os.close(os.open(d / f"{stage}-{n}.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return f"{stage}-{n}"
        except FileExistsError:
            continue


# --------------------------------------------------------------------------------------------
# Talking to Slurm
# --------------------------------------------------------------------------------------------
def _slurm(cmd: list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise SlurmSubmitError(f"{cmd[0]} not found: the slurm engine needs the Slurm client commands "
                               "(sbatch, squeue, scontrol, scancel) on this machine")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SlurmSubmitError(f"{' '.join(cmd[:2])} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def check_cluster(config: PipelineConfig) -> None:
    """Fail early, naming the key, when the configured partition does not exist."""
    part = config.engine_options.slurm.partition
    proc = _slurm(["sinfo", "--all", "-h", "-o", "%R"], check=False)  # --all: hidden partitions too
    if proc.returncode != 0:
        raise SlurmSubmitError(f"cannot reach the Slurm controller (sinfo: {proc.stderr.strip()})")
    if part:
        known = sorted(set(proc.stdout.split()))
        if part not in known:
            raise SlurmSubmitError(f"engine_options.slurm.partition: no partition {part!r} on this cluster "
                                   f"(partitions: {', '.join(known) or 'none'})")


def partition_slots(config: PipelineConfig) -> int:
    """Array tasks the partition can run at once: its CPUs / cpus per task (``max_concurrent`` if set)."""
    sc = config.engine_options.slurm
    if sc.max_concurrent:
        return sc.max_concurrent
    proc = _slurm(["sinfo", "--all", "-h", "-o", "%P %C"], check=False)
    total = 0
    for line in proc.stdout.splitlines():
        name, _, cpus = line.partition(" ")
        default = name.endswith("*")
        if (sc.partition and name.rstrip("*") == sc.partition) or (not sc.partition and default):
            parts = cpus.strip().split("/")  # allocated/idle/other/total
            total = int(parts[-1]) if parts[-1].isdigit() else 0
    return max(1, total // _cpus_per_task(config))


def _cpus_per_task(config: PipelineConfig) -> int:
    return config.engine_options.slurm.cpus_per_task or max(1, math.ceil(config.engine_options.cpus_per_task))


def _sbatch_options(config: PipelineConfig) -> list[str]:
    sc = config.engine_options.slurm
    opts = [f"--cpus-per-task={_cpus_per_task(config)}"]
    for flag, value in (("--partition", sc.partition), ("--account", sc.account), ("--qos", sc.qos),
                        ("--time", sc.time), ("--mem", sc.mem), ("--mem-per-cpu", sc.mem_per_cpu)):
        if value:
            opts.append(f"{flag}={value}")
    if not sc.mem and not sc.mem_per_cpu and config.engine_options.memory_per_task_mb:
        opts.append(f"--mem={config.engine_options.memory_per_task_mb}")
    return opts


def _batch_script(config: PipelineConfig, plan: Path) -> str:
    sc = config.engine_options.slurm
    # Without env_setup the driver's interpreter is used (same path on a shared filesystem);
    # with it, whatever `python` the set-up lines put first on PATH (module load, a venv).
    python = "python" if sc.env_setup else shlex.quote(sys.executable)
    lines = ["#!/bin/bash", f"# babelsieve slurm engine: {plan.name}", "set -e", *sc.env_setup,
             f'exec {python} -m babelsieve.pipeline.engines.slurm_engine {shlex.quote(str(plan))} '
             '"${SLURM_ARRAY_TASK_ID:-0}"']
    return "\n".join(lines) + "\n"


def submit_array(config: PipelineConfig, run_name: str, size: int, dependency: str | None = None,
                 requeue: bool = True) -> str:
    """sbatch an array of ``size`` indices for the task list ``_slurm/<run_name>.json``; the job id."""
    sc = config.engine_options.slurm
    d = slurm_dir(config)
    plan = d / f"{run_name}.json"
    script = d / f"{run_name}.sh"
    _write_atomic(script, _batch_script(config, plan))
    logs = log_dir(config)
    logs.mkdir(parents=True, exist_ok=True)
    array = f"0-{size - 1}" + (f"%{sc.max_concurrent}" if sc.max_concurrent else "")
    stage = run_name.rsplit("-", 1)[0]
    cmd = ["sbatch", "--parsable", f"--array={array}", f"--job-name=babelsieve-{stage}",
           f"--output={logs}/{stage}-%A_%a.log", f"--chdir={Path.cwd()}", "--export=ALL",
           *_sbatch_options(config)]
    cmd.append("--requeue" if requeue else "--no-requeue")
    if dependency:
        cmd += [f"--dependency={dependency}", "--kill-on-invalid-dep=yes"]
    cmd += [*sc.sbatch_args, str(script)]
    proc = _slurm(cmd, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().replace("sbatch: error: ", "")
        hint = ""
        if "partition" in msg.lower():
            hint = " (engine_options.slurm.partition)"
        elif "account" in msg.lower():
            hint = " (engine_options.slurm.account)"
        elif "qos" in msg.lower():
            hint = " (engine_options.slurm.qos)"
        elif "time limit" in msg.lower():
            hint = " (engine_options.slurm.time)"
        elif "memory" in msg.lower():
            hint = " (engine_options.slurm.mem / mem_per_cpu)"
        raise SlurmSubmitError(f"sbatch refused the {stage} array{hint}: {msg}")
    return proc.stdout.strip().split(";")[0]


def queued_indices(job_ids: list[str]) -> dict[str, dict[int, str]] | None:
    """job id -> {array index: state} of the indices still in the queue; None if squeue failed."""
    if not job_ids:
        return {}
    out: dict[str, dict[int, str]] = {j: {} for j in job_ids}
    for j in job_ids:  # one call per job: squeue rejects a whole list if one id was purged
        proc = _slurm(["squeue", "-h", "-r", "-j", j, "-o", "%F %K %T"], check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                continue  # purged from the controller: nothing of it is queued
            return None
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[0] != j:
                continue
            for idx in _expand_indices(parts[1]):
                out[j][idx] = parts[2]
    return out


def _expand_indices(spec: str) -> list[int]:
    """'3' -> [3]; '4-7%2' -> [4..7]; '1,3' -> [1, 3] (squeue -r prints single indices; ranges defensively)."""
    spec = spec.split("%")[0]
    out: list[int] = []
    for part in spec.strip("[]").split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if a.isdigit() and b.isdigit():
                out.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            out.append(int(part))
    return out


def job_state(job_id: str, index: int) -> str:
    """End state of one array task (TIMEOUT, CANCELLED, ...) from scontrol, or 'UNKNOWN' once purged."""
    proc = _slurm(["scontrol", "-o", "show", "job", f"{job_id}_{index}"], check=False)
    m = re.search(r"\bJobState=(\S+)", proc.stdout)
    return m.group(1) if m else "UNKNOWN"


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        _slurm(["scancel", *job_ids], check=False)


# --------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------
@dataclass
class _Submission:
    job_id: str
    run_name: str
    slices: list[list[Task]]
    read_lines: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    gone_since: dict[int, float] = field(default_factory=dict)
    resolved: set[int] = field(default_factory=set)  # ended normally or handled as killed

    @property
    def active(self) -> bool:
        return len(self.resolved) < len(self.slices)


def _slices(tasks: list[Task], size: int) -> list[list[Task]]:
    return [tasks[i::size] for i in range(size)]


def _write_plan(config: PipelineConfig, run_name: str, tasks: list[Task] | None, size: int,
                write_logs: bool) -> None:
    plan = {"run": run_name, "stage": run_name.rsplit("-", 1)[0], "size": size, "write_logs": write_logs,
            "config": config.model_dump(mode="json"),
            "tasks": None if tasks is None else [t.to_dict() for t in tasks]}
    _write_atomic(slurm_dir(config) / f"{run_name}.json", json.dumps(plan))


class SlurmEngine(Engine):
    """Submits each stage's tasks as one job array and follows it (see the module docstring)."""

    name = "slurm"

    def __init__(self, config: PipelineConfig, cancel_on_interrupt: bool = False,
                 console: Console | None = None) -> None:
        super().__init__(config)
        self.cancel_on_interrupt = cancel_on_interrupt
        self.console = console or Console(stderr=True)
        self.poll_s = float(os.environ.get(POLL_ENV, "2"))
        self.submitted: list[str] = []  # every job id this engine submitted
        self._checked = False

    def _submit(self, tasks: list[Task]) -> _Submission:
        sc = self.config.engine_options.slurm
        stage = tasks[0].stage
        size = min(len(tasks), sc.max_array_size)
        run_name = _next_run_name(self.config, stage)
        _write_plan(self.config, run_name, tasks, size, write_logs=False)  # the runner writes _logs/
        # --no-requeue: a node failure ends the index, and this driver resubmits it (counted as a retry)
        job_id = submit_array(self.config, run_name, size, requeue=False)
        self.submitted.append(job_id)
        self.console.print(f"slurm: {stage}: submitted job array {job_id} ({len(tasks)} task(s) in {size} "
                           f"array task(s)); logs in {log_dir(self.config)}")
        return _Submission(job_id, run_name, _slices(tasks, size))

    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        if not tasks:
            return []
        if not self._checked:
            check_cluster(self.config)
            self._checked = True
        max_retries = self.config.engine_options.max_retries
        attempts = {t.task_id: 1 for t in tasks}
        results: dict[str, dict[str, Any]] = {}
        subs = [self._submit(tasks)]
        try:
            while len(results) < len(tasks):
                queued = queued_indices([s.job_id for s in subs if s.active])
                retry: list[Task] = []
                for sub in subs:
                    if sub.active:
                        retry += self._follow(sub, queued, results, attempts, max_retries, on_result)
                if retry:
                    for t in retry:
                        attempts[t.task_id] += 1
                    subs.append(self._submit(retry))
                    continue
                if len(results) < len(tasks):
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self._interrupted([s.job_id for s in subs if s.active])
            raise
        return [results[t.task_id] for t in tasks]

    def _follow(self, sub: _Submission, queued: dict[str, dict[int, str]] | None, results: dict[str, dict[str, Any]],
                attempts: dict[str, int], max_retries: int, on_result: ResultCallback) -> list[Task]:
        """New results of one submission; the unfinished tasks of its killed indices to resubmit."""
        d = slurm_dir(self.config) / sub.run_name
        retry: list[Task] = []
        for idx, slice_ in enumerate(sub.slices):
            if idx in sub.resolved:
                continue
            for rec in _read_new_lines(d / f"{idx}.jsonl", sub.read_lines, idx):
                if rec.get("end"):
                    sub.ended.add(idx)
                    continue
                if rec["task_id"] not in results:
                    results[rec["task_id"]] = rec
                    on_result(rec)
            if idx in sub.ended:
                sub.resolved.add(idx)
                continue
            if queued is None or idx in queued.get(sub.job_id, {}):
                sub.gone_since.pop(idx, None)
                continue
            # Left the queue without its end line: give the file system a moment, then it was killed.
            first = sub.gone_since.setdefault(idx, time.monotonic())
            if time.monotonic() - first < GONE_GRACE_S:
                continue
            sub.resolved.add(idx)
            state = job_state(sub.job_id, idx)
            log = log_dir(self.config) / f"{sub.run_name.rsplit('-', 1)[0]}-{sub.job_id}_{idx}.log"
            for t in slice_:
                if t.task_id in results:
                    continue
                if attempts[t.task_id] <= max_retries:
                    self.console.print(f"slurm: {t.stage}/{t.task_id}: array task {sub.job_id}_{idx} ended "
                                       f"{state}; resubmitting (attempt {attempts[t.task_id] + 1})")
                    retry.append(t)
                else:
                    res = failed_result(t, f"killed by Slurm ({state}) on every attempt ({attempts[t.task_id]}), "
                                           f"last in array task {sub.job_id}_{idx}; log: {log}")
                    results[t.task_id] = res
                    on_result(res)
        return retry

    def _interrupted(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        ids = " ".join(job_ids)
        if self.cancel_on_interrupt:
            cancel(job_ids)
            self.console.print(f"slurm: interrupted: cancelled job array(s) {ids}")
            return
        if sys.stdin.isatty():
            try:
                answer = input(f"Cancel the submitted Slurm job array(s) {ids}? [y/N] ")
            except (EOFError, KeyboardInterrupt):
                answer = ""
            if answer.strip().lower() in ("y", "yes"):
                cancel(job_ids)
                self.console.print(f"slurm: interrupted: cancelled job array(s) {ids}")
                return
        self.console.print(f"slurm: interrupted; job array(s) {ids} are still queued or running and keep writing "
                           f"to {self.config.output}. Cancel them with: scancel {ids}  (or rerun the same command "
                           "later: completed tasks are skipped)")


def _read_new_lines(path: Path, read_lines: dict[int, int], idx: int) -> list[dict[str, Any]]:
    """Complete JSON lines of ``path`` not read before (a half-written last line waits for the next look)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")[:-1]  # only newline-terminated lines
    new = lines[read_lines.get(idx, 0):]
    read_lines[idx] = len(lines)
    return [json.loads(x) for x in new if x.strip()]


def submit_run(config: PipelineConfig, only: list[str] | None = None,
               console: Console | None = None) -> list[dict[str, Any]]:
    """``--no-wait``: submit every stage with work left as arrays chained by afterok; nothing waits.

    Returns one entry per submitted array: {stage, job_id, size, tasks (None: planned in the job)}.
    """
    from babelsieve.pipeline.core.runner import _check_run_marker, expand_stages

    check_cluster(config)
    _check_run_marker(config)
    sc = config.engine_options.slurm
    submitted: list[dict[str, Any]] = []
    width: int | None = None
    previous: str | None = None
    for stage in expand_stages(config, only):
        run_name = _next_run_name(config, stage)
        if previous is None:
            # Nothing submitted yet: every earlier stage is complete, so this plan is final.
            tasks = [t for t in stage_class(stage)(config).plan()
                     if not check_manifest(config, read_manifest(config, t.stage, t.task_id))]
            if not tasks:
                continue
            size = min(len(tasks), sc.max_array_size)
            width = min(sc.max_array_size, max(size, partition_slots(config)))
            _write_plan(config, run_name, tasks, size, write_logs=True)
        else:
            assert width is not None
            size = width
            tasks = None
            _write_plan(config, run_name, None, size, write_logs=True)
        dep = f"afterok:{previous}" if previous else None
        try:
            job_id = submit_array(config, run_name, size, dependency=dep)
        except SlurmSubmitError:
            cancel([s["job_id"] for s in submitted])  # never leave half a chain behind
            raise
        submitted.append({"stage": stage, "job_id": job_id, "size": size,
                          "tasks": None if tasks is None else len(tasks)})
        previous = job_id
    return submitted


# --------------------------------------------------------------------------------------------
# Array task side: python -m babelsieve.pipeline.engines.slurm_engine PLAN INDEX
# --------------------------------------------------------------------------------------------
def _maybe_test_sleep(config: PipelineConfig, task: Task) -> None:
    spec = os.environ.get(TEST_SLEEP_ENV, "")
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != task.stage or parts[1] != task.task_id:
        return
    marker = slurm_dir(config) / "_test_sleep" / f"{task.stage}-{task.task_id}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    # the array task it runs in, for a test to scancel: <array job id>_<index>
    marker.write_text(f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{os.environ.get('SLURM_ARRAY_TASK_ID')}")
    time.sleep(float(parts[2]))


def run_array_task(plan_path: str, index: int) -> int:
    """Run slice ``index`` of a task list; one JSON line per task result, then an end line. Exit 0
    unless this process itself breaks: a failing task is a result, not a failed array task."""
    from babelsieve.pipeline.core.runner import _log_line

    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    config = PipelineConfig.model_validate(plan["config"])
    size = int(plan["size"])
    if plan["tasks"] is None:  # a chained stage: plan it now that the earlier stages are done
        tasks = stage_class(plan["stage"])(config).plan()
    else:
        tasks = [Task.from_dict(t) for t in plan["tasks"]]
    mine = tasks[index::size]
    config_json = config.model_dump_json()
    max_retries = config.engine_options.max_retries
    job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', 'nojob')}_{index}"
    log = log_dir(config) / f"{plan['stage']}-{job}.log"
    out = slurm_dir(config) / plan["run"] / f"{index}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    log_lines: list[str] = []
    log_name = f"{plan['stage']}-{int(time.time() * 1000)}-slurm{job}.jsonl"
    with out.open("a", encoding="utf-8") as f:
        for t in mine:
            t0 = time.perf_counter()
            try:
                _maybe_test_sleep(config, t)
                res = run_with_retries(t.to_dict(), config_json, max_retries)
            except TransientTaskError as e:
                res = failed_result(t, _with_log(f"{e} (transient error on {max_retries + 1} attempts)", log))
            except TaskFailedError as e:
                res = failed_result(t, _with_log(str(e), log))
            except Exception as e:  # noqa: BLE001 - e.g. a config mismatch: this task only
                res = failed_result(t, _with_log(f"{type(e).__name__}: {e}", log))
            res.setdefault("inputs", list(t.inputs))
            res.setdefault("seconds", time.perf_counter() - t0)
            if res["status"] == "failed":
                print(res["error"], file=sys.stderr, flush=True)
            print(f"{t.stage}/{t.task_id}: {res['status']} in {res['seconds']:.1f} s", flush=True)
            f.write(json.dumps(res, default=str) + "\n")
            f.flush()
            if plan.get("write_logs"):  # --no-wait: no driver writes _logs/, so the array task does
                log_lines.append(_log_line(res))
                storage.publish_bytes(storage.join(RunLayout(config.output).logs_dir(), log_name),
                                      ("\n".join(log_lines) + "\n").encode(), config.storage_options)
        f.write(json.dumps({"end": True, "index": index, "tasks": len(mine)}) + "\n")
    return 0


def _with_log(error: str, log: Path) -> str:
    """The Slurm log file on the error's first line: `babelsieve logs --failed` shows that line."""
    first, _, rest = error.partition("\n")
    return f"{first} [slurm log: {log}]" + (f"\n{rest}" if rest else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m babelsieve.pipeline.engines.slurm_engine PLAN.json ARRAY_INDEX", file=sys.stderr)
        return 2
    return run_array_task(args[0], int(args[1]))


if __name__ == "__main__":
    sys.exit(main())
