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


# --------------------------------------------------------------------------------------------
# External systems the `infra` tests start, one definition each. Module scope on purpose: a Ray
# instance or SparkContext left alive for the whole test run would be silently reused by the engines
# of later modules, which start their own with their own config (e.g. Spark's task attempts).
# --------------------------------------------------------------------------------------------
S3_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server with test credentials in the environment, for one module."""
    from babelsieve.testing.s3_server import MotoS3

    saved = {k: os.environ.get(k) for k in S3_CREDS}
    os.environ.update(S3_CREDS)
    server = MotoS3()
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray (2 CPUs, no dashboard) for one module; the Ray engine runs its tasks in it."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def spark_context(inputs, tmp_path_factory):
    """The Spark engine's own local SparkContext (``local[2,3]``) for one module; needs the module's ``inputs``."""
    pytest.importorskip("pyspark")
    from babelsieve.pipeline.engines.spark_engine import SparkEngine

    from support.engines import make_config

    engine = SparkEngine(make_config(inputs, str(tmp_path_factory.mktemp("unused")), engine="spark"))
    sc = engine._context()  # local[2,3]: 2 threads, 3 attempts per task
    assert sc.master == "local[2,3]"
    yield sc
    engine.close()
