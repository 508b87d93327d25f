"""``babelsieve run``: run the pipeline on an engine, resume, exit status."""

from __future__ import annotations

import sys

import click

from babelsieve.pipeline.cli.options import console, print_error
from babelsieve.pipeline.core.config import ConfigError, env_sets, load_config, redact_secrets
from babelsieve.pipeline.core.interrupts import RunInterrupted, signals_stop_the_run
from babelsieve.pipeline.core.output_lock import LockLostError, OutputLockConfigError, OutputLockedError
from babelsieve.pipeline.core.runner import describe_os_error, print_summary, run_pipeline
from babelsieve.pipeline.core.storage import CorruptFileError
from babelsieve.pipeline.core.tasks import ConfigMismatchError


@click.command("run")
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
    all_sets = list(sets) + env_sets()  # credentials via the environment, never argv
    if workers is not None:
        all_sets.append(f"engine_options.workers={workers}")
    try:
        cfg = load_config(config, inputs=list(inputs) or None, output=output, engine=engine, sets=all_sets,
                          shards=shards)
        if not config and not inputs and not cfg.inputs.paths:
            cfg.inputs.paths = [_bundled_sample()]
    except ConfigError as e:
        print_error(e)
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
        print_error(e)
        sys.exit(2)
    except (OutputLockedError, LockLostError) as e:
        print_error(e)
        sys.exit(1)
    except CorruptFileError as e:
        todo = ("delete that manifest and rerun: its task is run again" if "/_manifests/" in e.url
                else "restore or delete it, then rerun")
        print_error(f"{e}: {todo}")
        sys.exit(1)
    except OSError as e:  # storage trouble (unwritable or full output): not a configuration error
        print_error(describe_os_error(e))
        sys.exit(1)
    except ValueError as e:  # e.g. --only names a stage that is not configured
        print_error(e)
        sys.exit(2)
    except KeyboardInterrupt:
        if slurm_engine is None:
            raise
        sys.exit(130)  # the engine has said what became of the submitted arrays
    print_summary(summary, console)
    if summary.failed_tasks and not keep_going:
        console.print(f"[red]{summary.failed_tasks} task(s) failed[/] (rerun to retry them; --keep-going to exit 0)")
        sys.exit(1)


def _bundled_sample() -> str:
    from importlib import resources

    return str(resources.files("babelsieve.pipeline").joinpath("data/sample.warc.gz"))
