"""The command line a newcomer meets: help, inspect, stage selection."""

from __future__ import annotations

import subprocess

from support.data import BABELSIEVE, SAMPLE_WARC


def test_help_lists_the_subcommands():
    r = subprocess.run([BABELSIEVE, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("run", "inspect", "languages", "models", "langid"):
        assert f"  {cmd}" in r.stdout
    r = subprocess.run([BABELSIEVE, "run", "--help"], capture_output=True, text=True)
    assert "--keep-going" in r.stdout and "--set" in r.stdout and "Exit status" in r.stdout


def test_inspect_counts_documents_per_language(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([BABELSIEVE, "run", "-i", str(SAMPLE_WARC), "-o", str(out), "--only", "extract",
                        "--no-progress", "--set", "extract.url_filter=false"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BABELSIEVE, "inspect", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "deu_Latn" in r.stdout and "rus_Cyrl" in r.stdout and "documents" in r.stdout


def test_only_rejects_a_stage_that_is_not_configured(tmp_path):
    r = subprocess.run([BABELSIEVE, "run", "-o", str(tmp_path / "o"), "--only", "rebalance", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not among the configured stages" in r.stderr
