"""s3:// inputs, outputs and manifests against a real S3 API (moto server), with throttling.

The moto server is a real HTTP S3 API in this process; every process (CLI, local-engine
workers) talks to it over HTTP through s3fs/aiobotocore, exactly as to AWS. A proxy in front of
it answers some requests with ``503 SlowDown`` to exercise the retries.
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import load_config
from babelsieve.pipeline.core.inputs import _listing_prefix, expand_inputs, storage_options_for
from babelsieve.pipeline.core.runner import run_pipeline
from babelsieve.pipeline.core.tasks import Task, execute_task
from babelsieve.pipeline.engines.worker import is_transient
from babelsieve.testing.s3_server import FlakyS3Proxy

from support.engines import FAST_SETS, InProcessEngine, all_rows, data_files, make_config, make_inputs

BABELSIEVE = str(Path(sys.executable).with_name("babelsieve"))
DUMP = "CC-MAIN-2024-10"
SEGMENT = f"crawl-data/{DUMP}/segments/1707947473347.0/warc"
LISTING = f"s3://commoncrawl/crawl-data/{DUMP}/warc.paths.gz"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def proxy(s3):
    p = FlakyS3Proxy(s3.port, every=4)
    yield p
    p.stop()


def _opts(endpoint, **extra):
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", **extra}


@pytest.fixture(scope="module")
def shards(s3, tmp_path_factory):
    """Four real WARC shards laid out as in the public bucket, with a warc.paths.gz listing."""
    import boto3

    local = make_inputs(tmp_path_factory.mktemp("warcs"))
    client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="commoncrawl", ACL="public-read")
    client.create_bucket(Bucket="out")
    keys = []
    for i, p in enumerate(local):
        key = f"{SEGMENT}/CC-MAIN-20240220211055-20240221001055-{i:05d}.warc.gz"
        client.put_object(Bucket="commoncrawl", Key=key, Body=p.read_bytes(), ACL="public-read")
        keys.append(key)
    listing = gzip.compress(("\n".join(keys) + "\n").encode())
    client.put_object(Bucket="commoncrawl", Key=f"crawl-data/{DUMP}/warc.paths.gz", Body=listing, ACL="public-read")
    return {"local": local, "keys": keys, "listing_bytes": listing}


# --------------------------------------------------------------------------------------------
# Throttling: 503 SlowDown is retried with backoff
# --------------------------------------------------------------------------------------------
@pytest.mark.infra
def test_slowdown_503_is_retried_by_every_storage_operation(s3, shards):
    proxy = FlakyS3Proxy(s3.port, every=3)  # every third request is throttled
    try:
        opts = _opts(proxy.endpoint)
        blobs = {f"s3://out/retry/{i}.bin": os.urandom(1000 + i) for i in range(4)}
        for url, data in blobs.items():
            assert storage.publish_bytes(url, data, opts)["bytes"] == len(data)
        assert storage.list_files("s3://out/retry", ".bin", opts) == sorted(blobs)
        for url, data in blobs.items():
            assert storage.exists(url, opts)
            assert storage.read_bytes(url, opts) == data
        fs, path = storage.filesystem(f"s3://commoncrawl/{shards['keys'][0]}", opts)
        with fs.open(path, "rb", block_size=16 * 1024) as f:  # ranged GETs, some throttled
            assert f.read() == shards["local"][0].read_bytes()
        assert proxy.throttled >= 6
    finally:
        proxy.stop()


@pytest.mark.infra
def test_throttling_that_outlasts_the_retries_is_classified_transient(s3, shards):
    proxy = FlakyS3Proxy(s3.port, every=1)  # every request throttled
    try:
        opts = _opts(proxy.endpoint, config_kwargs={"retries": {"max_attempts": 2, "mode": "standard"}})
        with pytest.raises(Exception) as err:
            storage.read_bytes(f"s3://commoncrawl/{shards['keys'][0]}", opts)
        assert is_transient(err.value)  # so the Ray/Spark engines retry the task, later
        assert proxy.throttled >= 2
    finally:
        proxy.stop()


def test_default_s3_options_retry_with_backoff_and_do_not_cache_listings():
    opts = storage.with_defaults("s3://b/k", {"endpoint_url": "http://x"})
    assert opts["config_kwargs"]["retries"] == {"max_attempts": storage.S3_MAX_ATTEMPTS, "mode": "standard"}
    assert opts["use_listings_cache"] is False and opts["endpoint_url"] == "http://x"
    mine = storage.with_defaults("s3://b/k", {"config_kwargs": {"retries": {"max_attempts": 3}}})
    assert mine["config_kwargs"]["retries"] == {"max_attempts": 3}  # explicit options win
    assert storage.with_defaults("/tmp/x", {"a": 1}) == {"a": 1}


# --------------------------------------------------------------------------------------------
# Common Crawl inputs
# --------------------------------------------------------------------------------------------
@pytest.mark.infra
def test_listing_on_s3_expands_to_shard_urls_with_a_shard_range(s3, shards):
    opts = _opts(s3.endpoint)
    urls = expand_inputs([LISTING], None, opts)
    assert urls == [f"s3://commoncrawl/{k}" for k in shards["keys"]]
    assert expand_inputs([LISTING], "1:3", opts) == urls[1:3]
    assert expand_inputs([LISTING], "2:", opts) == urls[2:]


def test_listing_prefixes_and_anonymous_public_bucket():
    assert _listing_prefix(f"s3://commoncrawl/crawl-data/{DUMP}/warc.paths.gz") == "s3://commoncrawl/"
    assert _listing_prefix(f"https://data.commoncrawl.org/crawl-data/{DUMP}/warc.paths.gz") == \
        "https://data.commoncrawl.org/"
    assert _listing_prefix(f"s3://my-mirror/cc/crawl-data/{DUMP}/warc.paths.gz") == "s3://my-mirror/cc/"
    assert _listing_prefix("/home/me/warc.paths.gz") == "s3://commoncrawl/"  # a downloaded listing
    assert storage_options_for(f"s3://commoncrawl/{SEGMENT}/x.warc.gz", {}) == {"anon": True}
    assert storage_options_for(f"s3://commoncrawl/{SEGMENT}/x.warc.gz", {"key": "k"}) == {"key": "k"}
    assert storage_options_for(f"https://data.commoncrawl.org/{SEGMENT}/x.warc.gz", {"key": "k"}) == {"block_size": 0}


@pytest.mark.infra
def test_https_data_mirror_listing_and_shards(shards, tmp_path):
    """The https mirror layout, served by a local HTTP server: listing -> URLs -> documents."""
    root = tmp_path / "mirror"
    for key, p in zip(shards["keys"], shards["local"], strict=True):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(p.read_bytes())
    (root / f"crawl-data/{DUMP}/warc.paths.gz").write_bytes(shards["listing_bytes"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        urls = expand_inputs([f"{base}crawl-data/{DUMP}/warc.paths.gz"], "0:2")
        assert urls == [base + k for k in shards["keys"][:2]]
        cfg = make_config(urls, str(tmp_path / "out"))
        res = execute_task(Task("extract", "00000", (urls[0],)).to_dict(), cfg.model_dump_json())
        assert res["status"] == "done" and res["stats"]["docs_out"] > 0
        rows = all_rows(str(tmp_path / "out"))
        assert {r["dump"] for r in rows} == {DUMP}
        assert {r["file_path"] for r in rows} == {urls[0]}
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------
# End to end: read the WARCs from s3, write outputs + manifests to s3
# --------------------------------------------------------------------------------------------
@pytest.mark.infra
def test_cli_extract_from_commoncrawl_listing_to_s3_through_throttling_proxy(s3, proxy, shards, tmp_path):
    """Endpoint and credentials from the standard AWS variables only; the public bucket anonymously."""
    env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL": proxy.endpoint}
    out = "s3://out/cli"
    cmd = [BABELSIEVE, "run", "--input", LISTING, "--shards", "1:3", "--output", out, "--only", "extract",
           "--workers", "2", "--no-progress"] + [a for s in FAST_SETS for a in ("--set", s)]
    throttled_before = proxy.throttled
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert proxy.throttled > throttled_before  # the run really went through 503s

    opts = _opts(s3.endpoint)
    manifests = storage.list_files(f"{out}/_manifests/extract", ".json", opts)
    assert [m.rsplit("/", 1)[1] for m in manifests] == ["00001.json", "00002.json"]  # task ids = listing positions
    for m in manifests:
        man = storage.read_json(m, opts)
        for f in man["files"]:
            # relative to the output root (a synced copy of the bucket resumes as it is)
            assert "://" not in f["path"] and storage.exists(f"{out}/{f['path']}", opts)
    for name in ("_run.json", "_summary.json"):
        assert storage.exists(f"{out}/{name}", opts)
    assert storage.list_files(f"{out}/_logs", ".jsonl", opts)

    rows = all_rows(out, storage_options=opts)
    assert {r["dump"] for r in rows} == {DUMP}  # from the crawl-data path
    assert {r["file_path"] for r in rows} == {f"s3://commoncrawl/{k}" for k in shards["keys"][1:3]}
    # The same documents as extracting the local copies of those two shards.
    cfg = load_config(None, output=str(tmp_path / "local"), sets=FAST_SETS)
    for i in (1, 2):
        execute_task(Task("extract", f"{i:05d}", (str(shards["local"][i]),)).to_dict(), cfg.model_dump_json())
    local_rows = all_rows(str(tmp_path / "local"))
    key = lambda r: (r["id"], r["url"], r["text"], r["lang_script"] if "lang_script" in r else None)  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, local_rows))

    # Resume on S3: a rerun finds both manifests and does no work.
    r2 = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    summary = storage.read_json(f"{out}/_summary.json", opts)
    assert (summary["stages"][0]["cached"], summary["stages"][0]["done"]) == (2, 0)


@pytest.mark.infra
def test_all_registered_stages_write_identical_bytes_to_s3_and_to_disk(s3, shards, tmp_path):
    """The full configured pipeline from the s3 listing, output once on s3 and once on disk:
    the same relative paths with the same bytes (dedup shuffle files and manifests on s3 too)."""
    opts = _opts(s3.endpoint)  # throttling is exercised above; here the many small dedup files
    results = {}
    for where, out in (("s3", "s3://out/full"), ("disk", str(tmp_path / "full"))):
        cfg = make_config([LISTING], out, storage_options=opts)
        summary = run_pipeline(cfg, engine=InProcessEngine(cfg), show_progress=False)
        assert summary.failed_tasks == 0, json.dumps(summary.to_dict())[:3000]
        results[where] = data_files(out, opts)
    assert results["s3"] and results["s3"] == results["disk"]
    assert storage.list_files("s3://out/full/_manifests", ".json", opts)


@pytest.mark.infra
def test_one_language_of_a_big_multilingual_file_is_read_by_ranges(s3, shards):
    """A long-tail language's piece of a shard file on S3: no HEAD (the size comes from the manifest),
    no whole-object GET, a few ranged GETs whatever the file's size; a small file is one GET."""
    import random

    import pyarrow as pa

    from babelsieve.pipeline.core import documents
    from babelsieve.pipeline.core.documents import PieceReader, language_pieces, write_language_parts

    proxy = FlakyS3Proxy(s3.port, every=0)
    try:
        opts = _opts(proxy.endpoint)
        rng = random.Random(0)
        def part(lang: str, n: int) -> pa.Table:  # incompressible text: a file of several MB
            return documents.table_from_rows([{"text": f"{rng.getrandbits(2000):x}", "id": f"{lang}-{i}",
                                               "lang_script": lang} for i in range(n)])
        entry = write_language_parts("s3://out/ranges/00000.parquet",
                                     [("a_Latn", part("a_Latn", 12_000)), ("b_Latn", part("b_Latn", 3)),
                                      ("c_Latn", part("c_Latn", 9_000))], opts)
        assert entry["bytes"] > 5_000_000
        pieces = {p["lang_script"]: documents.InputPiece(p["path"], tuple(p["row_groups"]), p["file_bytes"])
                  for p in language_pieces(entry)}
        before = dict(proxy.by_method)
        old_limit = documents.WHOLE_FILE_BYTES
        documents.WHOLE_FILE_BYTES = 1 << 20
        try:
            table = PieceReader([pieces["b_Latn"]], opts).read(pieces["b_Latn"])
        finally:
            documents.WHOLE_FILE_BYTES = old_limit
        assert table.column("id").to_pylist() == ["b_Latn-0", "b_Latn-1", "b_Latn-2"]
        used = {k: v - before.get(k, 0) for k, v in proxy.by_method.items() if v - before.get(k, 0)}
        assert used.get("HEAD", 0) == 0 and 1 <= used.get("GET", 0) <= 4, used
        before = dict(proxy.by_method)
        both = [pieces["a_Latn"], pieces["c_Latn"]]
        documents.WHOLE_FILE_BYTES = 1 << 30
        try:
            reader = PieceReader(both, opts)
            assert [reader.read(p).num_rows for p in both] == [12_000, 9_000]
        finally:
            documents.WHOLE_FILE_BYTES = old_limit
        used = {k: v - before.get(k, 0) for k, v in proxy.by_method.items() if v - before.get(k, 0)}
        assert used == {"GET": 1}, used  # under the limit: the whole file in one GET for both pieces
    finally:
        proxy.stop()
