"""HTML bytes -> Unicode -> main text, with a per-document time bound.

Charset order: byte-order mark, then the HTTP header, then ``<meta charset>``, then detection;
undecodable bytes are replaced (never an exception). One exception to that order: bytes that
contain non-ASCII and are valid UTF-8 are decoded as UTF-8 whatever a single- or multi-byte
legacy label says, because a stale label on a UTF-8 page is common (7 pages of the sample) and a
long legacy-encoded text that happens to be valid UTF-8 is vanishingly rare. UTF-16/32 labels
are trusted (ASCII text in UTF-16 is valid UTF-8 too).

The time bound uses ``setitimer``/``SIGALRM`` in the worker's main thread: two system calls
per document instead of datatrove's separate sandbox process per task with a pipe round trip
per document.
"""

from __future__ import annotations

import codecs
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]{2,40})""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]{2,40})""", re.I)
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
HTML_CONTENT_TYPES = ("text/html", "application/xhtml+xml")
# Bytes with at least this many valid non-ASCII UTF-8 characters per invalid sequence are UTF-8 with
# a few broken bytes, whatever their label says (see the module docstring).
_UTF8_VALID_PER_INVALID = 100


class ExtractionTimeout(BaseException):
    """HTML->text took longer than the per-document limit.

    A BaseException (like KeyboardInterrupt): trafilatura catches ``Exception`` around its lxml parse
    and elsewhere, which would swallow the timeout and let the page run on with no limit."""


# Python codecs that call themselves text encodings but are not page charsets: they raise on
# bytes (undefined, idna, punycode) or turn text into other text (escapes, UTF-7's XSS vector).
_NOT_PAGE_CHARSETS = frozenset({"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "utf-7"})


def _codec(name: str | None, rejected: list[str] | None = None) -> str | None:
    """Python's name of a page charset label, or None when the label names no usable text codec.

    ``codecs.lookup`` also knows bytes-to-bytes codecs (base64, hex, zlib, uu, rot13): a page
    labelled with one of them falls back to detection, and the label is appended to ``rejected``.
    """
    if not name:
        return None
    try:
        info = codecs.lookup(name.strip().strip("'\"").lower())
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_PAGE_CHARSETS:
        if rejected is not None:
            rejected.append(info.name)
        return None
    return info.name


def is_html(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct in HTML_CONTENT_TYPES


def _mostly_utf8(body: bytes) -> str | None:
    """``body`` decoded as UTF-8 with replacement if it is UTF-8 but for at most 1 invalid sequence per
    ``_UTF8_VALID_PER_INVALID`` valid non-ASCII characters (each invalid sequence decodes to one U+FFFD
    that was not in the bytes), else None."""
    text = body.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - body.count("\ufffd".encode())
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return text if invalid > 0 and non_ascii - invalid >= _UTF8_VALID_PER_INVALID * invalid else None


def decode_html(body: bytes, content_type: str = "", rejected: list[str] | None = None) -> tuple[str, str]:
    """Decode an HTML payload; return (text, codec used).

    A declared charset that is not a text codec (``charset=base64``) is ignored as if absent and
    its name appended to ``rejected``.
    """
    for bom, enc in _BOMS:
        if body.startswith(bom):
            return body.decode(enc, errors="replace"), enc
    m = _HEADER_CHARSET.search(content_type or "")
    header = _codec(m.group(1), rejected) if m else None
    mm = _META_CHARSET.search(body[:4096])
    meta = _codec(mm.group(1).decode("ascii", "replace"), rejected) if mm else None
    declared = header or meta
    if declared and declared.startswith(("utf-16", "utf-32")):
        return body.decode(declared, errors="replace"), declared
    if not body.isascii():
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text = _mostly_utf8(body)
            if text is not None:
                return text, "utf-8"
    if declared and declared != "utf-8":
        return body.decode(declared, errors="replace"), declared
    if declared == "utf-8" or body.isascii():
        return body.decode("utf-8", errors="replace"), "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    enc = _codec(best.encoding) if best else None
    enc = enc or "cp1252"
    return body.decode(enc, errors="replace"), enc


def _raise_timeout(signum: int, frame: object) -> None:
    raise ExtractionTimeout()


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`ExtractionTimeout` in the block after ``seconds`` (main thread only).

    Outside the main thread (where signals cannot be delivered) the block runs unbounded; the
    input-size cap still bounds it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


EXTRACTORS = ("trafilatura", "trafilatura_plain")


class TextExtractor:
    """trafilatura favouring precision, as FineWeb2, with a duplicate cache per task.

    trafilatura's ``deduplicate`` uses a process-wide LRU cache by default, which makes the
    output depend on which documents the same process saw before (i.e. on the engine's task
    placement). A fresh cache per task keeps the output a function of the shard alone.

    ``extractor``: ``"trafilatura"`` (default) runs :mod:`babelsieve.extraction.fast_trafilatura`,
    trafilatura's own favour-precision sequence without the work that cannot change its result
    (about 2x faster, same text on every page of the shared sample); ``"trafilatura_plain"``
    calls ``trafilatura.extract`` itself. The fast path applies to favour_precision=True with an
    installed trafilatura release it was verified on; otherwise the plain call is used
    (``self.fast`` tells which).
    """

    def __init__(
        self,
        favour_precision: bool = True,
        deduplicate: bool = True,
        time_limit_s: float = 10.0,
        extractor: str = "trafilatura",
    ):
        from trafilatura.deduplication import LRUCache
        from trafilatura.settings import LRU_SIZE

        if extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {extractor!r}: expected one of {', '.join(EXTRACTORS)}")
        self.favour_precision = favour_precision
        self.time_limit_s = time_limit_s
        self.dedup = LRUCache(maxsize=LRU_SIZE) if deduplicate else False
        self.extractor = extractor
        self.fast = False
        if extractor == "trafilatura" and favour_precision:
            from babelsieve.extraction import fast_trafilatura

            self.fast = fast_trafilatura.AVAILABLE
            if self.fast:
                self._options = fast_trafilatura.make_options(self.dedup)
                self._extract_fast = fast_trafilatura.extract_precision

    def extract(self, html: str, bounded: bool = True) -> str | None:
        """Main text of a page, or None when trafilatura finds none.

        ``bounded=False``: the caller already runs this inside :func:`time_limit` (the extract
        stage bounds a whole record: parsing, decompression, decoding and extraction).
        Raises ExtractionTimeout / MemoryError / RecursionError for the caller to count.
        """
        if bounded:
            with time_limit(self.time_limit_s):
                return self._extract(html)
        return self._extract(html)

    def _extract(self, html: str) -> str | None:
        if self.fast:
            return self._extract_fast(html, self._options)
        from trafilatura import extract

        return extract(
            html,
            favor_precision=self.favour_precision,
            include_comments=False,
            deduplicate=self.dedup,
        )
