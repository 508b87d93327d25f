"""Rebuild pipeline/data/sample.warc.gz: a byte-for-byte subset of ../shared/data's sample WARC.

Each WARC record of the source is its own gzip member, so whole members (warcinfo, then the
request/response/metadata records of the chosen pages) are copied unchanged: the sample is
real crawl packaging, not re-encoded. Selection: pages with ground truth in as many languages
as possible, a few UDHR documents in other scripts, plus one 404, one redirect, one PNG and one
RSS feed, so the dry run shows every skip reason. Run: python pipeline/data/make_sample.py
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "shared/data/sample-multilingual.warc.gz"
MANIFEST = SRC.with_name("sample-multilingual.manifest.jsonl")
OUT = Path(__file__).with_name("sample.warc.gz")


def members(data: bytes):
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        body = d.decompress(data[pos:])
        end = len(data) - len(d.unused_data)
        yield data[pos:end], body
        pos = end


def choose() -> set[str]:
    rows = [json.loads(x) for x in MANIFEST.read_text().splitlines()]
    chosen: list[str] = []
    per_lang: dict[str, int] = {}
    for r in rows:  # pages with ground truth, at most 3 per detected language
        lang = r.get("lang_detected_py3langid") or "?"
        if r["kind"] == "html-page" and r.get("has_ground_truth") and per_lang.get(lang, 0) < 3:
            per_lang[lang] = per_lang.get(lang, 0) + 1
            chosen.append(r["warc_record_id"])
    scripts: set[str] = set()
    for r in rows:  # one UDHR document per script not yet covered
        if r["kind"] == "udhr-html" and r.get("script_detected") not in scripts:
            scripts.add(r.get("script_detected"))
            chosen.append(r["warc_record_id"])
    for kind in ("http-404", "http-301-redirect", "image-png", "rss-feed"):
        chosen.append(next(r["warc_record_id"] for r in rows if r["kind"] == kind))
    return set(chosen)


def main() -> None:
    wanted = choose()
    data = SRC.read_bytes()
    keep: list[bytes] = []
    concurrent: dict[str, str] = {}
    records = list(members(data))
    # Responses by id; requests/metadata are linked by WARC-Concurrent-To / WARC-Refers-To.
    for raw, body in records:
        head = body[: body.find(b"\r\n\r\n")].decode("utf-8", "replace")
        hdr = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in head.split("\r\n")[1:])}
        rid = hdr.get("warc-record-id", "")
        linked = hdr.get("warc-concurrent-to") or hdr.get("warc-refers-to") or ""
        if hdr.get("warc-type") == "warcinfo" or rid in wanted or linked in wanted:
            keep.append(raw)
    OUT.write_bytes(b"".join(keep))
    print(f"{OUT}: {len(keep)} records, {OUT.stat().st_size:,} bytes, {len(wanted)} responses chosen", file=sys.stderr)


if __name__ == "__main__":
    main()
