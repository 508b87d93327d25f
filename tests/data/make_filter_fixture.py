"""Build tests/data/filter_fixture.jsonl.gz: real documents for the filter fidelity test.

    python tests/data/make_filter_fixture.py ORIGINAL_DATA_DIR

``ORIGINAL_DATA_DIR`` holds the original ``sample-multilingual.warc.gz`` (+ ``.manifest.jsonl``) and
``lid-dev-udhr.jsonl`` (tests/data/README.md says where they come from).

How the documents are made (deterministic: fixed seed, sorted inputs):

1. **Web pages**: every HTML response of ``sample-multilingual.warc.gz`` (real pages, see
   tests/data/README.md) whose manifest ``lang_detected_py3langid`` is one of ``WARC_LANGS``,
   extracted with trafilatura favouring precision (babelsieve's extractor: charset decoding, then
   ``trafilatura.extract(favor_precision=True)``), labelled with the matching FineWeb2 label.
   English pages are also labelled as Spanish/German/... ("mislabelled" docs) to exercise stopwords.
2. **UDHR**: ``lid-dev-udhr.jsonl`` lines grouped per label into whole documents (preamble + all
   articles, one per line) and into windows of 3 and 8 consecutive lines.
3. **Variants** (marked ``variant``), made from the real texts above by slicing, repeating or
   re-punctuating them so every FineWeb2 rule fires at least once: duplicated lines, repeated
   paragraphs, a repeated phrase, punctuation stripped from line ends, one word per line, spaces
   removed / inserted between characters, hashtags, ellipses, bullets, digits for letters, a long line
   duplicated, short prefixes, plus three synthetic edge cases (empty, whitespace, punctuation only).

Only labels whose datatrove tokenizer works offline are used (datatrove must run on them too).
"""

from __future__ import annotations

import gzip
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "filter_fixture.jsonl.gz"

WARC_LANGS = {
    "de": "deu_Latn", "es": "spa_Latn", "fr": "fra_Latn", "pl": "pol_Latn", "pt": "por_Latn", "it": "ita_Latn",
    "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "bg": "bul_Cyrl", "ar": "arb_Arab", "zh": "cmn_Hani", "ja": "jpn_Jpan",
    "hi": "hin_Deva", "th": "tha_Thai", "el": "ell_Grek", "he": "heb_Hebr", "cs": "ces_Latn", "tr": "tur_Latn",
}
UDHR_LABELS = [
    "cmn_Hani", "hin_Deva", "san_Deva", "heb_Hebr", "tgk_Cyrl", "abk_Cyrl", "skr_Arab", "por_Latn", "pol_Latn",
    "ces_Latn", "hun_Latn", "hau_Latn", "swh_Latn", "amh_Ethi", "ceb_Latn", "zul_Latn",
]
MAX_CHARS = 3000  # cap per document (keeps the fixture small and the test fast)


def extract_pages(shared: Path) -> list[dict]:
    from babelsieve.extraction.html_text import TextExtractor, decode_html, is_html
    from babelsieve.extraction.warc import iter_records, parse_http_response

    manifest = {}
    for line in (shared / "sample-multilingual.manifest.jsonl").open(encoding="utf-8"):
        m = json.loads(line)
        manifest[m["warc_record_id"]] = m
    ex = TextExtractor(favour_precision=True, deduplicate=False)
    docs = []
    problems: list = []
    with (shared / "sample-multilingual.warc.gz").open("rb") as f:
        for rec in iter_records(f, problems):
            if rec.type != "response":
                continue
            m = manifest.get(rec.headers.get("warc-record-id", ""))
            if not m or m["kind"] not in ("html-page", "rss-feed"):
                continue
            lang = m.get("lang_detected_py3langid")
            if lang not in WARC_LANGS and lang != "en":
                continue
            resp = parse_http_response(rec.block)
            if resp is None or resp.status != 200:
                continue
            ctype = resp.headers.get("content-type", "")
            try:
                html, _ = decode_html(resp.body, ctype)
                text = ex.extract(html) if (is_html(ctype) or m["kind"] == "html-page") else None
            except Exception:  # noqa: BLE001
                text = None
            if not text:
                continue
            docs.append({"lang": lang, "url": m["url"], "text": text[:MAX_CHARS]})
    return docs


