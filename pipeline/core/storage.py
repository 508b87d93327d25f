"""Storage through fsspec URLs, with the commit protocol of docs/design.md.

Every write goes through :func:`publish_bytes`: on a file system the bytes go to a temporary
name in the same directory and are renamed into place (atomic on POSIX); on an object store
(S3, GCS, ...) a single PUT or a completed multipart upload is already all-or-nothing, so the
object is written under its final name directly.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import time
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs

_ATOMIC_PUT_PROTOCOLS = {"s3", "s3a", "gs", "gcs", "abfs", "az", "memory"}


class CorruptFileError(ValueError):
    """A JSON file of the output (manifest, run marker) is truncated, not JSON, or not an object."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url} is unreadable ({reason})")
        self.url = url


def join(base: str, *parts: str) -> str:
    """Join URL/path segments with '/' (fsspec URLs are not OS paths)."""
    out = base.rstrip("/")
    for p in parts:
        out += "/" + p.strip("/")
    return out


# S3 (s3fs): botocore retries throttling (503 SlowDown, 429) and 5xx with exponential backoff and jitter
# ("standard" mode). Not "adaptive": its client-side rate limiter slows every later request of the process
# once a few are throttled -- a run with 2 % of requests throttled took 1.45x the unthrottled time with it
# and 0.94x without (benchmarks/bench_s3_requests.py, benchmarks/README.md). s3fs retries
# SlowDown and dropped connections again on top, and the Ray/Spark engines retry a task whose
# error is still transient after that (engines/worker.py).
S3_MAX_ATTEMPTS = 10


def with_defaults(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``storage_options`` plus our defaults for the URL's protocol (explicit options win).

    For ``s3://``: retries (above) and no listings cache, because other processes (workers on
    other nodes) write the objects this process checks for. Endpoint and credentials come from
    the options or the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
    """
    opts = dict(storage_options or {})
    proto = url.split("://", 1)[0] if "://" in url else "file"
    if proto in ("s3", "s3a"):
        config_kwargs = dict(opts.get("config_kwargs") or {})
        config_kwargs.setdefault("retries", {"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"})
        opts["config_kwargs"] = config_kwargs
        opts.setdefault("use_listings_cache", False)
    return opts


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return (filesystem, path-within-filesystem) for a URL or local path."""
    return url_to_fs(url, **with_defaults(url, storage_options))


def protocol_of(url: str) -> str:
    """The URL's protocol (``file`` for a plain path)."""
    return url.split("://", 1)[0] if "://" in url else "file"


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto


