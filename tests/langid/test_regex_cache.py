"""The compiled-regex cache (spaCy French TOKEN_MATCH) gives the same matcher as compiling, in a new process."""

import json
import os
import subprocess
import sys

from support.data import TEST_DATA

PROBE = r"""
import gzip, json, sys, time
t = time.process_time()
from babelsieve.langid import regex_cache
from babelsieve.langid.word_tokenizers import _LazySpecials
lazy = _LazySpecials.for_language("fr")  # imports spacy.lang.fr (TOKEN_MATCH) and builds the affix regexes
seconds = time.process_time() - t
from spacy.lang.fr import _tokenizer_exceptions_list as fr_list
import spacy.lang.fr.tokenizer_exceptions as fr_exc
words = set(fr_list.FR_BASE_EXCEPTIONS)
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
    for d in map(json.loads, f):
        words.update(w.strip(".,;:!?()«»\"") for w in d["text"].split())
probes = sorted(words)
probes += [w.upper() for w in probes[::7]] + [w.capitalize() for w in probes[::5]]
probes += [p + sep + w for p in ("anti", "contre", "hip", "new", "droits", "entr", "r", "grand", "sous", "ex")
           for sep in ("-", "'", "\u2019", "\u2010", "") for w in ("hop", "york", "abat", "de-l'homme", "Vampire", "é")]
probes += ["(" + w + ")," for w in probes[::11]] + ['"' + w + '...' for w in probes[::13]]
span = lambda m: m.span() if m else None
tok = lazy.tok
out = {"stats": regex_cache.STATS, "seconds": seconds, "n": len(probes),
       "token_match": [span(fr_exc.TOKEN_MATCH(s)) for s in probes],
       "prefix": [span(tok.prefix_search(s)) for s in probes],
       "suffix": [span(tok.suffix_search(s)) for s in probes],
       "infix": [[m.span() for m in tok.infix_finditer(s)] for s in probes]}
json.dump(out, open(sys.argv[2], "w"))
"""  # noqa: E501 - a child process's source, kept byte-identical (a noqa inside would become part of it)


def _probe(tmp_path, name: str, cache: str) -> dict:

    fixture = TEST_DATA / "filter_fixture.jsonl.gz"
    out = tmp_path / f"{name}.json"
    env = dict(os.environ, BABELSIEVE_CACHE=cache)
    subprocess.run([sys.executable, "-c", PROBE, str(fixture), str(out)], check=True, env=env, timeout=300)
    return json.loads(out.read_text())


def test_cached_french_regexes_equal_the_compiled_ones(tmp_path):
    """French: TOKEN_MATCH (compiled at import) and the prefix/suffix/infix regexes, compiled in one process and
    taken from the cache in the next, give the same match on every probe."""
    cache = str(tmp_path / "cache")
    first = _probe(tmp_path, "first", cache)  # compiles (as spaCy does) and writes the cache
    second = _probe(tmp_path, "second", cache)  # takes the patterns from the cache
    tag = next(iter(first["stats"]))
    assert first["stats"][tag] == {"seeded": 0, "compiled": 4}  # TOKEN_MATCH, prefixes, suffixes, infixes
    assert second["stats"][tag] == {"seeded": 4, "compiled": 0}
    assert first["n"] == second["n"] > 20_000
    for key in ("token_match", "prefix", "suffix", "infix"):
        assert first[key] == second[key], key
        assert sum(bool(s) for s in first[key]) > 100, key  # the probes do exercise the pattern
    # a corrupt cache file is ignored: the process compiles again and rewrites it
    for f in (tmp_path / "cache" / "regex").glob("*.pickle"):
        f.write_bytes(b"not a pickle")
    third = _probe(tmp_path, "third", cache)
    assert third["stats"][tag] == {"seeded": 0, "compiled": 4}
    assert third["token_match"] == first["token_match"] and third["infix"] == first["infix"]
    assert _probe(tmp_path, "fourth", cache)["stats"][tag]["seeded"] == 4
