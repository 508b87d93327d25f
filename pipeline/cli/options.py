"""What the commands share: the console, one-line errors, the ``--storage-option KEY=VALUE`` flag."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from babelsieve.pipeline.core.config import ConfigError, apply_set

console = Console(stderr=True, width=None if sys.stderr.isatty() else 140, emoji=False)


def print_error(message: object) -> None:
    """``error: <message>`` on stderr, the message printed as is (no markup: paths may hold [ ])."""
    console.print("[red]error:[/] " + escape(str(message)), soft_wrap=True)


def storage_option_flag(f: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--storage-option KEY=VALUE`` flag of the commands that read an OUTPUT."""
    return click.option(
        "--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
        help="fsspec option for OUTPUT (repeatable), e.g. endpoint_url=http://localhost:9000; the run's own "
             "storage_options from _run.json apply too.")(f)


def parse_storage_options(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--storage-option`` values -> fsspec options (``client_kwargs.endpoint_url=...`` nests)."""
    out: dict[str, Any] = {}
    for item in items:
        try:
            apply_set(out, item, option="--storage-option")
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="--storage-option") from None
    return out
