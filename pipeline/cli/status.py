"""``babelsieve status OUTPUT`` and ``babelsieve logs OUTPUT``: where a run stands, from storage only.

Status needs nothing but the output location (local or any fsspec URL), so it works for a run
that is still going on another machine, one that was interrupted, and one that finished:

* **planned** tasks: the saved config (``_run.json``) is loaded and every configured stage's
  ``plan()`` is called again -- the same task lists the runner builds (for later stages, from the
  outputs of earlier stages that exist so far);
* **done**: a current manifest -- the run's config hash, the planned task's inputs (identity), and
  every listed file present with its size (the manifest is the only proof of completion); a
  manifest that is not current counts as **outdated** and its task as pending (a rerun redoes it);
* **failed**: the latest attempt in the JSON-lines task logs (``_logs/``) failed, and no manifest;
* **pending**: planned, neither done nor failed (not started yet, or running now).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from babelsieve.pipeline.cli.options import parse_storage_options, storage_option_flag
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig, redact_secrets, without_redacted
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import ConfigMismatchError, FileSizes, check_manifest
from babelsieve.pipeline.stages import STAGE_GROUPS, stage_class

MAX_LISTED = 1000  # task ids listed per stage and state in the JSON (counts are always exact)


def run_status(output: str, storage_options: dict[str, Any] | None = None, *, plan: bool = True) -> dict[str, Any]:
    """Tasks done / failed / pending per task stage. Raises FileNotFoundError if OUTPUT holds no run."""
    from babelsieve.pipeline.report.stats import read_logs, read_manifests, read_run_info

    run = read_run_info(output, storage_options)
    if run is None:
        raise FileNotFoundError(f"{output}: no _run.json here -- not a babelsieve output, or no run has started")
    config_hash = run.get("config_hash")
    config, config_error = _saved_config(run, output, storage_options)
    manifests = _ManifestIndex(read_manifests(output, storage_options), config_hash)
    logs = read_logs(output, storage_options)
    attempts = _Attempts(logs)
    inputs_of = _log_inputs(output, storage_options)
    seen = set(manifests.done) | set(manifests.stale) | {k[0] for k in attempts.latest}

    out_stages = []
    upstream_incomplete = False
    sizes = FileSizes(storage_options, by_listing=True)
    for group, s, note in _stage_list(config, run, seen):
        row = _stage_row(group, s, note, config if plan else None, manifests, attempts, inputs_of, sizes,
                         upstream_incomplete)
        upstream_incomplete = upstream_incomplete or row["state"] != "done"
        out_stages.append(row)
    total = {k: sum((x[k] or 0) for x in out_stages) for k in ("done", "failed")}
    total["pending"] = sum(x["pending"] for x in out_stages if x["pending"] is not None)
    total["unknown_stages"] = sum(1 for x in out_stages if x["pending"] is None)
    total["repeated_failures"] = sum(x.pop("repeated_failures") for x in out_stages)
    complete = bool(out_stages) and all(x["state"] == "done" for x in out_stages)
    last_log = logs["time"].max() if logs.height else None
    return {
        "output": output, "config_hash": config_hash, "complete": complete, "totals": total,
        "last_log_time": last_log, "config_error": config_error, "stages": out_stages,
    }


def _saved_config(run: dict[str, Any], output: str, storage_options: dict[str, Any] | None) -> tuple[Any, str | None]:
    """The run's config from ``_run.json`` at this location, or why it cannot be loaded."""
    try:
        raw = without_redacted(dict(run.get("config") or {}))
        raw["output"] = output  # the location we were given is authoritative (moved/mounted outputs)
        if storage_options:
            raw["storage_options"] = {**(raw.get("storage_options") or {}), **storage_options}
        return PipelineConfig.model_validate(raw), None
    except Exception as e:  # noqa: BLE001 - a config of another version: still report what storage says
        return None, f"saved config not loadable by this version: {e}"


class _ManifestIndex:
    """Task ids with a manifest per stage: of this config (``done``) or of another one (``stale``)."""

    def __init__(self, manifests: list[dict[str, Any]], config_hash: str | None):
        self.done: dict[str, set[str]] = {}
        self.stale: dict[str, set[str]] = {}
        self.seconds: dict[str, float] = {}
        self.by_task: dict[tuple[str, str], dict[str, Any]] = {}
        for m in manifests:
            target = self.done if (config_hash is None or m.get("config_hash") == config_hash) else self.stale
            target.setdefault(m["stage"], set()).add(str(m["task_id"]))
            self.by_task[(m["stage"], str(m["task_id"]))] = m
            self.seconds[m["stage"]] = self.seconds.get(m["stage"], 0.0) + float(m.get("seconds") or 0.0)


