"""The compiled-regex cache (spaCy French TOKEN_MATCH) gives the same matcher as compiling, in a new process."""

import json
import os
import subprocess
import sys

PROBE = r"""
import gzip, json, sys, time
from pathlib import Path
t = time.process_time()
from babelsieve.langid import regex_cache
mod = regex_cache.import_with_regex_cache("spacy.lang.fr.tokenizer_exceptions")
seconds = time.process_time() - t
from spacy.lang.fr import _tokenizer_exceptions_list as fr_list
words = set(fr_list.FR_BASE_EXCEPTIONS)
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
    for d in map(json.loads, f):
        words.update(w.strip(".,;:!?()«»\"") for w in d["text"].split())
probes = sorted(words)
probes += [w.upper() for w in probes[::7]] + [w.capitalize() for w in probes[::5]]
probes += [p + sep + w for p in ("anti", "contre", "hip", "new", "droits", "entr", "r", "grand", "sous", "ex")
           for sep in ("-", "'", "\u2019", "\u2010", "") for w in ("hop", "york", "abat", "de-l'homme", "Vampire", "é")]
match = mod.TOKEN_MATCH
out = {"from_cache": regex_cache.FROM_CACHE.get("spacy.lang.fr.tokenizer_exceptions"), "seconds": seconds,
       "n": len(probes), "spans": [m.span() if (m := match(s)) else None for s in probes]}
json.dump(out, open(sys.argv[2], "w"))
"""


def _probe(tmp_path, name: str, cache: str) -> dict:
    from pathlib import Path

    fixture = Path(__file__).parent / "data" / "filter_fixture.jsonl.gz"
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, BABELSIEVE_CACHE=cache)
    subprocess.run([sys.executable, "-c", PROBE, str(fixture), str(out)], check=True, env=env, timeout=300)
    return json.loads(out.read_text())


def test_cached_french_token_match_equals_the_compiled_one(tmp_path):
    cache = str(tmp_path / "cache")
    first = _probe(tmp_path, "first", cache)  # compiles (as spaCy does) and writes the cache
    second = _probe(tmp_path, "second", cache)  # takes the pattern from the cache
    assert first["from_cache"] is False and second["from_cache"] is True
    assert list((tmp_path / "cache" / "regex").glob("*.pickle"))
    assert first["n"] == second["n"] > 20_000
    assert first["spans"] == second["spans"]
    assert sum(s is not None for s in first["spans"]) > 100  # the probes do exercise the pattern
    # a corrupt cache file is ignored: the import compiles again and rewrites it
    for f in (tmp_path / "cache" / "regex").glob("*.pickle"):
        f.write_bytes(b"not a pickle")
    third = _probe(tmp_path, "third", cache)
    assert third["from_cache"] is False and third["spans"] == first["spans"]
    assert _probe(tmp_path, "fourth", cache)["from_cache"] is True
