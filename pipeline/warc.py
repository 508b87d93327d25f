"""A WARC reader that loses nothing silently.

Why our own reader instead of fastwarc or warcio (both measured on the sample WARC, 414
responses, 51 MB of payload: fastwarc 0.09 s, warcio 0.21 s, this reader ~0.35 s; reading is
under 3 % of the extract stage, trafilatura dominates): on a half-cut ``.warc.gz`` both return
the first half with no error, and one corrupted byte inside a gzip member makes both raise and
lose the rest of the shard. This reader

* walks gzip members one by one (Common Crawl writes one member per record) with zlib, so a
  corrupted member is skipped and reading resumes at the next gzip header;
* checks every record block against its ``Content-Length`` and reports a truncated last record;
* resynchronises at the next ``WARC/1.`` line in uncompressed files;
* records every problem (offset, reason) in a list the caller reports.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

_GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 20
_MAX_HEADER = 1 << 16


class NotAWarcError(ValueError):
    """The input is not a WARC file at all."""


@dataclass
class WarcProblem:
    offset: int
    reason: str
    detail: str = ""


@dataclass
class WarcRecord:
    offset: int
    headers: dict[str, str]  # WARC header names lower-cased
    block: bytes

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "")


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    problems: list[str] = field(default_factory=list)


def _next_member_offset(f: BinaryIO, raw: bytearray, eof: bool) -> tuple[int, bool]:
    """Offset in ``raw`` of the next gzip header after position 0, reading more of ``f`` into
    ``raw`` as needed (len(raw) if the file has none); also returns the updated end-of-file flag."""
    j = raw.find(_GZIP_MAGIC, 1)
    while j < 0 and not eof:
        chunk = f.read(_CHUNK)
        if not chunk:
            eof = True
            break
        raw += chunk
        j = raw.find(_GZIP_MAGIC, 1)
    return (j if j >= 0 else len(raw)), eof


def _gzip_members(f: BinaryIO, problems: list[WarcProblem]) -> Iterator[tuple[int, bytes, str]]:
    """Yield (file offset, decompressed bytes, status) per gzip member.

    status is "ok", "corrupt" (member skipped; bytes empty) or "cut" (the file ends inside it).
    """
    raw = bytearray(f.read(_CHUNK))
    base = 0  # file offset of raw[0]
    eof = len(raw) == 0
    while True:
        if not raw:
            if eof:
                return
            chunk = f.read(_CHUNK)
            if not chunk:
                return
            raw += chunk
        if not raw.startswith(_GZIP_MAGIC[: min(3, len(raw))]) or len(raw) < 3:
            # Garbage between members: find the next gzip header.
            skipped, eof = _next_member_offset(f, raw, eof)
            problems.append(WarcProblem(base, "garbage_bytes", f"{skipped} bytes that are not a gzip member skipped"))
            del raw[:skipped]
            base += skipped
            continue
        d = zlib.decompressobj(31)
        parts: list[bytes] = []
        consumed = 0  # bytes of raw fed to d so far
        try:
            while True:
                parts.append(d.decompress(memoryview(raw)[consumed:]))
                if d.eof:
                    consumed = len(raw) - len(d.unused_data)
                    break
                consumed = len(raw)
                chunk = f.read(_CHUNK)
                if not chunk:
                    eof = True
                    break
                raw += chunk
        except zlib.error as e:
            problems.append(WarcProblem(base, "corrupt_gzip_member", str(e)))
            skip, eof = _next_member_offset(f, raw, eof)
            del raw[:skip]
            base += skip
            yield base - skip, b"", "corrupt"
            continue
        if not d.eof:
            problems.append(WarcProblem(base, "truncated_gzip", "file ends inside a gzip member (cut file)"))
            yield base, b"".join(parts), "cut"
            return
        yield base, b"".join(parts), "ok"
        del raw[:consumed]
        base += consumed


def _plain_chunks(f: BinaryIO) -> Iterator[tuple[int, bytes, str]]:
    off = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return
        yield off, chunk, "ok"
        off += len(chunk)


def _parse_headers(blob: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = None
    for line in blob.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and last:  # folded continuation line
            headers[last] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().decode("latin-1").lower()
        val = value.strip().decode("utf-8", "replace")
        headers[key] = headers[key] + ", " + val if key in headers else val
        last = key
    return headers


def iter_records(f: BinaryIO, problems: list[WarcProblem]) -> Iterator[WarcRecord]:
    """Yield every complete WARC record of a (gzipped or plain) WARC stream.

    Problems (corrupt members, truncation, garbage) are appended to ``problems``; the
    generator never raises for them. Raises :class:`NotAWarcError` if nothing in the stream
    looks like WARC.
    """
    head = f.read(4)
    rest = f
    import io

    stream = io.BufferedReader(_Prefixed(head, rest)) if head else io.BytesIO(b"")  # type: ignore[arg-type]
    if head.startswith(b"\x1f\x8b"):
        pieces = _gzip_members(stream, problems)
    elif head.startswith(b"WARC"):
        pieces = _plain_chunks(stream)
    else:
        raise NotAWarcError(
            f"not a WARC file: starts with {head!r} (expected 'WARC/1.x' or a gzip member of WARC records)"
        )
    pending = bytearray()
    pending_off = 0
    truncated = False
    for off, data, status in pieces:
        if status == "corrupt":
            if pending:
                problems.append(WarcProblem(pending_off, "record_lost", "part of this record was in a corrupt member"))
            pending.clear()
            continue
        truncated = status == "cut"
        if not pending:
            pending_off = off
        pending += data
        while pending:
            if not pending.startswith(b"WARC/"):
                j = pending.find(b"WARC/1.")
                if j < 0:
                    if len(pending) > 16 and not truncated:
                        problems.append(WarcProblem(pending_off, "garbage_bytes", f"{len(pending)} bytes without a WARC header"))
                        pending.clear()
                    break
                problems.append(WarcProblem(pending_off, "garbage_bytes", f"{j} bytes before a WARC header skipped"))
                del pending[:j]
            hdr_end = pending.find(b"\r\n\r\n", 0, _MAX_HEADER)
            if hdr_end < 0:
                if len(pending) >= _MAX_HEADER:
                    problems.append(WarcProblem(pending_off, "bad_header", "WARC header too long"))
                    del pending[:5]
                    continue
                break
            headers = _parse_headers(bytes(pending[:hdr_end]).partition(b"\r\n")[2])
            try:
                length = int(headers.get("content-length", ""))
            except ValueError:
                problems.append(WarcProblem(pending_off, "bad_header", "missing or invalid Content-Length"))
                del pending[:5]
                continue
            start = hdr_end + 4
            if len(pending) < start + length:
                break  # need more data (next member or chunk)
            yield WarcRecord(pending_off, headers, bytes(pending[start : start + length]))
            end = start + length
            while pending[end : end + 2] == b"\r\n":
                end += 2
            del pending[:end]
            pending_off = off
    if pending:
        hdr_end = pending.find(b"\r\n\r\n")
        headers = _parse_headers(bytes(pending[:hdr_end])) if hdr_end > 0 else {}
        detail = f"record at the end has {len(pending) - max(hdr_end, 0) - 4} of {headers.get('content-length', '?')} bytes"
        uri = headers.get("warc-target-uri")
        problems.append(WarcProblem(pending_off, "truncated_record", detail + (f" ({uri})" if uri else "")))
    elif truncated:
        problems.append(WarcProblem(pending_off, "truncated_record", "file cut inside a record"))


class _Prefixed:
    """A raw stream that replays already-read bytes before the rest of a file."""

    def __init__(self, prefix: bytes, f: BinaryIO):
        self._prefix = prefix
        self._f = f
        self.closed = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def close(self) -> None:
        self.closed = True


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(body):
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            break
        size_txt = body[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_txt, 16)
        except ValueError:
            return body  # not really chunked: keep the bytes as they are
        if size == 0:
            break
        out += body[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(out)


def parse_http_response(block: bytes) -> HttpResponse | None:
    """Split an HTTP response block into status, headers and decoded body (None if not HTTP)."""
    if not block.startswith(b"HTTP/"):
        return None
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = block.find(b"\n\n")
        sep = 2
        if end < 0:
            return None
    head = block[:end].replace(b"\r\n", b"\n").split(b"\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return None
    headers = _parse_headers(b"\r\n".join(head[1:]))
    body = block[end + sep :]
    problems = []
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    enc = headers.get("content-encoding", "").lower().strip()
    if enc in ("gzip", "x-gzip", "deflate"):
        try:
            if enc == "deflate":
                try:
                    body = zlib.decompress(body)
                except zlib.error:
                    body = zlib.decompress(body, -15)
            else:
                body = gzip.decompress(body)
        except (OSError, zlib.error, EOFError) as e:
            problems.append(f"content-encoding {enc} could not be decoded: {e}")
    elif enc == "br":
        try:
            import brotli  # type: ignore[import-not-found]

            body = brotli.decompress(body)
        except Exception as e:  # noqa: BLE001 - optional codec
            problems.append(f"content-encoding br could not be decoded: {e}")
    return HttpResponse(status, headers, body, problems)
