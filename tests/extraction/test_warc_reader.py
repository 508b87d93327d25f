"""The WARC reader on real files: nothing lost silently, corrupt records skipped, not-WARC refused."""

from __future__ import annotations

import io

import pytest
from warcio.archiveiterator import ArchiveIterator

from babelsieve.extraction.warc import NotAWarcError, iter_records, parse_http_response

from support.data import PAGES_WARC, SAMPLE_WARC, data_file, gzip_members


def _warcio_ids(path) -> list[str]:
    with open(path, "rb") as f:
        return [r.rec_headers.get_header("WARC-Record-ID") for r in ArchiveIterator(f)]


@pytest.mark.parametrize(
    "name",
    [
        "bundled-sample",
        "pages.warc.gz",
        "cc/CC-MAIN-2020-34-excerpt.warc.gz",
        "cc/CC-MAIN-2024-22-whirlwind.warc.gz",
        "third-party/dolma-wget-sample-0000.warc.gz",
        "third-party/warcio-example-iana.org-chunked.warc",
    ],
)
def test_same_records_as_warcio_on_complete_files(name):
    path = SAMPLE_WARC if name == "bundled-sample" else data_file(name)
    problems = []
    ours = [r.headers["warc-record-id"] for r in iter_records(open(path, "rb"), problems)]
    assert problems == []
    assert ours == _warcio_ids(path)


def test_truncated_file_keeps_complete_records_and_reports_the_cut():
    problems = []
    recs = list(iter_records(open(data_file("sample-truncated.warc.gz"), "rb"), problems))
    assert len(recs) == 12  # tests/data/README.md: warcinfo + 11 complete records, then a cut response
    reasons = {p.reason for p in problems}
    assert "truncated_record" in reasons
    assert any("bhaskar.com" in p.detail for p in problems)


def test_corrupt_bytes_inside_one_record_skip_only_that_record():
    data = PAGES_WARC.read_bytes()
    members = gzip_members(data)
    victim = 200  # of 261 members
    start = sum(len(m) for m in members[:victim])
    corrupted = bytearray(data)
    mid = start + len(members[victim]) // 2
    for i in range(mid, mid + 16):
        corrupted[i] ^= 0xFF
    problems = []
    recs = list(iter_records(io.BytesIO(bytes(corrupted)), problems))
    assert len(recs) == len(members) - 1
    assert [p.reason for p in problems] == ["corrupt_gzip_member"]
    assert problems[0].offset == start


def test_garbage_between_members_is_skipped_and_reported():
    members = gzip_members(data_file("cc/CC-MAIN-2020-34-excerpt.warc.gz").read_bytes())
    data = b"".join(members[:10]) + b"this is not gzip" * 10 + b"".join(members[10:])
    problems = []
    assert len(list(iter_records(io.BytesIO(data), problems))) == len(members)
    assert [p.reason for p in problems] == ["garbage_bytes"]


def test_not_a_warc_is_refused_clearly(tmp_path):
    with pytest.raises(NotAWarcError, match="not a WARC file"):
        list(iter_records(io.BytesIO(b"<html>hello</html>" * 10), []))


def test_chunked_transfer_encoding_is_decoded():
    recs = [r for r in iter_records(open(data_file("third-party/warcio-example-iana.org-chunked.warc"), "rb"), [])
            if r.type == "response"]
    http = parse_http_response(recs[0].block)
    assert http is not None and http.status == 200
    assert http.body.lstrip().lower().startswith(b"<!doctype html")
    assert b"\r\n0\r\n" not in http.body[-10:]
