"""Suite-wide hooks: a skip fails the suite. Shared code lives in tests/support/, fixtures beside their tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.data import REPO

# A skipped test proves nothing: the suite fails on any skip (a missing browser, tool or package
# must show up as a failure, not as a green run). Set BABELSIEVE_ALLOW_SKIPS=1 on a partial
# development machine to see them as skips instead.
ALLOW_SKIPS = os.environ.get("BABELSIEVE_ALLOW_SKIPS", "") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not ALLOW_SKIPS and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"test skipped, which this suite does not allow: {reason}\n"
                        "(set BABELSIEVE_ALLOW_SKIPS=1 to allow skips on a partial development machine)")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A skip while collecting (module-level ``pytest.importorskip`` or ``pytest.skip(allow_module_level=True)``)
    drops a whole file without running any of it: it fails like a skip at run time."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not ALLOW_SKIPS:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = (f"{collector.nodeid}: skipped while collecting, which this suite does not allow: {reason}\n"
                        "(set BABELSIEVE_ALLOW_SKIPS=1 to allow skips on a partial development machine)")


INSTALL_AIRFLOW = REPO / "deploy" / "airflow" / "install_airflow.sh"


def _default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "babelsieve" / "airflow-venv"


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """Airflow 3's own venv: $BABELSIEVE_AIRFLOW_VENV or the user cache; built on first use (2-4 min),
    so the README's test command needs no extra step and this test never silently skips."""
    venv = Path(os.environ.get("BABELSIEVE_AIRFLOW_VENV") or _default_venv())
    if not ((venv / ".babelsieve-complete").exists() and (venv / "bin" / "airflow").exists()):
        _install(venv)
    return venv


def _install(venv: Path) -> None:
    r = subprocess.run(["bash", str(INSTALL_AIRFLOW), str(venv)], capture_output=True, text=True)
    assert r.returncode == 0, f"{INSTALL_AIRFLOW} failed:\n{r.stderr[-4000:]}"
