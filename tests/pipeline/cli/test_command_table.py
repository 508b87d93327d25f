"""The command table: every command loads, and main.py can run as a script (spark-submit does)."""

from __future__ import annotations

import subprocess
import sys

import click

from babelsieve.pipeline.cli import main as cli_main

from support.data import REPO


def test_every_command_of_the_table_loads_under_its_name():
    ctx = click.Context(cli_main.main)
    for name in cli_main.COMMANDS:
        cmd = cli_main.main.get_command(ctx, name)
        assert isinstance(cmd, click.Command), name
    assert cli_main.main.get_command(ctx, "no-such-command") is None


def test_no_command_module_shadows_the_standard_library():
    """spark-submit runs pipeline/cli/main.py as a script, which puts pipeline/cli/ first on sys.path."""
    names = {p.stem for p in (REPO / "pipeline" / "cli").glob("*.py")}
    assert not names & set(sys.stdlib_module_names)


def test_main_runs_as_a_script():
    r = subprocess.run([sys.executable, str(REPO / "pipeline" / "cli" / "main.py"), "inspect", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Documents per language" in r.stdout, r.stderr[-2000:]
