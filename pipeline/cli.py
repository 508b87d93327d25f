"""The ``babelsieve`` command line."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from babelsieve.pipeline.config import ConfigError, env_sets, load_config, redact_secrets

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140, emoji=False)


def _error(message: object) -> None:
    """``error: <message>`` on stderr, the message printed as is (no markup: paths may hold [ ])."""
    console.print("[red]error:[/] " + escape(str(message)), soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="babelsieve")
def main() -> None:
    """babelsieve: turn Common Crawl WARC files into a multilingual pretraining dataset.

    \b
    Start here:
      babelsieve run                    dry run on the bundled sample WARC -> ./babelsieve-out
      babelsieve inspect babelsieve-out documents per language and a few rows
    \b
    A real run:
      babelsieve run configs/fineweb2.yaml --input 's3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz' \\
          --shards 0:100 --output s3://bucket/fw2 --engine ray
    """


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--input", "-i", "inputs", multiple=True, metavar="PATH_OR_URL",
              help="WARC file, glob, fsspec URL or warc.paths(.gz) listing. Repeatable. Overrides inputs.paths.")
@click.option("--output", "-o", metavar="URL",
              help="Output directory or URL (default from the config: ./babelsieve-out).")
@click.option("--engine", "-e", type=click.Choice(["local", "ray", "spark", "slurm"]),
              help="Where tasks run (default: local).")
@click.option("--shards", metavar="START:STOP", help="Only this range of the expanded input shards, e.g. 0:100.")
@click.option("--workers", "-w", type=click.IntRange(min=1), help="Local worker processes (default: all cores).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override any config key, e.g. --set extract.time_limit_s=5 --set langid.backend=lid176.")
@click.option("--only", "only", multiple=True, metavar="STAGE",
              help="Run only this configured stage (repeatable), e.g. --only extract; earlier stages must be done.")
@click.option("--keep-going", is_flag=True, help="Exit 0 even if some shards failed (they are still reported).")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs and CI).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Slurm: follow the run to the end, or submit every stage as chained job arrays and exit.")
@click.option("--cancel-on-interrupt", is_flag=True, help="Slurm: Ctrl-C cancels the submitted job arrays.")
def run(config: str | None, inputs: tuple[str, ...], output: str | None, engine: str | None, shards: str | None,
        workers: int | None, sets: tuple[str, ...], only: tuple[str, ...], keep_going: bool, no_progress: bool,
        wait: bool, cancel_on_interrupt: bool) -> None:
    """Run the pipeline (extract -> dedup -> filter [-> classify] -> finalize [-> rebalance]).

    With no CONFIG, uses the bundled dry-run config and sample WARC (no network needed).
    A rerun into the same --output skips every task whose manifest is complete, so an
    interrupted run resumes where it stopped. One run at a time writes an output (OUTPUT/_lock.json;
    see `babelsieve unlock`). Ctrl-C or SIGTERM cancels the running tasks and exits within seconds.
    Exit status: 0 when every task succeeded; 1 when a task failed (the other tasks still complete;
    use --keep-going to exit 0) or on a storage problem (unwritable output, full disk, a corrupt
    manifest, the output locked by another run); 2 for a configuration error; 130/143 when
    interrupted by SIGINT/SIGTERM.
    """
    from babelsieve.pipeline.interrupts import RunInterrupted, signals_stop_the_run

    try:
        with signals_stop_the_run():  # from the start: a Ctrl-C while loading is one line too
            _run_command(config, inputs, output, engine, shards, workers, sets, only, keep_going, no_progress, wait,
                         cancel_on_interrupt)
    except KeyboardInterrupt as e:  # ours, or a plain one where an engine (Ray) put its own SIGINT handler
        name = str(e) if isinstance(e, RunInterrupted) else "SIGINT"
        console.print(f"[red]interrupted[/] ({name}): running tasks were cancelled; rerun the same command to resume")
        sys.exit(e.exit_code if isinstance(e, RunInterrupted) else 130)


def _run_command(config: str | None, inputs: tuple[str, ...], output: str | None, engine: str | None,
                 shards: str | None, workers: int | None, sets: tuple[str, ...], only: tuple[str, ...],
                 keep_going: bool, no_progress: bool, wait: bool, cancel_on_interrupt: bool) -> None:
    """``babelsieve run`` once SIGINT/SIGTERM raise :class:`RunInterrupted`; exits 1/2 on errors."""
    from babelsieve.pipeline.output_lock import LockLostError, OutputLockConfigError, OutputLockedError
    from babelsieve.pipeline.runner import describe_os_error, print_summary, run_pipeline
    from babelsieve.pipeline.storage import CorruptFileError
    from babelsieve.pipeline.tasks import ConfigMismatchError

    all_sets = list(sets) + env_sets()  # credentials via the environment, never argv
    if workers is not None:
        all_sets.append(f"engine_options.workers={workers}")
    try:
        cfg = load_config(config, inputs=list(inputs) or None, output=output, engine=engine, sets=all_sets,
                          shards=shards)
        if not config and not inputs and not cfg.inputs.paths:
            cfg.inputs.paths = [_bundled_sample()]
    except ConfigError as e:
        _error(e)
        sys.exit(2)
    console.print(f"babelsieve: {len(cfg.inputs.paths)} input(s) -> {redact_secrets(cfg.output)} "
                  f"(engine {cfg.engine}, "
                  f"config hash {cfg.content_hash()})")
    if "extract" in cfg.stages and cfg.langid.backend == "auto" and not cfg.langid.model:
        from babelsieve.langid.lid import default_backend_name

        if default_backend_name() == "lid176":
            console.print("language ID: embedded fastText lid.176 (GlotLID v3 not in the cache; "
                          "`babelsieve models pull glotlid` to use it)")
    slurm_engine = None
    if cfg.engine == "slurm":
        from babelsieve.pipeline.engines import slurm_engine as slurm

        if not wait:
            try:
                jobs = slurm.submit_run(cfg, only=list(only) or None, console=console)
            except (ConfigMismatchError, ValueError, FileNotFoundError) as e:
                console.print(f"[red]error:[/] {e}")
                sys.exit(2)
            for j in jobs:
                console.print(f"submitted {j['stage']}: job array {j['job_id']} ({j['size']} array task(s), "
                              + (f"{j['tasks']} task(s))" if j["tasks"] is not None else "planned when it starts)"))
            ids = " ".join(j["job_id"] for j in jobs)
            console.print(f"follow it with: babelsieve status {cfg.output}" if jobs else "nothing to do: complete")
            if jobs:
                console.print(f"cancel it with: scancel {ids}")
            click.echo(ids)
            return
        slurm_engine = slurm.SlurmEngine(cfg, cancel_on_interrupt=cancel_on_interrupt, console=console)
        # SIGTERM (Airflow, a batch system stopping the driver) is handled like Ctrl-C: never orphan arrays
        import signal

        signal.signal(signal.SIGTERM, signal.default_int_handler)
    elif not wait or cancel_on_interrupt:
        console.print("[red]error:[/] --no-wait and --cancel-on-interrupt apply to --engine slurm only")
        sys.exit(2)
    try:
        summary = run_pipeline(cfg, console=console, show_progress=not no_progress, only=list(only) or None,
                               engine=slurm_engine)
    except (OutputLockConfigError, ConfigMismatchError, ConfigError) as e:
        _error(e)
        sys.exit(2)
    except (OutputLockedError, LockLostError) as e:
        _error(e)
        sys.exit(1)
    except CorruptFileError as e:
        todo = ("delete that manifest and rerun: its task is run again" if "/_manifests/" in e.url
                else "restore or delete it, then rerun")
        _error(f"{e}: {todo}")
        sys.exit(1)
    except OSError as e:  # storage trouble (unwritable or full output): not a configuration error
        _error(describe_os_error(e))
        sys.exit(1)
    except ValueError as e:  # e.g. --only names a stage that is not configured
        _error(e)
        sys.exit(2)
    except KeyboardInterrupt:
        if slurm_engine is None:
            raise
        sys.exit(130)  # the engine has said what became of the submitted arrays
    print_summary(summary, console)
    if summary.failed_tasks and not keep_going:
        console.print(f"[red]{summary.failed_tasks} task(s) failed[/] (rerun to retry them; --keep-going to exit 0)")
        sys.exit(1)


@main.command()
@click.argument("output")
@click.option("--force", is_flag=True, help="Remove the lock even if its holder's heartbeat is recent.")
@click.option("--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
              help="fsspec option for OUTPUT (e.g. endpoint_url=http://minio:9000); repeatable.")
def unlock(output: str, force: bool, storage_option: tuple[str, ...]) -> None:
    """Remove the run lock OUTPUT/_lock.json left by a run that was killed (SIGKILL, a lost node).

    Only a stale lock (its heartbeat expired) is removed unless --force. Exit status 0 when the
    output is now unlocked, 1 when a live run holds the lock.
    """
    from babelsieve.pipeline.output_lock import OutputLockedError, break_lock, describe_holder
    from babelsieve.pipeline.report.cli import parse_storage_options
    from babelsieve.pipeline.report.stats import resolve_storage_options

    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    try:
        removed = break_lock(output, opts, force=force)
    except OutputLockedError as e:
        _error(e)
        sys.exit(1)
    if removed is None:
        console.print(escape(f"{output} is not locked"), soft_wrap=True)
    else:
        console.print(escape(f"removed the lock of {describe_holder(removed)}"), soft_wrap=True)


def _bundled_sample() -> str:
    from importlib import resources

    return str(resources.files("babelsieve.pipeline").joinpath("data/sample.warc.gz"))


@main.command()
@click.argument("path")
@click.option("--rows", "-n", default=3, show_default=True, help="Rows to show per language.")
@click.option("--stage", default=None, help="Stage folder to inspect (default: the last one present).")
def inspect(path: str, rows: int, stage: str | None) -> None:
    """Documents per language in a run's output (or one Parquet file), and a few rows."""
    import polars as pl

    from babelsieve.pipeline import storage

    if path.endswith(".parquet"):
        files = [path]
    else:
        stages = [stage] if stage else ["rebalance", "finalize", "classify", "filter", "dedup", "extract"]
        files = []
        for s in stages:
            files = storage.list_files(storage.join(path, s), ".parquet")
            if files:
                stage = s
                break
        if not files:
            console.print(f"[red]error:[/] no Parquet files under {path}")
            sys.exit(2)
    frames = []
    for f in files:
        try:
            frames.append(pl.read_parquet(storage.read_bytes(f)))
        except Exception as e:  # noqa: BLE001 - one unreadable file is reported, the rest shown
            console.print(f"[yellow]skipped unreadable file[/] {f}: {e}")
    if not frames:
        sys.exit(2)
    df = pl.concat(frames, how="diagonal_relaxed")
    out = Console()
    table = Table(title=f"{path} ({stage or 'file'}): {df.height:,} documents")
    table.add_column("lang_script")
    table.add_column("documents", justify="right")
    table.add_column("chars", justify="right")
    counts = (df.group_by("lang_script").agg(pl.len().alias("n"), pl.col("text").str.len_chars().sum().alias("c"))
              .sort(["n", "lang_script"], descending=[True, False]))
    for r in counts.iter_rows(named=True):
        table.add_row(r["lang_script"], f"{r['n']:,}", f"{r['c']:,}")
    out.print(table)
    for r in counts.head(5).iter_rows(named=True):
        sample = df.filter(pl.col("lang_script") == r["lang_script"]).head(rows)
        for d in sample.iter_rows(named=True):
            text = " ".join((d["text"] or "").split())[:160]
            out.print(f"[bold]{r['lang_script']}[/] {d['url']}\n    {text}")


def _register_optional_commands() -> None:
    """Subcommands that live with their layer (langid, filters, dedup, report)."""
    import importlib

    for module, attr, name in (
        ("babelsieve.langid.cli", "languages", "languages"),
        ("babelsieve.langid.cli", "models", "models"),
        ("babelsieve.langid.cli", "langid", "langid"),
        ("babelsieve.pipeline.refilter", "refilter_command", "refilter"),
        ("babelsieve.pipeline.classifier_cli", "classifier_group", "classifier"),
        ("babelsieve.pipeline.rehydrate", "rehydrate_command", "rehydrate"),
        ("babelsieve.pipeline.report.cli", "report_command", "report"),
        ("babelsieve.pipeline.status", "status_command", "status"),
        ("babelsieve.pipeline.status", "logs_command", "logs"),
        ("babelsieve.pipeline.plan", "plan_command", "plan"),
        ("babelsieve.pipeline.export", "export_command", "export"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        main.add_command(getattr(mod, attr), name)


_register_optional_commands()

if __name__ == "__main__":
    main()
