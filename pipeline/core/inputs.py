"""Expand configured inputs into an ordered list of WARC shard URLs.

Accepted: local paths, globs, fsspec URLs (``s3://``, ``https://``...), and Common Crawl
listings (``warc.paths`` / ``warc.paths.gz``) whose lines are keys relative to the data prefix.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import ConfigError

CC_S3_PREFIX = "s3://commoncrawl/"
CC_HTTPS_PREFIX = "https://data.commoncrawl.org/"
_DUMP_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}(?![\d])")
_CRAWL_DATA_DUMP_RE = re.compile(r"/crawl-data/(CC-MAIN-\d{4}-\d{2})/")


def dump_from_path(path: str) -> str | None:
    """``CC-MAIN-2024-10`` from a Common Crawl path, else None.

    The ``crawl-data/<dump>/`` folder wins over any other match (a bucket or folder name of the
    user's that happens to contain another dump name).
    """
    m = _CRAWL_DATA_DUMP_RE.search(path)
    if m:
        return m.group(1)
    m = _DUMP_RE.search(path)
    return m.group(0) if m else None


def _is_listing(url: str) -> bool:
    return url.endswith(("warc.paths", "warc.paths.gz", ".paths", ".paths.gz"))


def _listing_prefix(url: str) -> str:
    """Where the keys of a listing live: beside the listing's ``crawl-data/`` folder.

    ``s3://commoncrawl/crawl-data/..`` -> ``s3://commoncrawl/``; the https data mirror
    (``https://data.commoncrawl.org/crawl-data/..``) -> ``https://data.commoncrawl.org/``; a
    mirror bucket (``s3://my-mirror/crawl-data/..``) -> ``s3://my-mirror/``. A local copy of a
    listing refers to the public bucket.
    """
    if url.startswith(("https://", "http://")):
        return url.split("/crawl-data/")[0] + "/" if "/crawl-data/" in url else CC_HTTPS_PREFIX
    if url.startswith(CC_S3_PREFIX):
        return CC_S3_PREFIX
    if "://" in url and "/crawl-data/" in url:
        return url.split("/crawl-data/")[0] + "/"
    # A local copy of a listing: keys are relative to the public S3 bucket.
    return CC_S3_PREFIX


def expand_inputs(paths: list[str], shards: str | None = None,
                  storage_options: dict[str, Any] | None = None) -> list[str]:
    """Return shard URLs in a stable order, then apply ``shards='start:stop'``."""
    out: list[str] = []
    for p in paths:
        if _is_listing(p):
            try:
                data = storage.read_bytes(p, storage_options_for(p, storage_options or {}))
            except FileNotFoundError:
                raise ConfigError(f"input listing not found: {p}") from None
            if p.endswith(".gz"):
                data = gzip.decompress(data)
            prefix = _listing_prefix(p)
            out.extend(prefix + line.strip() for line in data.decode().splitlines() if line.strip())
        elif any(ch in p for ch in "*?["):
            fs, _ = storage.filesystem(p, storage_options_for(p, storage_options or {}))
            matches = sorted(fs.glob(p.split("://", 1)[1] if "://" in p else p))
            if not matches:
                raise ConfigError(f"input glob matched nothing: {p}")
            proto = p.split("://", 1)[0] + "://" if "://" in p else ""
            out.extend(proto + m if proto and not m.startswith(proto) else m for m in matches)
        else:
            out.append(p)
    if shards:
        start, stop = shard_range(shards, len(out))
        out = out[start:stop]
    return out


def shard_range(shards: str, n_inputs: int) -> tuple[int, int]:
    """``'start:stop'`` -> (start, stop) positions in a list of ``n_inputs`` shards.

    Positions count from the start of the expanded input list and become the extract task ids,
    so two ranges never name the same shard differently: negative positions (Python's "from the
    end") are refused, as is a range that selects nothing (empty, reversed, or starting past the
    end). A ``stop`` past the end is clipped to the number of inputs, so fixed-size batches
    (``89000:90000``) work on a listing of any length.
    """
    def problem(reason: str) -> ConfigError:
        return ConfigError(f"--shards {shards}: {reason}; there are {n_inputs} input shard(s), so a range is "
                           f"start:stop with 0 <= start < stop and start < {n_inputs}")

    parts = shards.split(":")
    if len(parts) != 2:
        raise problem("expected start:stop")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n_inputs
    except ValueError:
        raise problem("start and stop must be whole numbers") from None
    if start < 0 or stop < 0:
        raise problem("negative positions are not accepted (positions count from the first input)")
    if stop <= start:
        raise problem("the range is empty" if stop == start else "the range is reversed")
    if start >= n_inputs:
        raise problem("the range starts past the last input")
    return start, min(stop, n_inputs)


def storage_options_for(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """The fsspec options for reading one input URL.

    * The public Common Crawl bucket is read anonymously unless the config gives options (e.g.
      credentials: AWS may require signed requests from outside its network).
    * ``http(s)://`` inputs (the data.commoncrawl.org mirror) get no S3 options, and are read as
      one streaming GET per shard (``block_size=0``) rather than many range requests, which the
      mirror rate-limits.
    """
    if url.startswith(("https://", "http://")):
        return {"block_size": 0}
    if url.startswith(CC_S3_PREFIX) and not storage_options:
        return {"anon": True}
    return storage_options
