"""Expand configured inputs into an ordered list of WARC shard URLs.

Accepted: local paths, globs, fsspec URLs (``s3://``, ``https://``...), and Common Crawl
listings (``warc.paths`` / ``warc.paths.gz``) whose lines are keys relative to the data prefix.
"""

from __future__ import annotations

import gzip
import re
from typing import Any

from babelsieve.pipeline import storage

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


def expand_inputs(paths: list[str], shards: str | None = None, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Return shard URLs in a stable order, then apply ``shards='start:stop'``."""
    out: list[str] = []
    for p in paths:
        if _is_listing(p):
            data = storage.read_bytes(p, storage_options_for(p, storage_options or {}))
            if p.endswith(".gz"):
                data = gzip.decompress(data)
            prefix = _listing_prefix(p)
            out.extend(prefix + line.strip() for line in data.decode().splitlines() if line.strip())
        elif any(ch in p for ch in "*?["):
            fs, _ = storage.filesystem(p, storage_options_for(p, storage_options or {}))
            matches = sorted(fs.glob(p.split("://", 1)[1] if "://" in p else p))
            if not matches:
                raise FileNotFoundError(f"input glob matched nothing: {p}")
            proto = p.split("://", 1)[0] + "://" if "://" in p else ""
            out.extend(proto + m if proto and not m.startswith(proto) else m for m in matches)
        else:
            out.append(p)
    if shards:
        start_s, stop_s = shards.split(":")
        start = int(start_s) if start_s.strip() else 0
        stop = int(stop_s) if stop_s.strip() else len(out)
        out = out[start:stop]
    return out


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
