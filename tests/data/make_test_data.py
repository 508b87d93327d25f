"""Rebuild the test data in tests/data/ from the original files (see tests/data/README.md).

Usage::

    python tests/data/make_test_data.py --data ORIGINAL_DATA_DIR --fineweb2 FINEWEB2_DIR

``ORIGINAL_DATA_DIR`` holds ``sample-multilingual.warc.gz`` (+ its ``.manifest.jsonl``,
``.groundtruth.jsonl`` and ``-truncated.warc.gz``), ``lid-dev-udhr.jsonl``, ``cc/`` and ``third-party/``;
``FINEWEB2_DIR`` is a checkout of huggingface/fineweb-2 (``configs/*.yml``, ``misc/rehydration/distributions``
and ``misc/rehydration/weights``; a flat ``rehydration/`` folder holding both is accepted too).

Every WARC here is made of whole gzip members copied byte for byte from an original (each WARC
record of these files is its own gzip member), so the records are the original packaging, not
re-encoded. Outputs are deterministic (gzip header time 0, sorted keys), so a rebuild from the same
originals gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import zlib
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLED_SAMPLE = HERE.parents[1] / "pipeline" / "data" / "sample.warc.gz"

PAGES_BUDGET = 2_000_000  # bytes of pages.warc.gz
TRUNCATED_TAIL_BUDGET = 120_000  # complete records kept before the cut record
UDHR_LINES_PER_LABEL = 20
# The documents on which bench_e2e.py's kept/removed decisions differ from datatrove's (benchmarks/README.md);
# tests/pipeline/cli/test_bench_disagreements.py explains each one.
BENCH_DISAGREEMENTS = [
    "<urn:uuid:7eb1edac-636f-4f35-a5ce-ba7f35c21b9f>",  # UDHR in Plains Cree syllabics (und_Cans)
    "<urn:uuid:d44017f2-af5d-46b7-acaf-a4c2d7e26416>",  # UDHR in Bosnian, Latin script (hrv_Latn)
    "<urn:uuid:e6ca998a-dc39-4527-8509-5babf7f5eecf>",  # radiomaryja.pl: UTF-8 but one bad byte (pol_Latn)
    "<urn:uuid:ec4f23ea-be27-4719-9701-094e8fd467f4>",  # avaz.ba: Bosnian news (hrv_Latn)
]
# Copied whole (small): real Common Crawl excerpts and third-party WARCs with known quirks.
WHOLE_FILES = [
    "cc/CC-MAIN-2020-34-excerpt.warc.gz",
    "cc/CC-MAIN-2024-22-whirlwind.warc.gz",
    "third-party/dolma-wget-sample-0000.warc.gz",
    "third-party/warcio-example-iana.org-chunked.warc",
]


def gzip_members(data: bytes) -> list[bytes]:
    """The raw gzip members of a .warc.gz; a cut last member is returned as it is."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        try:
            d.decompress(data[pos:])
        except zlib.error:
            out.append(data[pos:])
            break
        if not d.eof:  # stream ends inside this member
            out.append(data[pos:])
            break
        end = len(data) - len(d.unused_data)
        out.append(data[pos:end])
        pos = end
    return out


def warc_headers(member: bytes) -> dict[str, str]:
    """WARC headers (lower-case names) of one gzip member, read from as much of it as decompresses."""
    body = zlib.decompressobj(31).decompress(member)
    head = body[: body.find(b"\r\n\r\n")].decode("utf-8", "replace")
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])}


def owners(members: list[bytes]) -> list[str]:
    """For each member, the id of the response it belongs to: a response's own id, a metadata record's
    WARC-Refers-To / WARC-Concurrent-To, a request's id as named by its response's WARC-Concurrent-To."""
    hdrs = [warc_headers(m) for m in members]
    request_of = {h["warc-concurrent-to"]: h["warc-record-id"] for h in hdrs
                  if h.get("warc-type") == "response" and h.get("warc-concurrent-to")}
    out = []
    for h in hdrs:
        rid = h.get("warc-record-id", "")
        if h.get("warc-type") == "response":
            out.append(rid)
        elif rid in request_of:
            out.append(request_of[rid])
        else:
            out.append(h.get("warc-refers-to") or h.get("warc-concurrent-to") or rid)
    return out