def publish_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``data`` to ``url`` atomically; return {path, bytes, sha256} for the manifest."""
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if _protocol(fs) in _ATOMIC_PUT_PROTOCOLS:
        fs.pipe_file(path, data)
    else:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with fs.open(tmp, "wb") as f:
                f.write(data)
                if hasattr(f, "flush"):
                    f.flush()
                if hasattr(f, "fileno"):
                    try:
                        os.fsync(f.fileno())
                    except (OSError, ValueError, AttributeError):
                        pass
            fs.mv(tmp, path)
        except BaseException as e:
            # A full disk or an interrupt must not leave half-written temporaries behind.
            try:
                fs.rm_file(tmp)
            except OSError:
                pass
            if isinstance(e, OSError) and e.filename in (None, tmp):
                raise _with_filename(e, path) from None  # name the file the user knows
            raise
    return {"path": url, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def create_exclusive(url: str, data: bytes, storage_options: dict[str, Any] | None = None) -> bool:
    """Create ``url`` holding ``data`` only if nothing is there yet: True if this call created it.

    * Local (and NFS) file systems: the bytes go to a temporary file that is then hard-linked to
      the final name; ``link`` fails if the name exists, so the check and the creation are one
      step and a reader never sees a partly written file. Where hard links are not supported,
      ``O_CREAT|O_EXCL``.
    * S3: a conditional PUT (``If-None-Match: *``), atomic on AWS S3 since 2024 and in moto.
    * Other object stores: create-then-verify (absent -> write -> read back after a moment and
      compare). Two writers that start within that moment can both believe they won: a best
      effort, documented as such.
    """
    fs, path = filesystem(url, storage_options)
    proto = _protocol(fs)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if proto in ("file", "local"):
        if parent:
            fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise _with_filename(e, path) if e.filename in (None, tmp) else e from None
            try:
                os.link(tmp, path)
                return True
            except FileExistsError:
                return False
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
            try:  # no hard links here: exclusive create, then write (a reader may see it empty briefly)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    if proto in ("s3", "s3a"):
        try:
            fs.pipe_file(path, data, mode="create")
            return True
        except FileExistsError:
            return False
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    time.sleep(1.0)
    fs.invalidate_cache(path)
    return fs.cat_file(path) == data


def _with_filename(e: OSError, path: str) -> OSError:
    """The same error about ``path`` (not the temporary file beside it)."""
    return type(e)(e.errno, e.strerror or str(e), path) if e.errno else e


def publish_json(url: str, obj: Any, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    blob = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode()
    return publish_bytes(url, blob, storage_options)


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """The whole object at ``url``. On S3 one GET: s3fs would HEAD first (to split big objects into
    concurrent ranged GETs), which doubles the requests for the many small files a run reads, and a
    missing object would cost a HEAD and a LIST before the error."""
    fs, path = filesystem(url, storage_options)
    if _protocol(fs) in ("s3", "s3a"):
        return fs.cat_file(path, max_concurrency=1)
    return fs.cat_file(path)


class RangeReader(io.RawIOBase):
    """A read-only, seekable file over ``url`` of known ``size`` in which every read is one ranged GET:
    no HEAD first and no read-ahead (s3fs's file objects ask for the object's details before their
    first read). For readers that want a few ranges of a big object, e.g. pyarrow reading one language's
    row groups of a Parquet file."""

    def __init__(self, url: str, size: int, storage_options: dict[str, Any] | None = None):
        super().__init__()
        self._fs, self._path = filesystem(url, storage_options)
        self._size = int(size)
        self._pos = 0
        self._single = {"max_concurrency": 1} if _protocol(self._fs) in ("s3", "s3a") else {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position in {self._path}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._fs.cat_file(self._path, start=self._pos, end=self._pos + n, **self._single)
        if len(data) != n:  # the object is not the size its manifest recorded
            raise OSError(errno.EIO, f"{self._path}: {len(data)} bytes at {self._pos}, expected {n}")
        buffer[:n] = data
        self._pos += n
        return n


def read_json(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object stored at ``url``; :class:`CorruptFileError` (naming ``url``) if it is
    truncated, not JSON or not an object (every JSON file babelsieve writes is an object)."""
    blob = read_bytes(url, storage_options)
    try:
        obj = json.loads(blob)
    except ValueError as e:
        raise CorruptFileError(url, f"{len(blob)} bytes, not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(url, f"a JSON {type(obj).__name__}, not an object")
    return obj


def exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return fs.exists(path)


def list_files(url: str, suffix: str = "", storage_options: dict[str, Any] | None = None) -> list[str]:
    """All files below ``url`` (recursively) ending in ``suffix``, as full URLs, sorted."""
    fs, path = filesystem(url, storage_options)
    proto = _protocol(fs)
    if proto in ("file", "local") and not fs.exists(path):
        return []
    try:
        found = fs.find(path)  # on S3 a missing prefix lists nothing: no HEAD first
    except FileNotFoundError:
        return []
    prefix = "" if proto in ("file", "local") else f"{proto}://"
    return sorted(prefix + f for f in found if f.endswith(suffix) and ".tmp-" not in f)


def remove(url: str, storage_options: dict[str, Any] | None = None, recursive: bool = True) -> None:
    """Delete ``url`` (with ``recursive``, everything below it); nothing there is not an error. One
    DELETE for a single object on S3 (deleting a missing key succeeds there: no HEAD first)."""
    fs, path = filesystem(url, storage_options)
    if not recursive and _protocol(fs) in ("s3", "s3a"):
        fs.rm_file(path)
        return
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
