"""Suite-wide hooks: a skip fails the suite. Shared code lives in tests/support/, fixtures beside their tests."""

from __future__ import annotations

import os

import pytest

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
