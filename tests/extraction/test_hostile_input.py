"""Hostile bytes cost one record, never a shard or a worker.

Every case puts a hand-made hostile record between real pages of the bundled sample WARC
(6 response records before it, 6 after) and runs ``babelsieve run --only extract`` in a
subprocess, measured by a small wrapper process that reports its children's resource usage
(``getrusage(RUSAGE_CHILDREN)``: the CLI and its pool worker, the only processes it waits for).
Each case checks:

* the run finishes: a 240 s wall-clock timeout kills it otherwise (the old reader looped forever
  on a negative length), and its CPU time stays within the clean run's plus ``CPU_MARGIN_S``;
* memory: peak RSS of the largest process stays within the clean run's plus ``RSS_MARGIN_MB``
  (the old code inflated a 400 MiB bomb in memory: ~1 GB);
* every good page of the clean run is in the output, and the hostile record's reason is counted.

The wrapper also caps the address space of the run (``SAFETY_AS_GB``) so that running these tests
against code without the guards fails with a MemoryError instead of exhausting the machine.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import polars as pl
import pytest

from support.data import BABELSIEVE, SAMPLE_WARC, gzip_members

RSS_MARGIN_MB = 200  # a 400 MiB bomb inflated in memory exceeds this by far
CPU_MARGIN_S = 10.0  # the old quadratic header parsing took 17 s of CPU on 4 MB of headers
TIMEOUT_S = 240
SAFETY_AS_GB = 3
BOMB_MIB = 400

_MEASURE = r"""
import json, resource, subprocess, sys
limit = int(sys.argv[1]) << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
p = subprocess.run(sys.argv[2:], capture_output=True, text=True)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "maxrss_mb": ru.ru_maxrss / 1024,
                  "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def _run(out: Path, inputs: list[Path], *extra: str) -> dict:
    """``babelsieve run --only extract`` under the measuring wrapper; killed (with its children) on timeout."""
    cmd = [sys.executable, "-c", _MEASURE, str(SAFETY_AS_GB), BABELSIEVE, "run", "--output", str(out),
           "--no-progress", "--workers", "1", "--only", "extract", "--set", "langid.backend=none",
           "--set", "extract.url_filter=false", *extra]
    for i in inputs:
        cmd += ["--input", str(i)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the run did not finish within {TIMEOUT_S} s")
    assert proc.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def _stats(out: Path, task_id: str = "00000") -> dict:
    return json.loads((out / "_manifests" / "extract" / f"{task_id}.json").read_text())["stats"]


def _urls(out: Path) -> set[str]:
    files = list((out / "extract").rglob("*.parquet"))
    return set(pl.concat([pl.read_parquet(f) for f in files])["url"].to_list()) if files else set()


@lru_cache(maxsize=1)
def _good_members() -> tuple[list[bytes], list[bytes]]:
    """(warcinfo + 6 responses, 6 responses) of the sample, as raw gzip members."""
    members = gzip_members(SAMPLE_WARC.read_bytes())
    return members[:7], members[7:13]


def record(url: str, http: bytes, content_length: str | None = None, warc_type: str = "response") -> bytes:
    """One uncompressed WARC record around an HTTP message; ``content_length`` overrides the real one."""
    length = content_length if content_length is not None else str(len(http))
    head = (f"WARC/1.0\r\nWARC-Type: {warc_type}\r\nWARC-Record-ID: <urn:uuid:{abs(hash(url)):032x}>\r\n"
            f"WARC-Date: 2024-02-20T10:00:00Z\r\nWARC-Target-URI: {url}\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {length}\r\n\r\n")
    return head.encode() + http + b"\r\n\r\n"


def http(body: bytes, *headers: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode("latin-1") + body


def page(name: str) -> bytes:
    """A small HTML page whose main text is its own (trafilatura's duplicate filter drops repeats)."""
    words = " ".join(f"{name}{i}" for i in range(60))
    return ("<html><head><title>page</title></head><body><article><p>"
            + f"An ordinary paragraph about {name} with readable words that trafilatura keeps: {words}. " * 3
            + "</p></article></body></html>").encode()


PAGE = page("plain")


def _shard(tmp_path: Path, hostile: list[bytes], name: str = "hostile.warc.gz") -> Path:
    """Good members, then the hostile gzip members, then more good members."""
    before, after = _good_members()
    p = tmp_path / name
    p.write_bytes(b"".join(before) + b"".join(hostile) + b"".join(after))
    return p


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    """The good pages alone: the URLs every hostile run must still produce, and the resource baseline."""
    tmp = tmp_path_factory.mktemp("clean")
    warc = _shard(tmp, [], "clean.warc.gz")
    out = tmp / "out"
    m = _run(out, [warc])
    urls = _urls(out)
    assert len(urls) >= 8, urls  # most of the 12 real pages have main text
    return {"urls": urls, "maxrss_mb": m["maxrss_mb"], "cpu_s": m["cpu_s"], "stats": _stats(out)}


def _check(clean: dict, m: dict, out: Path) -> dict:
    assert m["maxrss_mb"] <= clean["maxrss_mb"] + RSS_MARGIN_MB, (m["maxrss_mb"], clean["maxrss_mb"])
    assert m["cpu_s"] <= clean["cpu_s"] + CPU_MARGIN_S, (m["cpu_s"], clean["cpu_s"])
    missing = clean["urls"] - _urls(out)
    assert not missing, f"good pages lost: {sorted(missing)}"
    return _stats(out)


def _bomb_bytes(mib: int) -> bytes:
    """gzip of ``mib`` MiB of zeros, compressed in 1 MiB steps (never the whole input in memory)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join([c.compress(zeros) for _ in range(mib)] + [c.flush()])


NON_TEXT = ["undefined", "base64", "hex", "rot13", "zlib", "uu", "idna"]


def test_non_text_charsets_fall_back_to_detection(tmp_path, clean):
    hostile = []
    for cs in NON_TEXT:
        hostile.append(gzip.compress(record(f"https://hostile.example/header-{cs}",
                                            http(page(f"header{cs}"), f"Content-Type: text/html; charset={cs}"))))
        meta = page(f"meta{cs}").replace(b"<head>", f'<head><meta charset="{cs}">'.encode())
        hostile.append(gzip.compress(record(f"https://hostile.example/meta-{cs}",
                                            http(meta, "Content-Type: text/html"))))
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, hostile)]), out)
    assert stats["problem_counts"]["charset_not_text"] == 2 * len(NON_TEXT)
    urls = _urls(out)
    for cs in NON_TEXT:  # the pages themselves are decoded by detection and kept
        assert f"https://hostile.example/header-{cs}" in urls and f"https://hostile.example/meta-{cs}" in urls


def test_negative_warc_content_length(tmp_path, clean):
    rec = record("https://hostile.example/negative", http(PAGE, "Content-Type: text/html"), content_length="-250")
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, [gzip.compress(rec)])]), out)
    assert stats["problem_counts"]["bad_header"] >= 1


def test_negative_warc_content_length_uncompressed(tmp_path, clean):
    before, after = _good_members()
    plain = b"".join(zlib.decompress(m, 31) for m in before)
    plain += record("https://hostile.example/negative", http(PAGE, "Content-Type: text/html"), content_length="-4")
    plain += b"".join(zlib.decompress(m, 31) for m in after)
    warc = tmp_path / "plain.warc"
    warc.write_bytes(plain)
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [warc]), out)
    assert stats["problem_counts"]["bad_header"] >= 1


def test_negative_chunk_size(tmp_path, clean):
    body = b"-6\r\n" + PAGE + b"\r\n0\r\n\r\n"
    rec = record("https://hostile.example/chunked", http(body, "Content-Type: text/html",
                                                             "Transfer-Encoding: chunked"))
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, [gzip.compress(rec)])]), out)
    assert stats["problem_counts"]["http_body_problem"] == 1
    assert any("bad chunk size" in p["detail"] for p in stats["problems"])


def test_gzip_content_encoding_bomb(tmp_path, clean):
    bomb = _bomb_bytes(BOMB_MIB)
    assert len(bomb) < 1_000_000
    rec = record("https://hostile.example/bomb", http(bomb, "Content-Type: text/html", "Content-Encoding: gzip"))
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, [gzip.compress(rec)])]), out)
    assert stats["skipped"]["decompression_bomb"] == 1


def test_warc_gzip_member_bomb_between_records(tmp_path, clean):
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, [_bomb_bytes(BOMB_MIB)])]), out)
    assert stats["problem_counts"]["decompression_bomb"] == 1


def test_huge_content_length_loses_one_record_only(tmp_path, clean):
    before, after = _good_members()
    rec = record("https://hostile.example/huge", http(PAGE, "Content-Type: text/html"), content_length="1000000000000")
    # Record 2 of many: the hostile record right after the first good response.
    warc = tmp_path / "huge.warc.gz"
    warc.write_bytes(before[0] + before[1] + gzip.compress(rec) + b"".join(before[2:]) + b"".join(after))
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [warc]), out)
    assert stats["problem_counts"]["record_exceeds_member"] == 1
    assert stats["responses"] == 12  # the 12 good responses; the hostile one is lost alone


def test_huge_content_length_in_an_uncompressed_warc(tmp_path, clean):
    before, after = _good_members()
    rec = record("https://hostile.example/huge", http(PAGE, "Content-Type: text/html"), content_length="1000000000000")
    plain = zlib.decompress(before[0], 31) + zlib.decompress(before[1], 31) + rec
    plain += b"".join(zlib.decompress(m, 31) for m in before[2:] + after)
    warc = tmp_path / "huge.warc"
    warc.write_bytes(plain)
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [warc]), out)
    assert stats["problem_counts"]["record_exceeds_file"] == 1  # rescanned from after its header


def test_four_megabytes_of_header_lines(tmp_path, clean):
    headers = ["Content-Type: text/html"] + ["X-A: 1"] * (4 * 1024 * 1024 // 8)
    rec = record("https://hostile.example/headers", http(PAGE, *headers))
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, [gzip.compress(rec)])]), out)
    assert stats["skipped"]["http_header_too_large"] == 1


def test_gzipped_file_that_is_not_a_warc_fails_its_shard(tmp_path, clean):
    readme = tmp_path / "README.md.gz"
    readme.write_bytes(gzip.compress((Path(__file__).resolve().parents[2] / "README.md").read_bytes()))
    good = _shard(tmp_path, [])
    out = tmp_path / "out"
    cmd = [BABELSIEVE, "run", "--output", str(out), "--no-progress", "--workers", "1", "--only", "extract",
           "--set", "langid.backend=none", "--set", "extract.url_filter=false", "--input", str(good),
           "--input", str(readme)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert r.returncode == 1, r.stderr
    assert "not a WARC file" in r.stderr and "README.md.gz" in r.stderr
    assert clean["urls"] <= _urls(out)
    assert not (out / "_manifests" / "extract" / "00001.json").exists()


def test_undecodable_content_encodings_have_their_own_reasons(tmp_path, clean):
    cut_gzip = gzip.compress(PAGE)[:-40]
    hostile = [
        gzip.compress(record("https://hostile.example/cut-gzip",
                             http(cut_gzip, "Content-Type: text/html", "Content-Encoding: gzip"))),
        gzip.compress(record("https://hostile.example/bad-br",
                             http(b"\xff\x00 not brotli at all" * 50, "Content-Type: text/html",
                                  "Content-Encoding: br"))),
    ]
    out = tmp_path / "out"
    stats = _check(clean, _run(out, [_shard(tmp_path, hostile)]), out)
    assert stats["skipped"]["content_encoding_error"] >= 1  # the cut gzip stream
    # br: content_encoding_error when the optional brotli module is installed, else unsupported
    assert stats["skipped"]["content_encoding_error"] + stats["skipped"].get("content_encoding_unsupported", 0) == 2
    # not hidden as "no text": the good pages' own count is unchanged
    assert stats["skipped"].get("extraction_empty") == clean["stats"]["skipped"].get("extraction_empty")


class _Unseekable(io.RawIOBase):
    """Says it can seek, and refuses, as fsspec's HTTPStreamFile does."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._data.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        raise ValueError("Cannot seek streaming HTTP file")

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_reader_survives_random_mutations_of_a_real_warc():
    """Seeded byte flips, cuts, inserted zeros and rewritten Content-Length values (negative, signed,
    huge, underscored) in the sample, gzipped and plain: the reader and HTTP parser never raise
    (except NotAWarcError), never loop, and stay fast. SIGALRM turns a hang into a failure."""
    import random

    from babelsieve.extraction.warc import NotAWarcError, RecordSkipped, iter_records, parse_http_response

    def hang(signum, frame):
        raise TimeoutError("the reader did not finish within 60 s")

    data = SAMPLE_WARC.read_bytes()
    plain = gzip.decompress(data)
    rng = random.Random(17)
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        for _ in range(120):
            src = bytearray(rng.choice([data, plain]))
            kind = rng.randrange(4)
            if kind == 0:
                for _ in range(rng.randrange(1, 20)):
                    src[rng.randrange(len(src))] = rng.randrange(256)
            elif kind == 1:
                del src[rng.randrange(len(src)):]
            elif kind == 2:
                src = bytearray(plain)
                for _ in range(3):
                    j = src.find(b"Content-Length: ", rng.randrange(len(src)))
                    if j > 0:
                        src[j + 16 : j + 18] = rng.choice([b"-9", b"+1", b"99999999999", b"-0", b"1_"])
            else:
                pos = rng.randrange(len(src))
                src[pos:pos] = bytes(rng.randrange(100_000))
            # a seekable file, or a stream that cannot seek back (fsspec's streaming HTTP file)
            stream = io.BytesIO(bytes(src)) if rng.random() < 0.5 else _Unseekable(bytes(src))
            try:
                for rec in iter_records(stream, [], max_record_bytes=11_000_000):
                    if rec.type == "response":
                        try:
                            parse_http_response(rec.block, 5_000_000, decode_body=rec.complete)
                        except RecordSkipped:
                            pass
            except NotAWarcError:
                pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