class _Attempts:
    """The latest logged attempt of every task, attempt counts, and failures that repeat the same error."""

    def __init__(self, logs: Any):
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.count: dict[tuple[str, str], int] = {}
        self.same_failure: dict[tuple[str, str], int] = {}  # consecutive latest failures with the same error
        for r in logs.iter_rows(named=True):  # oldest first: the last one wins
            key = (r["stage"], str(r["task_id"]))
            prev = self.latest.get(key)
            if r["status"] == "failed":
                repeat = prev is not None and prev["status"] == "failed" and prev.get("error") == r.get("error")
                self.same_failure[key] = self.same_failure.get(key, 0) + 1 if repeat else 1
            else:
                self.same_failure.pop(key, None)
            self.latest[key] = r
            self.count[key] = self.count.get(key, 0) + 1


def _stage_list(config: Any, run: dict[str, Any], seen: set[str]) -> list[tuple[str, str, str | None]]:
    """(group, task stage, note) of the configured stages in order, then stages storage holds beyond them."""
    from babelsieve.pipeline.report.stats import stage_order

    stage_list: list[tuple[str, str, str | None]] = []
    ordered = stage_order(list(seen))
    for group in (config.stages if config else (run.get("config") or {}).get("stages") or []):
        members = STAGE_GROUPS.get(group)
        if not members:
            # Not installed here (e.g. status read on another machine): show what storage holds for it.
            found = [s for s in ordered if s == group or s.startswith(group + "_")] or [group]
            stage_list.extend((group, s, "stage not installed here: pending unknown") for s in found)
        else:
            stage_list.extend((group, s, None) for s in members)
    known = {s for _, s, _ in stage_list}
    for s in ordered:
        if s not in known:  # ran with --only or an older config: still show it
            stage_list.append((s, s, "not in the saved config's stages"))
    return stage_list


def _stage_row(group: str, s: str, note: str | None, config: Any, manifests: _ManifestIndex, attempts: _Attempts,
               inputs_of: dict[tuple[str, str], list[str]], sizes: Any, upstream_incomplete: bool) -> dict[str, Any]:
    """One stage's row: re-planned (when ``config`` is given) to tell done, outdated, failed and pending."""
    d = manifests.done.get(s, set())
    planned: list[str] | None = None
    inputs: dict[str, list[str]] = {}
    if config is not None and note is None:
        try:
            tasks = stage_class(s)(config).plan()
            planned = [t.task_id for t in tasks]
            inputs = {t.task_id: list(t.inputs) for t in tasks}
            # done = current for the planned task (same inputs, files present); else outdated
            outdated = {t.task_id for t in tasks if t.task_id in d
                        and not _current(config, manifests.by_task.get((s, t.task_id)), t, sizes)}
            if outdated:
                d = d - outdated
                note = f"{len(outdated)} task(s) outdated (inputs changed or files missing): a rerun redoes them"
        except Exception as e:  # noqa: BLE001 - e.g. a later stage whose inputs do not exist yet
            note = f"cannot plan yet: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
    latest = attempts.latest
    failed = sorted(t for (st, t), r in latest.items() if st == s and r["status"] == "failed" and t not in d)
    pending = None
    if planned is not None:
        pending = [t for t in planned if t not in d and t not in set(failed)]
        if upstream_incomplete and note is None:
            note = "planned from the outputs of incomplete earlier stages: more tasks may follow"
        extra = sorted(d - set(planned))
        if extra and note is None:
            note = f"{len(extra)} done task(s) outside the current plan (another shard range?)"
    complete = planned is not None and not pending and not failed and not upstream_incomplete
    if failed:
        state = "failed"
    elif complete:
        state = "done"
    elif d:
        state = "partial"
    elif planned is None:
        state = "unknown"
    else:
        state = "not started"
    return {
        "group": group, "stage": s, "state": state, "planned": len(planned) if planned is not None else None,
        "done": len(d), "failed": len(failed), "pending": len(pending) if pending is not None else None,
        "stale": len(manifests.stale.get(s, ())), "seconds": round(manifests.seconds.get(s, 0.0), 3),
        "note": note or "",
        "failed_tasks": [
            {"task_id": t, "error": latest[(s, t)].get("error"), "attempts": attempts.count.get((s, t), 0),
             "inputs": inputs.get(t) or inputs_of.get((s, t), [])}
            for t in failed[:MAX_LISTED]
        ],
        "pending_tasks": (pending or [])[:MAX_LISTED],
        "repeated_failures": sum(1 for t in failed if attempts.same_failure.get((s, t), 0) >= 2),
    }


def _current(config: Any, manifest: dict[str, Any] | None, task: Any, sizes: Any) -> bool:
    """The manifest proves the planned task complete (see tasks.check_manifest); another config's: no."""
    try:
        return check_manifest(config, manifest, task, sizes)
    except ConfigMismatchError:
        return False


def _log_inputs(output: str, storage_options: dict[str, Any] | None) -> dict[tuple[str, str], list[str]]:
    """Inputs of each task as logged (read_logs keeps only the tabular fields)."""
    from babelsieve.pipeline.report.stats import read_many

    out: dict[tuple[str, str], list[str]] = {}
    urls = storage.list_files(RunLayout(output).logs_dir(), ".jsonl", storage_options)
    for blob in read_many(urls, storage_options).values():
        for line in blob.decode("utf-8", "replace").splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and d.get("inputs"):
                out[(d.get("stage"), str(d.get("task_id")))] = list(d["inputs"])
    return out


