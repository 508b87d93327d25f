"""Paths to the real test data in tests/data, and small WARC builders, for every test file."""

from __future__ import annotations

import gzip
import io
import json
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from babelsieve.extraction.warc import gzip_members, split_warc  # noqa: F401 - re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
TEST_DATA = REPO / "tests" / "data"  # what each file is and how it was cut: tests/data/README.md
SAMPLE_WARC = REPO / "pipeline" / "data" / "sample.warc.gz"  # the bundled dry-run sample (52 responses)
PAGES_WARC = TEST_DATA / "pages.warc.gz"  # 120 more HTML pages of the same origin, none in SAMPLE_WARC
BABELSIEVE = str(Path(sys.executable).with_name("babelsieve"))

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
