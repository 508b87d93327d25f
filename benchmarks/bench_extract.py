"""Extraction throughput per core: babelsieve's extract path vs datatrove's WarcReader + Trafilatura.

Both run on the same WARC in this process, pinned to one core, with the same trafilatura
settings (favour precision, deduplicate, no comments). Ours = our WARC reader + charset decoding
+ trafilatura with the per-document time bound; datatrove = WarcReader -> Trafilatura (its
sandboxed extractor process). Language ID and the URL filter are off on both sides.

Reproduce:  python benchmarks/bench_extract.py [--data DIR] [WARC]   (default: the first sample WARC of --data,
            see bench_inputs.py; the figures in benchmarks/README.md are on the original 414-response sample)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inputs import add_data_argument, sample_warcs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def ours(path: Path) -> tuple[int, float, dict[str, str]]:
    from babelsieve.extraction.html_text import TextExtractor, decode_html, is_html
    from babelsieve.extraction.warc import iter_records, parse_http_response

    t0 = time.perf_counter()
    ex = TextExtractor()
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        for rec in iter_records(f, []):
            if rec.type != "response":
                continue
            http = parse_http_response(rec.block)
            if not http or http.status != 200 or not is_html(http.headers.get("content-type", "")):
                continue
            html, _ = decode_html(http.body, http.headers.get("content-type", ""))
            text = ex.extract(html)
            if text:
                out[rec.headers["warc-record-id"]] = text
    return len(out), time.perf_counter() - t0, out


def datatrove(path: Path) -> tuple[int, float, dict[str, str]]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    t0 = time.perf_counter()
    reader = WarcReader(str(path.parent), glob_pattern=path.name)
    extractor = Trafilatura(favour_precision=True, timeout=10.0)
    out = {d.id: d.text for d in extractor.run(reader.run(), rank=0, world_size=1) if d.text}
    return len(out), time.perf_counter() - t0, out


def limit_overhead(n: int = 100_000) -> float:
    from babelsieve.extraction.html_text import time_limit

    t0 = time.perf_counter()
    for _ in range(n):
        with time_limit(10):
            pass
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("warc", nargs="?", type=Path, help="the WARC to extract (default: see --data)")
    add_data_argument(ap)
    args = ap.parse_args()
    path = args.warc or sample_warcs(args.data)[0]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    ours(path)  # warm imports and caches for both sides alike
    n_o, t_o, text_o = ours(path)
    n_d, t_d, text_d = datatrove(path)
    same = sum(1 for k, v in text_o.items() if text_d.get(k) == v)
    print(f"input: {path.name} (one core)")
    print(f"{'':12}{'docs':>8}{'seconds':>10}{'docs/s':>10}")
    print(f"{'babelsieve':12}{n_o:>8}{t_o:>10.2f}{n_o / t_o:>10.1f}")
    print(f"{'datatrove':12}{n_d:>8}{t_d:>10.2f}{n_d / t_d:>10.1f}")
    print(f"ratio (babelsieve / datatrove docs/s): {(n_o / t_o) / (n_d / t_d):.2f}x")
    print(f"identical texts: {same}/{len(text_d)} of datatrove's documents")
    print(f"time-limit mechanism cost: {limit_overhead():.1f} us per document")


if __name__ == "__main__":
    main()
