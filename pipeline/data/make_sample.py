"""Rebuild pipeline/data/sample.warc.gz: a byte-for-byte subset of the original multilingual sample WARC.

Each WARC record of the source is its own gzip member, so whole members (warcinfo, then the
response and metadata records of the chosen pages) are copied unchanged: the sample is
the original packaging, not re-encoded. Selection: pages with ground truth in as many languages
as possible, a few UDHR documents in other scripts, plus one 404, one redirect, one PNG and one
RSS feed, so the dry run shows every skip reason. Request records are not copied (a request names no
response; the link runs from the response's WARC-Concurrent-To), nor needed: the pipeline reads responses.

Run: python pipeline/data/make_sample.py ORIGINAL_DATA_DIR/sample-multilingual.warc.gz
(the original and its ``.manifest.jsonl``: see tests/data/README.md for where they come from).
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

OUT = Path(__file__).with_name("sample.warc.gz")


def members(data: bytes):
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        body = d.decompress(data[pos:])
        end = len(data) - len(d.unused_data)
        yield data[pos:end], body
        pos = end


def choose(manifest: Path) -> set[str]:
    """Response ids of the pages, documents and special records the sample keeps."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
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
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = Path(sys.argv[1])
    wanted = choose(src.with_name("sample-multilingual.manifest.jsonl"))
    data = src.read_bytes()
    keep: list[bytes] = []
    records = list(members(data))
    # Responses by id; requests/metadata are linked by WARC-Concurrent-To / WARC-Refers-To.
    for raw, body in records:
        head = body[: body.find(b"\r\n\r\n")].decode("utf-8", "replace")
        hdr = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])}
        rid = hdr.get("warc-record-id", "")
        linked = hdr.get("warc-concurrent-to") or hdr.get("warc-refers-to") or ""
        if hdr.get("warc-type") == "warcinfo" or rid in wanted or linked in wanted:
            keep.append(raw)
    OUT.write_bytes(b"".join(keep))
    print(f"{OUT}: {len(keep)} records, {OUT.stat().st_size:,} bytes, {len(wanted)} responses chosen", file=sys.stderr)


if __name__ == "__main__":
    main()
