"""``babelsieve inspect``: documents per language in an output, and a few rows."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from babelsieve.pipeline.cli.options import console
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.stages import STAGE_GROUPS


@click.command("inspect")
@click.argument("path")
@click.option("--rows", "-n", default=3, show_default=True, help="Rows to show per language.")
@click.option("--stage", default=None, help="Stage folder to inspect (default: the last one present).")
def inspect(path: str, rows: int, stage: str | None) -> None:
    """Documents per language in a run's output (or one Parquet file), and a few rows."""
    import polars as pl


    if path.endswith(".parquet"):
        files = [path]
    else:
        stages = [stage] if stage else list(reversed(STAGE_GROUPS))  # the last stage with documents
        files = []
        for s in stages:
            files = storage.list_files(RunLayout(path).stage_dir(s), ".parquet")
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
