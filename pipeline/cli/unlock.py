"""``babelsieve unlock``: remove the lock of a run that was killed."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from babelsieve.pipeline.cli.options import console, parse_storage_options, print_error, storage_option_flag
from babelsieve.pipeline.core.output_lock import OutputLockedError, break_lock, describe_holder


@click.command("unlock")
@click.argument("output")
@click.option("--force", is_flag=True, help="Remove the lock even if its holder's heartbeat is recent.")
@storage_option_flag
def unlock(output: str, force: bool, storage_option: tuple[str, ...]) -> None:
    """Remove the run lock OUTPUT/_lock.json left by a run that was killed (SIGKILL, a lost node).

    Only a stale lock (its heartbeat expired) is removed unless --force. Exit status 0 when the
    output is now unlocked, 1 when a live run holds the lock.
    """
    from babelsieve.pipeline.report.stats import resolve_storage_options

    opts = resolve_storage_options(output, parse_storage_options(storage_option))
    try:
        removed = break_lock(output, opts, force=force)
    except OutputLockedError as e:
        print_error(e)
        sys.exit(1)
    if removed is None:
        console.print(escape(f"{output} is not locked"), soft_wrap=True)
    else:
        console.print(escape(f"removed the lock of {describe_holder(removed)}"), soft_wrap=True)
