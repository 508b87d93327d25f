"""Quality-classifier training data cut from the test data, and small fastText models trained from it
(the classify stage's tests and the engine comparison share them)."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

from support.data import TEST_DATA

FIXTURE = TEST_DATA / "filter_fixture.jsonl.gz"
LANGS = ("deu_Latn", "por_Latn", "spa_Latn")


def fixture_pages() -> dict[str, list[dict]]:
    """The filter fixture's pages by language (real extracted web pages)."""
    out: dict[str, list[dict]] = {}
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.setdefault(d["lang_script"], []).append(d)
    return out


def word_salad(text: str, rnd: random.Random, vocabulary: list[str]) -> str:
    """As many words as ``text`` has, drawn at random from ``vocabulary`` (pages of every language)."""
    return " ".join(rnd.choice(vocabulary) for _ in text.split())


def boilerplate(pages: list[dict], rnd: random.Random, n: int) -> list[str]:
    """Documents of short lines (menus, footers, buttons) cut from real pages."""
    short = [ln.strip() for p in pages for ln in p["text"].split("\n") if 0 < len(ln.split()) <= 5]
    return ["\n".join(rnd.choice(short) for _ in range(rnd.randint(5, 30))) for _ in range(n)]


def training_sets(seed: int = 0) -> tuple[list[str], list[str], list[dict], list[dict]]:
    """(positive texts, negative texts, pages to score, junk documents to score): the even pages of each of
    LANGS train (against as many junk documents), the odd ones are scored with as many junk documents."""
    rnd = random.Random(seed)
    pages = fixture_pages()
    vocabulary = [w for lang in LANGS for p in pages[lang] for w in p["text"].split()]
    pos, neg, score_pages, score_junk = [], [], [], []
    for lang in LANGS:
        train, test = pages[lang][0::2], pages[lang][1::2]
        pos += [p["text"] for p in train]
        half = len(train) // 2
        neg += [word_salad(p["text"], rnd, vocabulary) for p in train[:half]] + boilerplate(train, rnd, half)
        score_pages += test
        junk = ([word_salad(p["text"], rnd, vocabulary) for p in test[: len(test) // 2]]
                + boilerplate(test, rnd, len(test) // 2))
        score_junk += [{"id": f"junk-{lang}-{i}", "text": t, "lang_script": lang} for i, t in enumerate(junk)]
    return pos, neg, score_pages, score_junk


def train_model(path: Path, pos: list[str], neg: list[str], **params) -> Path:
    """A supervised fastText model trained in a fresh process (as the kernel tests do)."""
    from babelsieve.pipeline.stages.classify import prepare_texts

    data = path.with_suffix(".txt")
    rows = [f"__label__hq {t}" for t in prepare_texts(pos)] + [f"__label__cc {t}" for t in prepare_texts(neg)]
    random.Random(1).shuffle(rows)
    data.write_text("".join(rows), encoding="utf-8")
    args = dict(epoch=30, lr=1.0, dim=32, wordNgrams=2, bucket=20000, minn=0, maxn=0, thread=1, seed=1, verbose=0)
    args.update(params)
    code = ("import fasttext, json, sys\n"
            "m = fasttext.train_supervised(sys.argv[1], **json.loads(sys.argv[3]))\n"
            "m.save_model(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, str(data), str(path), json.dumps(args)], check=True, timeout=120)
    return path
