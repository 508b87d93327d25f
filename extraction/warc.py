"""A WARC reader that loses nothing silently, and at most one record to hostile bytes.

Why our own reader instead of fastwarc or warcio (both measured on the sample WARC, 414
responses, 51 MB of payload: fastwarc 0.09 s, warcio 0.21 s, this reader ~0.35 s; reading is
under 3 % of the extract stage, trafilatura dominates): on a half-cut ``.warc.gz`` both return
the first half with no error, and one corrupted byte inside a gzip member makes both raise and
lose the rest of the shard. This reader

* walks gzip members one by one (Common Crawl writes one member per record) with zlib, so a
  corrupted member is skipped and reading resumes at the next gzip header;
* checks every record block against its ``Content-Length`` and reports a truncated last record;
* resynchronises at the next ``WARC/1.`` line in uncompressed files (also after a record that
  claims bytes past the end of a seekable file: ``record_exceeds_file``);
* records every problem (offset, reason) in a list the caller reports.

Hostile input costs one record, with bounded memory and guaranteed progress:

* decompression is streamed in bounded output chunks; the reader holds at most one record
  (``max_record_bytes``) plus a chunk, never the rest of a shard;
* ``Content-Length`` must be a non-negative decimal; a record longer than ``max_record_bytes``
  is yielded with only its head (``WarcRecord.complete`` False) and the rest is read and dropped;
* in a ``.warc.gz`` a record that claims more bytes than its gzip member holds is dropped
  (``record_exceeds_member``) and reading resumes at the next member; a member that inflates to
  more than ``max_record_bytes`` of bytes outside any record is a ``decompression_bomb`` and the
  rest of it is skipped;
* every step consumes input, so no length value can make the reader loop;
* a stream in which no WARC header is found at all raises :class:`NotAWarcError`.

HTTP parsing (:func:`parse_http_response`) caps the header block (``MAX_HTTP_HEADER_BYTES``),
parses headers in linear time and decodes ``Transfer-Encoding: chunked`` and the
``Content-Encoding`` with an output bound; what it cannot handle raises :class:`RecordSkipped`
with a reason, for the caller's per-record guard.
"""

from __future__ import annotations

import io
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 20  # compressed bytes read per call
_OUT_CHUNK = 1 << 20  # decompressed bytes produced per zlib call: the memory bound of inflating
_IN_CHUNK = 1 << 16  # compressed bytes fed per zlib call
_MAX_HEADER = 1 << 16  # WARC header block
_KEEP_MEMBER_INPUT = 16 << 20  # compressed bytes of a member kept for resynchronising after corruption
_RECORD_HEAD = 1 << 18  # bytes kept of a record over max_record_bytes (enough for its HTTP headers)
_MAX_REWINDS = 16  # plain files: records claiming bytes past the end that are rescanned (bounds the work)
DEFAULT_MAX_RECORD_BYTES = 64 << 20
MAX_HTTP_HEADER_BYTES = 256 << 10
_DECIMAL = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
# Output/input ratio above which an over-limit payload is reported as a bomb, not a big page
# (HTML compresses 5-20x; a bomb of zeros ~1000x).
_BOMB_RATIO = 100


class NotAWarcError(ValueError):
    """The input is not a WARC file at all."""


