"""A planted near-duplicate corpus for the dedup tests and benchmarks: random vocabularies,
copies with a chosen share of words replaced, and document rows in the pipeline's schema."""

from __future__ import annotations

import random
from typing import Any


def vocab(rng: random.Random, n: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(n)})


def mutate(words: list[str], rate: float, rng: random.Random, vocab_: list[str]) -> list[str]:
    """Replace a fraction ``rate`` of word positions by random words."""
    out = list(words)
    for i in rng.sample(range(len(out)), int(round(rate * len(out)))):
        out[i] = rng.choice(vocab_)
    return out


def doc(idx: int, text: str, lang: str = "eng_Latn", dump: str = "CC-TEST") -> dict[str, Any]:
    language, script = lang.split("_")
    return {
        "text": text,
        "id": f"<urn:uuid:{idx:08d}>",
        "dump": dump,
        "url": f"https://example.com/{lang}/{idx}",
        "date": "2024-01-01T00:00:00Z",
        "file_path": "test.warc.gz",
        "language": language,
        "language_script": script,
        "language_score": 0.99,
        "top_langs": "{}",
        "minhash_cluster_size": None,
        "lang_script": lang,
    }
