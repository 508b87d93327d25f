"""Fixtures for every test file: paths to the real test data in tests/data and small WARC builders."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"  # what each file is and how it was cut: tests/data/README.md
SAMPLE_WARC = REPO / "pipeline" / "data" / "sample.warc.gz"  # the bundled dry-run sample (52 responses)
PAGES_WARC = TEST_DATA / "pages.warc.gz"  # 120 more HTML pages of the same origin, none in SAMPLE_WARC
BABELSIEVE = str(Path(sys.executable).with_name("babelsieve"))
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


def data_file(name: str) -> Path:
    """A file of tests/data (fails the test, not skips it, when the file is missing)."""
    p = TEST_DATA / name
    if not p.exists():
        pytest.fail(f"test data missing: {p} (see tests/data/README.md)")
    return p


def read_jsonl_gz(name: str) -> list[dict]:
    """The rows of a gzipped JSON-lines file of tests/data."""
    with gzip.open(data_file(name), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=1)
def fineweb2_configs() -> dict[str, str]:
    """{"rus_Cyrl.yml": text} of every FineWeb-2 ``configs/*.yml``, verbatim (tests/data/README.md)."""
    with gzip.open(data_file("fineweb2-configs.json.gz"), "rt", encoding="utf-8") as f:
        return json.load(f)


def gzip_members(data: bytes) -> list[bytes]:
    """Split a .warc.gz into its raw gzip members (one WARC record each)."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        d.decompress(data[pos:])
        end = len(data) - len(d.unused_data)
        out.append(data[pos:end])
        pos = end
    return out


def split_warc(src: Path, dest_dir: Path, n: int) -> list[Path]:
    """Split a real .warc.gz into ``n`` shards of whole gzip members (warcinfo kept in each)."""
    members = gzip_members(src.read_bytes())
    head, rest = members[0], members[1:]
    dest_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    per = -(-len(rest) // n)
    for i in range(n):
        p = dest_dir / f"shard-{i:02d}.warc.gz"
        p.write_bytes(head + b"".join(rest[i * per : (i + 1) * per]))
        paths.append(p)
    return paths


def make_warc(records: list[tuple[str, bytes, str]]) -> bytes:
    """A .warc.gz of HTTP 200 responses: (url, body bytes, content-type)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    for url, body, ctype in records:
        http = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# External systems the `infra` tests start, one definition each. Module scope on purpose: a Ray
# instance or SparkContext left alive for the whole test run would be silently reused by the engines
# of later modules, which start their own with their own config (e.g. Spark's task attempts).
# --------------------------------------------------------------------------------------------
S3_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server (tests/s3_helpers.py) with test credentials in the environment, for one module."""
    from s3_helpers import MotoS3

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

    from engine_helpers import make_config

    engine = SparkEngine(make_config(inputs, str(tmp_path_factory.mktemp("unused")), engine="spark"))
    sc = engine._context()  # local[2,3]: 2 threads, 3 attempts per task
    assert sc.master == "local[2,3]"
    yield sc
    engine.close()
