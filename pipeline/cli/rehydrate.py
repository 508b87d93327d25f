"""``babelsieve rehydrate weights``: FineWeb2-style upsampling weights from cluster-size distributions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from babelsieve.dedup.rehydration import weights_from_dir


@click.group("rehydrate")
def rehydrate_command() -> None:
    """Rehydration (upsampling by duplicate-cluster size) weights."""


@rehydrate_command.command("weights")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--max-reps", type=click.IntRange(1, 1000), default=10, show_default=True, help="Maximum repetitions")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output JSON file")
def weights_cmd(directory: str, max_reps: int, out: str) -> None:
    """Compute FineWeb2-style weights from distribution files in DIRECTORY (one LANG.json each)."""
    try:
        weights, totals = weights_from_dir(directory, max_reps)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    Path(out).write_text(json.dumps(weights, indent=1) + "\n", encoding="utf-8")
    click.echo(f"{len(weights)} languages -> {out} (documents after rehydration: {sum(totals.values()):,})")