class RecordSkipped(Exception):
    """One record cannot be used; ``reason`` is the counter name, ``detail`` says why."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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
    length: int = -1  # the block's Content-Length; > len(block) when only the head was kept
    complete: bool = True  # False: longer than max_record_bytes, ``block`` is its head only

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "")


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    problems: list[str] = field(default_factory=list)


class _Control:
    """Lets the record parser steer the reader: drop the rest of a gzip member, or (plain files)
    read again from an earlier offset."""

    skip_member: bool = False
    rewind_to: int | None = None


def _find_magic(f: BinaryIO, raw: bytearray, start: int, eof: bool) -> tuple[int, int, bool]:
    """Find the next gzip header in ``raw`` at or after ``start``, reading ``f`` as needed.

    Bytes that cannot start one are dropped from the front of ``raw`` as the scan goes, so
    megabytes of garbage cost no memory. Returns (index in ``raw`` or len(raw), bytes dropped, eof).
    """
    dropped = 0
    while True:
        j = raw.find(_GZIP_MAGIC, start)
        if j >= 0 or eof:
            return (j if j >= 0 else len(raw)), dropped, eof
        keep_from = max(start, len(raw) - 2)
        del raw[:keep_from]
        dropped += keep_from
        start = 0
        chunk = f.read(_CHUNK)
        eof = not chunk
        raw += chunk


def _gzip_stream(f: BinaryIO, problems: list[WarcProblem], ctl: _Control) -> Iterator[tuple[int, bytes, str]]:
    """Decompressed output of a gzip file as (member offset, bytes, kind), in bounded chunks.

    kind: "data" (a piece of the member's output), "end" (the member ended cleanly), "corrupt"
    (the member is bad: the rest of it is skipped), "cut" (the file ends inside the member).
    Setting ``ctl.skip_member`` after a "data" piece drops the rest of that member.
    """
    raw = bytearray(f.read(_CHUNK))
    base = 0  # file offset of raw[0]
    eof = not raw
    while True:
        if len(raw) < len(_GZIP_MAGIC) and not eof:
            chunk = f.read(_CHUNK)
            eof = not chunk
            raw += chunk
            continue
        if not raw:
            return
        if not raw.startswith(_GZIP_MAGIC):
            j, dropped, eof = _find_magic(f, raw, 1, eof)
            problems.append(WarcProblem(base, "garbage_bytes",
                                        f"{j + dropped} bytes that are not a gzip member skipped"))
            del raw[:j]
            base += j + dropped
            continue
        member = base
        d = zlib.decompressobj(31)
        pos = 0  # next byte of raw to feed
        cut = False
        try:
            while not d.eof and not ctl.skip_member:
                if pos >= len(raw):
                    if len(raw) > _KEEP_MEMBER_INPUT:  # a huge member: drop what is inflated already
                        base += len(raw)
                        raw.clear()
                        pos = 0
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        eof = cut = True
                        break
                    raw += chunk
                piece = bytes(raw[pos : pos + _IN_CHUNK])
                out = d.decompress(piece, _OUT_CHUNK)
                # (after the end of a member zlib may leave a stale unconsumed_tail: unused_data counts then)
                pos += len(piece) - (len(d.unused_data) if d.eof else len(d.unconsumed_tail))
                if out:
                    yield member, out, "data"
        except zlib.error as e:
            problems.append(WarcProblem(member, "corrupt_gzip_member", str(e)))
            ctl.skip_member = True
            yield member, b"", "corrupt"
        if ctl.skip_member:  # resynchronise at the next gzip header after this member's start
            ctl.skip_member = False
            j, dropped, eof = _find_magic(f, raw, 1 if member == base else pos, eof)
            del raw[:j]
            base += j + dropped
            continue
        if cut:
            problems.append(WarcProblem(member, "truncated_gzip", "file ends inside a gzip member (cut file)"))
            yield member, b"", "cut"
            return
        yield member, b"", "end"
        del raw[:pos]
        base += pos


def _plain_stream(f: BinaryIO, ctl: _Control) -> Iterator[tuple[int, bytes, str]]:
    """An uncompressed file as (offset, bytes, "data") chunks, then (offset, b"", "eof"); setting
    ``ctl.rewind_to`` at "eof" (seekable files) continues from that offset."""
    off = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            yield off, b"", "eof"
            if ctl.rewind_to is None:
                return
            off, ctl.rewind_to = ctl.rewind_to, None
            f.seek(off)
            continue
        yield off, chunk, "data"
        off += len(chunk)


def _parse_headers(blob: bytes) -> dict[str, str]:
    """Header lines -> {lower-cased name: value}; repeated names joined with ", " (linear time)."""
    values: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in blob.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and last:  # folded continuation line
            last[-1] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().decode("latin-1").lower()
        last = values.setdefault(key, [])
        last.append(value.strip().decode("utf-8", "replace"))
    return {k: ", ".join(v) for k, v in values.items()}


def _content_length(headers: dict[str, str]) -> int | None:
    """The WARC Content-Length if it is a plain non-negative decimal (``int()`` accepts -5, +5, 1_0)."""
    txt = headers.get("content-length", "").strip().encode("ascii", "replace")
    return int(txt) if _DECIMAL.fullmatch(txt) else None


def iter_records(
    f: BinaryIO,
    problems: list[WarcProblem],
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    record_time_limit_s: float | None = None,
) -> Iterator[WarcRecord]:
    """Yield every WARC record of a (gzipped or plain) WARC stream.

    Problems (corrupt members, truncation, garbage, bad lengths, bombs) are appended to
    ``problems``; the generator never raises for them. A record longer than ``max_record_bytes``
    is yielded with its head only (``complete=False``). In a ``.warc.gz`` the records of a member
    are yielded once the member's checksum is verified (up to ``max_record_bytes`` of them held).
    ``record_time_limit_s`` bounds the time spent dropping one over-long record or one member's
    garbage in a ``.warc.gz`` (the rest of that member is skipped: ``read_timeout``). Raises
    :class:`NotAWarcError` if no WARC header is found in the stream.
    """
    head = f.read(4)
    seekable = bool(head) and _rewound(f)
    if seekable:
        stream: BinaryIO = f
    else:
        stream = io.BufferedReader(_Prefixed(head, f)) if head else io.BytesIO(b"")  # type: ignore[arg-type]
    ctl = _Control()
    gz = head.startswith(b"\x1f\x8b")
    if gz:
        pieces = _gzip_stream(stream, problems, ctl)
    elif head.startswith(b"WARC"):
        pieces = _plain_stream(stream, ctl)
    else:
        raise NotAWarcError(
            f"not a WARC file: starts with {head!r} (expected 'WARC/1.x' or a gzip member of WARC records)"
        )
    buf = bytearray()
    buf_off = 0  # member offset (gzip) or chunk offset (plain) of what buf starts with
    mode = "seek"  # "seek" a header | "block": collect a record | "skip": drop the rest of a long one
    rec_headers: dict[str, str] = {}
    rec_len = need = remaining = 0
    garbage = 0  # bytes outside any record since the last record (in this member)
    seen_header = cut = False
    started = 0.0
    ready: list[WarcRecord] = []  # records of the current member, yielded when it ends cleanly
    ready_bytes = 0
    data_end = 0  # plain files: file offset just after the bytes appended to buf so far
    block_start = 0  # plain files: file offset of the current record's block
    rewinds = 0
    rescanning = False  # plain files: scanning a lost record's bytes again for the next header

    def lost(reason: str, detail: str) -> None:
        uri = rec_headers.get("warc-target-uri")
        problems.append(WarcProblem(buf_off, reason, detail + (f" ({uri})" if uri else "")))

    def bomb(off: int, reason: str, detail: str) -> None:
        nonlocal garbage
        problems.append(WarcProblem(off, reason, detail))
        ctl.skip_member = True
        buf.clear()
        garbage = 0

    for off, data, kind in pieces:
        if kind == "eof":  # plain file: a record that claims bytes past the end
            if mode in ("block", "skip") and seekable and rewinds < _MAX_REWINDS:
                have = (len(buf) if mode == "block" else rec_len - remaining)
                lost("record_exceeds_file", f"Content-Length {rec_len}, the file holds {have} more bytes: "
                     "the next record is searched after its header")
                rewinds += 1
                ctl.rewind_to = block_start
                buf.clear()
                mode, garbage, rec_headers, rescanning = "seek", 0, {}, True
            continue
        if kind != "data":
            if kind == "cut":
                cut = True
                break
            if kind == "corrupt":
                ready.clear()  # the member's checksum failed: its records are not trusted
            elif mode in ("block", "skip"):  # "end": a record never continues into the next member
                have = len(buf) if mode == "block" else rec_len - remaining
                lost("record_exceeds_member", f"Content-Length {rec_len}, its gzip member holds {have} bytes")
            elif buf.strip(b"\r\n") or garbage:
                problems.append(WarcProblem(buf_off, "garbage_bytes",
                                            f"{garbage + len(buf)} bytes without a WARC header"))
            yield from ready
            ready.clear()
            ready_bytes = 0
            buf.clear()
            mode, garbage, rec_headers = "seek", 0, {}
            continue
        if mode == "skip":
            n = min(remaining, len(data))
            remaining -= n
            if remaining:
                if gz and record_time_limit_s and time.monotonic() - started > record_time_limit_s:
                    lost("read_timeout", f"over {record_time_limit_s} s dropping a {rec_len}-byte record")
                    ctl.skip_member = True
                    mode, rec_headers = "seek", {}
                continue
            if not gz:
                off += n  # plain files: off is the file offset of data
            data = data[n:]
            mode, rec_headers = "seek", {}
        if not buf:
            buf_off = off
        buf += data
        data_end = off + len(data)
        while buf:
            if mode == "seek":
                if not buf.startswith(b"WARC/"):
                    sep = len(buf) - len(buf.lstrip(b"\r\n"))
                    if sep:  # record separators
                        del buf[:sep]
                        continue
                    j = buf.find(b"WARC/1.")
                    if j < 0:
                        if len(buf) > 6:  # keep a tail that may begin a header cut by the chunk boundary
                            if not garbage:
                                started = time.monotonic()
                            garbage += len(buf) - 6
                            del buf[:-6]
                        if gz and garbage > max_record_bytes:
                            bomb(off, "decompression_bomb", f"gzip member inflates to over {max_record_bytes} "
                                 "bytes outside any WARC record: rest of the member skipped")
                        elif (gz and record_time_limit_s and garbage
                              and time.monotonic() - started > record_time_limit_s):
                            bomb(off, "read_timeout", f"over {record_time_limit_s} s in a gzip member's garbage")
                        break
                    if (j or garbage) and not rescanning:
                        problems.append(WarcProblem(buf_off, "garbage_bytes",
                                                    f"{garbage + j} bytes before a WARC header skipped"))
                    garbage, rescanning = 0, False
                    del buf[:j]
                hdr_end = buf.find(b"\r\n\r\n", 0, _MAX_HEADER)
                if hdr_end < 0:
                    if len(buf) >= _MAX_HEADER:
                        problems.append(WarcProblem(buf_off, "bad_header", "WARC header too long"))
                        del buf[:5]
                        continue
                    break
                headers = _parse_headers(bytes(buf[:hdr_end]).partition(b"\r\n")[2])
                length = _content_length(headers)
                if length is None:
                    bad = headers.get("content-length")
                    problems.append(WarcProblem(buf_off, "bad_header", f"missing or invalid Content-Length {bad!r}"))
                    del buf[:5]  # progress: the next header is searched after this one's start
                    continue
                seen_header = True
                rec_headers, rec_len = headers, length
                del buf[: hdr_end + 4]
                block_start = data_end - len(buf)
                need = length if length <= max_record_bytes else min(_RECORD_HEAD, max_record_bytes)
                mode = "block"
                started = time.monotonic()
            if len(buf) < need:  # mode == "block"
                break
            rec = WarcRecord(buf_off, rec_headers, bytes(buf[:need]), rec_len, need == rec_len)
            if gz:
                ready.append(rec)
                ready_bytes += need
                if ready_bytes > max_record_bytes:  # a member of many records (whole-file gzip)
                    yield from ready
                    ready.clear()
                    ready_bytes = 0
            else:
                yield rec
            remaining = rec_len - need
            n = min(remaining, len(buf) - need)
            del buf[: need + n]
            remaining -= n
            mode, rec_headers = ("skip", rec_headers) if remaining else ("seek", {})
            buf_off = off
            if remaining:
                break
    yield from ready  # a cut member's complete records (no checksum to verify)
    if mode in ("block", "skip"):
        have = len(buf) if mode == "block" else rec_len - remaining
        lost("truncated_record", f"record at the end has {have} of {rec_len} bytes")
    elif cut:
        problems.append(WarcProblem(buf_off, "truncated_record", "file cut inside a record"))
    elif (buf.strip(b"\r\n") or garbage) and not rescanning:
        if buf.startswith(b"WARC/"):
            problems.append(WarcProblem(buf_off, "truncated_record", f"a WARC header cut after {len(buf)} bytes"))
        else:
            problems.append(WarcProblem(buf_off, "garbage_bytes", f"{garbage + len(buf)} bytes without a WARC header"))
    if not seen_header:
        what = "its gzip members hold" if gz else "it holds"
        raise NotAWarcError(f"not a WARC file: no WARC record found ({what} no 'WARC/1.x' header)")


def _rewound(f: BinaryIO) -> bool:
    """Seek ``f`` back to its start (after a 4-byte read); False if it cannot (a streaming HTTP
    file says seekable() but refuses)."""
    try:
        if f.seekable() and f.tell() == 4:
            f.seek(0)
            return f.tell() == 0
    except (AttributeError, OSError, ValueError):
        pass
    return False


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


def _dechunk(body: bytes, limit: int) -> tuple[bytes, list[str]]:
    """Undo ``Transfer-Encoding: chunked``; at most ``limit`` + 1 bytes out. Sizes must be hex digits
    (``int('-6', 16)`` would walk backwards forever); a bad size ends the body there."""
    out = bytearray()
    pos = 0
    while pos < len(body):
        eol = body.find(b"\r\n", pos, pos + 1024)
        if eol < 0:
            break
        size_txt = body[pos:eol].split(b";")[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_txt):
            if pos == 0:  # not really chunked: keep the bytes as they are
                return body, [f"bad chunk size {size_txt[:20]!r} at byte 0: body kept as it is"]
            return bytes(out), [f"bad chunk size {size_txt[:20]!r} at byte {pos}: body cut there"]
        size = int(size_txt, 16)
        if size == 0:
            break
        out += body[eol + 2 : eol + 2 + size]
        if len(out) > limit:
            break
        pos = eol + 2 + size + 2  # > pos: every chunk consumes input
    return bytes(out), []


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, int]:
    """zlib/gzip/raw-deflate decode with at most ``limit`` + 1 bytes of output (concatenated gzip
    members too); also returns how many input bytes produced it. Raises zlib.error on bad data,
    EOFError on a cut stream."""
    out = bytearray()
    used = 0
    while data:
        d = zlib.decompressobj(wbits)
        out += d.decompress(data, limit + 1 - len(out))
        while d.unconsumed_tail and not d.eof and len(out) <= limit:
            out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        if len(out) > limit:
            return bytes(out), used + len(data) - len(d.unconsumed_tail)
        if not d.eof:
            raise EOFError("compressed stream ends early")
        used += len(data) - len(d.unused_data)
        data = d.unused_data if wbits == 31 else b""
        if data and not data.startswith(b"\x1f\x8b"):
            break  # trailing garbage after the last gzip member: browsers ignore it too
    return bytes(out), used


def _unbrotli(data: bytes, limit: int) -> tuple[bytes, int]:
    """Brotli decode with bounded output: fed in small pieces, stopped once over ``limit``."""
    import brotli  # type: ignore[import-not-found]

    d = brotli.Decompressor()
    out = bytearray()
    step = 1 << 10  # brotli cannot bound one call's output: small inputs keep each call's output small
    for i in range(0, len(data), step):
        out += d.process(data[i : i + step])
        if len(out) > limit:
            return bytes(out), i + step
    if hasattr(d, "is_finished") and not d.is_finished():
        raise EOFError("brotli stream ends early")
    return bytes(out), len(data)


def _brotli_available() -> bool:
    try:
        import brotli  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo an HTTP ``Content-Encoding`` (gzip, deflate, br; a comma list applied in reverse),
    producing at most ``limit`` + 1 bytes (the caller compares with its limit).

    Raises :class:`RecordSkipped`: ``decompression_bomb`` when the output exceeds ``limit`` at a
    ratio no web page has, ``html_too_large`` when it exceeds it otherwise,
    ``content_encoding_error`` for a corrupt or cut stream, ``content_encoding_unsupported``.
    """
    for enc in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
        if enc in ("identity", "none"):
            continue
        try:
            if enc in ("gzip", "x-gzip"):
                out, used = _inflate(body, 31, limit)
            elif enc == "deflate":  # zlib-wrapped per the RFC; raw deflate in practice too
                try:
                    out, used = _inflate(body, 15, limit)
                except zlib.error:
                    out, used = _inflate(body, -15, limit)
            elif enc == "br" and _brotli_available():
                out, used = _unbrotli(body, limit)
            else:
                raise RecordSkipped("content_encoding_unsupported", f"Content-Encoding {enc!r}")
        except (zlib.error, EOFError) as e:
            raise RecordSkipped("content_encoding_error", f"{enc}: {e}") from None
        except RecordSkipped:
            raise
        except Exception as e:  # noqa: BLE001 - brotli.error and friends
            raise RecordSkipped("content_encoding_error", f"{enc}: {type(e).__name__}: {e}") from None
        if len(out) > limit:
            reason = "decompression_bomb" if len(out) > _BOMB_RATIO * max(used, 1) else "html_too_large"
            raise RecordSkipped(reason, f"{enc}: {used} of the body's {len(body)} bytes inflate to over {limit} bytes")
        body = out
    return body


def parse_http_response(block: bytes, max_body_bytes: int | None = None,
                        decode_body: bool = True) -> HttpResponse | None:
    """Split an HTTP response block into status, headers and decoded body (None if not HTTP).

    The header block may be at most ``MAX_HTTP_HEADER_BYTES`` (else ``RecordSkipped``
    ``http_header_too_large``). ``max_body_bytes`` bounds the chunked/compressed body's decoded size
    (``RecordSkipped`` from :func:`decode_content`); None means no bound.
    """
    if not block.startswith(b"HTTP/"):
        return None
    end = block.find(b"\r\n\r\n", 0, MAX_HTTP_HEADER_BYTES)
    sep = 4
    if end < 0:
        end = block.find(b"\n\n", 0, MAX_HTTP_HEADER_BYTES)
        sep = 2
        if end < 0:
            if len(block) >= MAX_HTTP_HEADER_BYTES:
                raise RecordSkipped("http_header_too_large",
                                    f"no end of the HTTP headers in {MAX_HTTP_HEADER_BYTES} bytes")
            return None
    status_line, _, head = block[:end].partition(b"\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        return None
    headers = _parse_headers(head)
    body = block[end + sep :]
    limit = max_body_bytes if max_body_bytes is not None else 1 << 62
    problems: list[str] = []
    if not decode_body:
        return HttpResponse(status, headers, body, problems)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, problems = _dechunk(body, limit)
    enc = headers.get("content-encoding", "").strip()
    if enc:
        body = decode_content(body, enc, limit)
    return HttpResponse(status, headers, body, problems)


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