def print_status(st: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    title = f"babelsieve status: {st['output']} (config {st['config_hash']})"
    table = Table(title=title)
    for col in ("stage", "state", "planned", "done", "failed", "pending", "core-s", "note"):
        table.add_column(col, justify="right" if col in ("planned", "done", "failed", "pending", "core-s") else "left",
                         no_wrap=col != "note")
    colors = {"done": "green", "failed": "red", "partial": "yellow", "not started": "dim", "unknown": "dim"}
    for s in st["stages"]:
        def n(v: Any) -> str:
            return "?" if v is None else f"{v:,}"
        table.add_row(s["stage"], f"[{colors.get(s['state'], 'white')}]{s['state']}[/]", n(s["planned"]), n(s["done"]),
                      n(s["failed"]), n(s["pending"]), f"{s['seconds']:.1f}", s["note"])
    console.print(table)
    t = st["totals"]
    verdict = "[green]complete[/]" if st["complete"] else "[yellow]incomplete[/]"
    console.print(f"{verdict}: {t['done']:,} done, {t['failed']:,} failed, {t['pending']:,} pending"
                  + (f", {t['unknown_stages']} stage(s) not plannable yet" if t["unknown_stages"] else ""))
    if st.get("config_error"):
        console.print(f"[yellow]{st['config_error']}[/]")
    for s in st["stages"]:
        for f in s["failed_tasks"][:20]:
            console.print(f"[red]FAILED[/] {s['stage']}/{f['task_id']} ({f['attempts']} attempt(s)) "
                          f"{' '.join(f['inputs'][:1])}: {f['error'] or ''}")
        if s["failed"] > 20:
            console.print(f"[red]... {s['failed'] - 20} more failed in {s['stage']}[/] (see --json)")
    if not st["complete"] and t.get("repeated_failures"):
        console.print(f"{t['repeated_failures']:,} task(s) failed the same way on their last attempts: rerunning "
                      "will not fix them alone. Read `babelsieve logs OUTPUT --failed`, fix the cause (input, "
                      "config, resources), then rerun: completed tasks are skipped.")
    elif not st["complete"] and (t["failed"] or t["pending"]):
        console.print("Rerun the same `babelsieve run` command to finish: completed tasks are skipped.")


@click.command("status")
@click.argument("output")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@click.option("--no-plan", is_flag=True, help="Do not re-plan (no input listing): pending counts unknown.")
@storage_option_flag
def status_command(output: str, as_json: bool, no_plan: bool, storage_option: tuple[str, ...]) -> None:
    """Tasks done / failed / pending per stage of the run in OUTPUT (local or s3://), running or finished.

    Exit status 0 whatever the run's state (read "complete" in --json), 2 when OUTPUT holds no run.
    """
    from rich.console import Console

    from babelsieve.pipeline.report.stats import resolve_storage_options

    err = Console(stderr=True)
    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    try:
        st = redact_secrets(run_status(output, opts, plan=not no_plan))
    except FileNotFoundError as e:
        err.print(f"[red]error:[/] {redact_secrets(str(e))}", soft_wrap=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(st, indent=1, sort_keys=True))
    else:
        print_status(st, Console(width=None if sys.stdout.isatty() else 160))


@click.command("logs")
@click.argument("output")
@click.option("--failed", is_flag=True, help="Only failed task attempts.")
@click.option("--stage", default=None, help="Only this task stage.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout (as stored).")
@click.option("--tail", "-n", type=int, default=0, help="Only the last N lines (0 = all).")
@storage_option_flag
def logs_command(output: str, failed: bool, stage: str | None, as_json: bool, tail: int,
                 storage_option: tuple[str, ...]) -> None:
    """The structured task logs of OUTPUT (one line per task attempt), oldest first."""
    import time

    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from babelsieve.pipeline.report.stats import read_logs, resolve_storage_options

    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    df = read_logs(output, opts)
    if failed:
        df = df.filter(pl.col("status") == "failed")
    if stage:
        df = df.filter(pl.col("stage") == stage)
    if tail:
        df = df.tail(tail)
    if as_json:
        for r in df.drop("log_file").iter_rows(named=True):
            click.echo(json.dumps(r, sort_keys=True))
        return
    table = Table(title=f"task logs: {output} ({df.height:,} attempts)")
    for col in ("time (UTC)", "stage", "task", "status", "seconds", "docs in", "docs out", "error"):
        table.add_column(col, justify="right" if col in ("seconds", "docs in", "docs out") else "left")
    for r in df.iter_rows(named=True):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["time"])) if r["time"] else ""
        status = f"[red]{r['status']}[/]" if r["status"] == "failed" else (r["status"] or "")
        table.add_row(when, r["stage"] or "", r["task_id"] or "", status, f"{r['seconds'] or 0:.1f}",
                      "" if r["docs_in"] is None else f"{r['docs_in']:,}",
                      "" if r["docs_out"] is None else f"{r['docs_out']:,}", r["error"] or "")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
