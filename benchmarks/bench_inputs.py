"""Where the benchmarks find their input: ``--data DIR`` (default ``tests/data``).

``DIR`` is either the repository's test data (tests/data: the bundled sample WARC + ``pages.warc.gz``,
``lid-dev-udhr.jsonl.gz``, ``fineweb2-configs.json.gz``, ``cc/``) or a folder of the original, larger
files that tests/data is cut from (``sample-multilingual.warc.gz``, ``lid-dev-udhr.jsonl``, ``cc/``;
see tests/data/README.md). The figures in benchmarks/README.md were measured on the originals.
"""

from __future__ import annotations

import argparse
import gzip
import json
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
BUNDLED_SAMPLE = REPO / "pipeline" / "data" / "sample.warc.gz"


def add_data_argument(ap: argparse.ArgumentParser) -> None:
    """The ``--data DIR`` option every benchmark takes."""
    ap.add_argument("--data", type=Path, default=TEST_DATA,
                    help="test data folder: tests/data (default) or the originals it is cut from")


def sample_warcs(data: Path) -> list[Path]:
    """The multilingual sample: the original WARC if ``data`` has it, else the bundled sample + pages."""
    original = data / "sample-multilingual.warc.gz"
    if original.exists():
        return [original]
    return [BUNDLED_SAMPLE, data / "pages.warc.gz"]


def cc_warcs(data: Path) -> list[Path]:
    """The genuine Common Crawl excerpts (``cc/*.warc.gz``)."""
    return sorted((data / "cc").glob("*.warc.gz"))


def udhr_path(data: Path) -> Path:
    """The labelled UDHR dev lines (JSON lines, plain or gzipped)."""
    for name in ("lid-dev-udhr.jsonl", "lid-dev-udhr.jsonl.gz"):
        if (data / name).exists():
            return data / name
    raise SystemExit(f"no lid-dev-udhr.jsonl(.gz) in {data}")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file, gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=4)
def _fineweb2_archive(path: Path) -> dict[str, str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def fineweb2_config_text(source: Path, label: str) -> str:
    """FineWeb-2's ``configs/{label}.yml``, from a configs folder or from tests/data's archive of them."""
    if source.is_dir():
        return (source / f"{label}.yml").read_text(encoding="utf-8")
    return _fineweb2_archive(source)[f"{label}.yml"]
