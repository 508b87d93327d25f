"""S3 throttling end to end: an outage that outlasts every client-side retry fails the task's attempt,
and the engine's task retry recovers it.

test_s3.py's proxy throttles every k-th request, so botocore's next attempt always succeeds and the
engine's own retry never runs. Here one WARC object answers 503 SlowDown to its first N GETs in a
row, N being the number of throttled GETs after which a read gives up (measured first, against an
endless outage: s3fs's own loop around botocore's attempts; 15 with s3fs 2025.x and max_attempts 2).
The task's first attempt then fails as transient and the local engine retries it after its back-off.
A negative control without engine retries shows that the client really gave up. Real HTTP (moto
server and a proxy in this process), real worker processes.
"""

from __future__ import annotations

import pytest

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.engines.local import LocalEngine
from babelsieve.pipeline.engines.worker import is_transient
from babelsieve.testing.s3_server import FlakyS3Proxy

from support.engines import data_files, make_config, make_inputs

BOTOCORE_ATTEMPTS = 2


@pytest.fixture(scope="module")
def urls(s3, tmp_path_factory):
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="warcs")
    out = []
    for i, p in enumerate(make_inputs(tmp_path_factory.mktemp("warcs"))):
        key = f"shards/shard-{i:02d}.warc.gz"
        client.put_object(Bucket="warcs", Key=key, Body=p.read_bytes())
        out.append(f"s3://warcs/{key}")
    return out


def _opts(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing",
            "config_kwargs": {"retries": {"max_attempts": BOTOCORE_ATTEMPTS, "mode": "standard"}}}


def s3_extract(urls, out, endpoint, max_retries, engine="local"):
    """The extract stage of ``urls`` on ``engine``, reading through ``endpoint``."""
    cfg = make_config(urls, str(out), engine=engine, sets=[f"engine_options.max_retries={max_retries}"],
                      storage_options=_opts(endpoint))
    return run_pipeline(cfg, engine=LocalEngine(cfg) if engine == "local" else None, show_progress=False,
                        only=["extract"])


@pytest.fixture(scope="module")
def outage(s3, urls):
    """(key, N): N = throttled GETs one read of the key takes before it raises (a transient error)."""
    key = urls[1].split("/", 3)[3]
    proxy = FlakyS3Proxy(s3.port, every=0, outage=(key, 10**6))
    try:
        with pytest.raises(OSError) as err:
            storage.read_bytes(urls[1], _opts(proxy.endpoint))
    finally:
        proxy.stop()
    assert is_transient(err.value)
    assert proxy.outage_throttled >= BOTOCORE_ATTEMPTS  # botocore retried, and then s3fs did
    return key, proxy.outage_throttled


@pytest.fixture(scope="module")
def reference(s3, urls, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = s3_extract(urls, out, s3.endpoint, 0)  # straight to the server, no proxy
    assert summary.failed_tasks == 0
    return data_files(str(out))


@pytest.mark.infra
def test_without_engine_retries_the_outage_fails_the_task(s3, urls, outage, reference, tmp_path):
    """Negative control: the client-side retries alone do not outlast the outage."""
    proxy = FlakyS3Proxy(s3.port, every=0, outage=outage)
    try:
        summary = s3_extract(urls, tmp_path / "out", proxy.endpoint, 0)
    finally:
        proxy.stop()
    ex = summary.stages[0]
    assert (ex.done, ex.failed) == (3, 1), ex
    assert ex.failures[0]["task"] == "00001"
    assert "SlowDown" in ex.failures[0]["error"] or "reduce your request rate" in ex.failures[0]["error"]
    assert proxy.outage_throttled == outage[1]  # the one attempt spent the whole outage


@pytest.mark.infra
def test_the_engine_retries_the_task_after_the_client_gives_up(s3, urls, outage, reference, tmp_path):
    proxy = FlakyS3Proxy(s3.port, every=0, outage=outage)
    try:
        summary = s3_extract(urls, tmp_path / "out", proxy.endpoint, 1)
    finally:
        proxy.stop()
    assert summary.failed_tasks == 0
    assert proxy.outage_throttled == outage[1]
    assert data_files(str(tmp_path / "out")) == reference  # the retried task wrote the same bytes
