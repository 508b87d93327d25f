"""``babelsieve report OUTPUT``: HTML report with plots and the dataset card."""

from __future__ import annotations

import sys

import click

from babelsieve.pipeline.cli.options import parse_storage_options, storage_option_flag
from babelsieve.pipeline.cli.status import run_status


@click.command("report")
@click.argument("output")
@click.option("--no-card", is_flag=True, help="Do not (re)write the dataset card README.md.")
@click.option("--max-scan-files", type=int, default=2000, show_default=True,
              help="Parquet files read per stage for the histograms (an even sample beyond this; 0 = all).")
@click.option("--no-status", is_flag=True, help="Do not re-plan the run for the status table (no input listing).")
@storage_option_flag
def report_command(output: str, no_card: bool, max_scan_files: int, no_status: bool,
                   storage_option: tuple[str, ...]) -> None:
    """Write an HTML report with plots and a dataset card for a run's OUTPUT (local or s3://).

    \b
    Writes OUTPUT/report/index.html (self-contained: plots embedded), OUTPUT/report/*.png and the
    dataset card OUTPUT/README.md. Works on a finished, interrupted or running run; plots of stages
    that have not run yet say so.
    """
    from rich.console import Console

    from babelsieve.pipeline.report.build import write_report
    from babelsieve.pipeline.report.stats import resolve_storage_options

    console = Console(stderr=True)
    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    status = None
    if not no_status:

        try:
            status = run_status(output, opts)
        except Exception as e:  # noqa: BLE001 - the report is still useful without the status table
            console.print(f"[yellow]status not included:[/] {e}")
    try:
        res = write_report(output, opts, max_scan_files=max_scan_files or None, card=not no_card, status=status)
    except FileNotFoundError as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    for name, what in res["plots"].items():
        console.print(f"  {name:<16} {'plot' if what == 'image' else '[dim]' + what + '[/]'}")
    console.print(f"report: {res['html']}")
    if res["card"]:
        console.print(f"dataset card: {res['card']}")