def write_gzip(path: Path, text: str) -> None:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))
    path.write_bytes(buf.getvalue())


def bundled_responses() -> set[str]:
    ids = set()
    for m in gzip_members(BUNDLED_SAMPLE.read_bytes()):
        h = warc_headers(m)
        if h.get("warc-type") == "response":
            ids.add(h["warc-record-id"])
    return ids


def make_pages(data: Path, out: Path) -> set[str]:
    """pages.warc.gz: HTML pages of the original sample that the bundled dry-run sample lacks.

    First every page with must-contain snippets in the ground truth (the extraction tests count them),
    then the smallest other pages until the budget is spent. Returns the chosen response ids."""
    manifest = [json.loads(x) for x in (data / "sample-multilingual.manifest.jsonl").read_text().splitlines()]
    gt = {json.loads(x)["warc_record_id"]: json.loads(x)
          for x in (data / "sample-multilingual.groundtruth.jsonl").read_text(encoding="utf-8").splitlines()}
    in_bundle = bundled_responses()
    members = gzip_members((data / "sample-multilingual.warc.gz").read_bytes())
    owner = owners(members)
    groups: dict[str, list[bytes]] = {}
    for m, o in zip(members[1:], owner[1:], strict=True):
        groups.setdefault(o, []).append(m)
    pages = [r["warc_record_id"] for r in manifest
             if r["kind"] == "html-page" and r["warc_record_id"] not in in_bundle]
    size = {rid: sum(len(m) for m in groups[rid]) for rid in pages}
    with_snippets = [rid for rid in pages if (gt.get(rid) or {}).get("must_contain")]
    chosen = list(with_snippets)
    used = len(members[0]) + sum(size[r] for r in chosen)
    for rid in sorted((r for r in pages if r not in chosen), key=lambda r: (size[r], r)):
        if used + size[rid] > PAGES_BUDGET:
            break
        chosen.append(rid)
        used += size[rid]
    keep = set(chosen)
    # Original file order, warcinfo first.
    kept = [members[0]] + [m for m, o in zip(members[1:], owner[1:], strict=True) if o in keep]
    out.write_bytes(b"".join(kept))
    print(f"{out.name}: {len(keep)} pages ({len(with_snippets)} with snippets), {out.stat().st_size:,} bytes",
          file=sys.stderr)
    return keep


def make_bench_disagreements(data: Path, out: Path) -> None:
    """The warcinfo and the request/response/metadata records of the BENCH_DISAGREEMENTS pages, original order."""
    members = gzip_members((data / "sample-multilingual.warc.gz").read_bytes())
    owner = owners(members)
    kept = [members[0]] + [m for m, o in zip(members[1:], owner[1:], strict=True) if o in BENCH_DISAGREEMENTS]
    assert sum(warc_headers(m).get("warc-type") == "response" for m in kept) == len(BENCH_DISAGREEMENTS)
    out.write_bytes(b"".join(kept))
    print(f"{out.name}: {len(BENCH_DISAGREEMENTS)} pages, {out.stat().st_size:,} bytes", file=sys.stderr)


def make_groundtruth(data: Path, out: Path, responses: set[str]) -> None:
    """Ground truth of the pages in the bundled sample and in pages.warc.gz, original line order."""
    lines = [x for x in (data / "sample-multilingual.groundtruth.jsonl").read_text(encoding="utf-8").splitlines()
             if json.loads(x)["warc_record_id"] in responses]
    write_gzip(out, "".join(x + "\n" for x in lines))
    print(f"{out.name}: {len(lines)} pages", file=sys.stderr)