def udhr_docs(shared: Path) -> list[dict]:
    by = defaultdict(list)
    for line in (shared / "lid-dev-udhr.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        if r["label"] in UDHR_LABELS:
            by[r["label"]].append(r["text"])
    out = []
    for lab in sorted(by):
        lines = by[lab]
        out.append({"lang_script": lab, "origin": f"udhr:{lab}:all", "text": "\n".join(lines)[:MAX_CHARS]})
        for w in (3, 8):
            for s in range(0, len(lines), w):
                out.append({"lang_script": lab, "origin": f"udhr:{lab}:{s}+{w}", "text": "\n".join(lines[s : s + w])})
    return out


_PUNCT_END = re.compile(r"[.!?。！？।॥؟۔:;]+$")


def variants(text: str, rng: random.Random) -> list[tuple[str, str]]:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return []
    words = text.split()
    out = []
    # duplicated lines: copies of random lines appended
    k = max(1, len(lines) // 2)
    out.append(("dup_lines", "\n".join(lines + rng.sample(lines, min(k, len(lines))))))
    # the whole text repeated (paragraph / n-gram repetition)
    out.append(("repeat_text", text + "\n\n" + text))
    # a short phrase repeated
    if len(words) >= 3:
        i = rng.randrange(0, len(words) - 2)
        phrase = " ".join(words[i : i + 2])
        out.append(("phrase_spam", text[:1500] + "\n" + " ".join([phrase] * 40)))
    # line ends without punctuation
    out.append(("no_end_punct", "\n".join(_PUNCT_END.sub("", ln.rstrip()) for ln in lines)))
    # one to three words per line
    if len(words) > 10:
        chunks, j = [], 0
        while j < len(words):
            n = rng.randint(1, 3)
            chunks.append(" ".join(words[j : j + n]))
            j += n
        out.append(("short_lines", "\n".join(chunks[:600])))
    out.append(("no_spaces", "\n".join(ln.replace(" ", "") for ln in lines)))
    out.append(("spaced_chars", " ".join(text[:1500])))
    out.append(("hashtags", " ".join("#" + w if rng.random() < 0.3 else w for w in words[:800])))
    out.append(("ellipsis_words", " ".join(w + " ..." if rng.random() < 0.2 else w for w in words[:800])))
    out.append(("bullets", "\n".join("- " + ln for ln in lines)))
    out.append(("end_ellipsis", "\n".join(ln.rstrip() + ("…" if rng.random() < 0.5 else "") for ln in lines)))
    out.append(("digits", re.sub(r"[^\W\d_]", lambda m: str(ord(m.group(0)) % 10), text[:3000])))
    longest = max(lines, key=len)
    out.append(("dup_long_line", text + "\n" + longest))
    out.append(("prefix_30_words", " ".join(words[:30])))
    out.append(("prefix_120_words", " ".join(words[:120])))
    return out


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("How the documents")[0])
    shared = Path(sys.argv[1])
    rng = random.Random(20261123)
    docs: list[dict] = []
    pages = extract_pages(shared)
    english = [p for p in pages if p["lang"] == "en"]
    for p in pages:
        if p["lang"] == "en":
            continue
        docs.append({"lang_script": WARC_LANGS[p["lang"]], "origin": f"warc:{p['url']}", "text": p["text"]})
    mislabel = ["spa_Latn", "deu_Latn", "fra_Latn", "pol_Latn", "rus_Cyrl", "cmn_Hani"]
    for i, p in enumerate(english[:18]):
        docs.append({"lang_script": mislabel[i % len(mislabel)], "origin": f"warc-en-mislabelled:{p['url']}",
                     "text": p["text"]})
    docs += udhr_docs(shared)
    base = list(docs)
    # variants of a subset of the real docs: a few per language
    per_lang = defaultdict(list)
    for d in base:
        per_lang[d["lang_script"]].append(d)
    for lab in sorted(per_lang):
        cand = [d for d in per_lang[lab] if len(d["text"]) > 400]
        for d in rng.sample(cand, min(3, len(cand))):
            for name, t in variants(d["text"], rng):
                docs.append({"lang_script": lab, "origin": d["origin"], "variant": name, "text": t[: MAX_CHARS * 2]})
    for lab in ("deu_Latn", "cmn_Hani", "tha_Thai"):
        for name, t in (("empty", ""), ("whitespace", "  \n\n \t \n"), ("punct_only", "... !!! ---\n??? ***")):
            docs.append({"lang_script": lab, "origin": "synthetic", "variant": name, "text": t})
    for i, d in enumerate(docs):
        d["id"] = f"doc{i:05d}"
        d.setdefault("variant", None)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    langs = defaultdict(int)
    for d in docs:
        langs[d["lang_script"]] += 1
    print(f"{len(docs)} documents, {len(langs)} labels -> {OUT} ({OUT.stat().st_size} bytes)")
    print(dict(sorted(langs.items())))


if __name__ == "__main__":
    main()