def make_truncated(data: Path, out: Path) -> None:
    """The end of the original truncated file: warcinfo, the complete records just before the cut
    (as many as fit the budget, whole request/response/metadata groups) and the cut record itself."""
    members = gzip_members((data / "sample-multilingual-truncated.warc.gz").read_bytes())
    head, complete, cut = members[0], members[1:-1], members[-1]
    assert zlib.decompressobj(31).decompress(cut) and "bhaskar.com" in warc_headers(cut)["warc-target-uri"]
    tail: list[bytes] = []
    for m in reversed(complete):
        if sum(len(x) for x in tail) + len(m) > TRUNCATED_TAIL_BUDGET:
            break
        tail.insert(0, m)
    while tail and warc_headers(tail[0]).get("warc-type") != "request":  # start at a whole group
        tail.pop(0)
    out.write_bytes(head + b"".join(tail) + cut)
    types = Counter(warc_headers(m).get("warc-type") for m in [head, *tail])
    print(f"{out.name}: warcinfo + {len(tail)} complete records ({types['response']} responses) + 1 cut response, "
          f"{out.stat().st_size:,} bytes", file=sys.stderr)


def make_udhr(data: Path, out: Path) -> None:
    """The first UDHR_LINES_PER_LABEL lines of every label of the LID dev set, original order."""
    seen: Counter = Counter()
    lines = []
    for x in (data / "lid-dev-udhr.jsonl").read_text(encoding="utf-8").splitlines():
        if not x.strip():
            continue
        label = json.loads(x)["label"]
        seen[label] += 1
        if seen[label] <= UDHR_LINES_PER_LABEL:
            lines.append(x)
    write_gzip(out, "".join(x + "\n" for x in lines))
    print(f"{out.name}: {len(lines)} lines, {len(seen)} labels", file=sys.stderr)


def make_fineweb2_configs(fineweb2: Path, out: Path) -> None:
    """Every FineWeb-2 ``configs/*.yml``, verbatim, as {file name: text}."""
    files = sorted((fineweb2 / "configs").glob("*.yml"))
    write_gzip(out, json.dumps({p.name: p.read_text(encoding="utf-8") for p in files}, ensure_ascii=False,
                               sort_keys=True))
    print(f"{out.name}: {len(files)} configs", file=sys.stderr)


def make_rehydration(fineweb2: Path, out: Path) -> None:
    """FineWeb-2's rehydration inputs and the SHA-256 of its published weight files."""
    ref = next(d for d in (fineweb2 / "misc" / "rehydration", fineweb2 / "rehydration") if d.is_dir())
    weights = ref / "weights" if (ref / "weights").is_dir() else ref  # the repository's layout, or a flat copy
    doc = {
        "distributions": {p.stem: p.read_text(encoding="utf-8")
                          for p in sorted((ref / "distributions").glob("*.json"))},
        "resulting_ds_sizes": json.loads((weights / "resulting_ds_sizes.json").read_text(encoding="utf-8")),
        "published_sha256": {name: hashlib.sha256((weights / name).read_bytes()).hexdigest()
                             for name in ("up_to_05_reps.json", "up_to_10_reps.json")},
    }
    write_gzip(out, json.dumps(doc, ensure_ascii=False, sort_keys=True))
    print(f"{out.name}: {len(doc['distributions'])} distributions", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="directory of the original test data")
    ap.add_argument("--fineweb2", type=Path, required=True, help="FineWeb-2 reference directory")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args()
    for name in WHOLE_FILES:
        (a.out / Path(name).parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.data / name, a.out / name)
    pages = make_pages(a.data, a.out / "pages.warc.gz")
    make_groundtruth(a.data, a.out / "sample.groundtruth.jsonl.gz", pages | bundled_responses())
    make_truncated(a.data, a.out / "sample-truncated.warc.gz")
    make_bench_disagreements(a.data, a.out / "bench-disagreements.warc.gz")
    make_udhr(a.data, a.out / "lid-dev-udhr.jsonl.gz")
    make_fineweb2_configs(a.fineweb2, a.out / "fineweb2-configs.json.gz")
    make_rehydration(a.fineweb2, a.out / "fineweb2-rehydration.json.gz")


if __name__ == "__main__":
    main()
