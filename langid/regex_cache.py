"""Per-machine cache of compiled regular expressions for spaCy's tokenizers.

Loading a spaCy rule tokenizer compiles large regexes: the prefix, suffix and infix alternations of every
language (10-25 kB each, ~50 ms per language) and, for French, ``TOKEN_MATCH`` (one alternation of ~600 patterns
over spaCy's Unicode letter classes, 3-5 CPU seconds at ``import spacy.lang.fr``). A process that meets 40
languages pays seconds for it, again in every worker (datatrove too). What ``re`` computes is the pattern's
``_sre`` code, a list of integers that depends only on the pattern string, the flags and the Python version.

``regex_code_cache(tag)`` is a block: before it, the code stored under ``tag`` (``$BABELSIEVE_CACHE`` or
``~/.cache/babelsieve``, ``regex/``) is turned back into pattern objects and put into ``re``'s own compile cache
under their exact (type, pattern, flags) key; inside it, a ``re.compile`` of one of those patterns returns the
stored object instead of compiling; after it, long patterns that were compiled in the block are added to the
file. The same code gives the same matcher, and a stored object is used only for exactly the pattern string and
flags it was built from (``re``'s own key), so nothing here can change a result. Anything unexpected (another
Python, a missing ``re`` internal, an unreadable file) means the plain compile.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FORMAT = 2
MIN_PATTERN_CHARS = 1000  # shorter patterns compile in well under a millisecond
STATS: dict[str, dict[str, int]] = {}  # tag -> {"seeded": n, "compiled": n}: for tests and reports


def _cache_file(tag: str) -> Path | None:
    try:
        import _sre

        key = f"{tag}-py{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}-sre{_sre.MAGIC}-v{_FORMAT}"
    except Exception:
        return None
    root = Path(os.environ.get("BABELSIEVE_CACHE") or Path.home() / ".cache" / "babelsieve")
    return root / "regex" / f"{key}.pickle"


def _code_of(pattern: str, flags: int) -> tuple:
    """What ``re._compiler.compile`` hands to ``_sre.compile`` for this pattern (same steps, same order)."""
    from re import _compiler, _parser  # type: ignore[attr-defined]

    p = _parser.parse(pattern, flags)
    code = _compiler._code(p, flags)
    groupindex = p.state.groupdict
    indexgroup = [None] * p.state.groups
    for k, i in groupindex.items():
        indexgroup[i] = k
    # opcodes are int subclasses that do not pickle: plain ints, as _sre reads them
    return (
        pattern,
        flags,
        flags | p.state.flags,
        [int(c) for c in code],
        p.state.groups - 1,
        dict(groupindex),
        tuple(indexgroup),
    )


def _load(path: Path | None) -> list[tuple]:
    if path is None or not path.exists():
        return []
    try:
        entries = pickle.loads(path.read_bytes())
        return entries if isinstance(entries, list) else []
    except Exception:
        return []


def _seed(entries: list[tuple]) -> int:
    import _sre

    n = 0
    for pattern, flags, final_flags, code, groups, groupindex, indexgroup in entries:
        key = (str, pattern, flags)
        if key not in re._cache:  # type: ignore[attr-defined]
            re._cache[key] = _sre.compile(pattern, final_flags, code, groups, groupindex, indexgroup)  # type: ignore[attr-defined]
            n += 1
    return n


@contextmanager
def regex_code_cache(tag: str) -> Iterator[None]:
    """Long regexes compiled inside the block come from, and go to, the per-machine cache file ``tag``."""
    path = _cache_file(tag)
    entries = _load(path)
    stats = STATS.setdefault(tag, {"seeded": 0, "compiled": 0})
    try:
        stats["seeded"] += _seed(entries)
        before = set(re._cache)  # type: ignore[attr-defined]
    except Exception:  # no usable re internals: plain compiles
        yield
        return
    yield
    try:
        known = {(e[0], e[1]) for e in entries}
        new = [
            (p, flags)
            for (kind, p, flags) in list(re._cache)  # type: ignore[attr-defined]
            if kind is str
            and len(p) >= MIN_PATTERN_CHARS
            and (kind, p, flags) not in before
            and (p, flags) not in known
        ]
        stats["compiled"] += len(new)
        if new and path is not None:
            entries += [_code_of(p, flags) for p, flags in new]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(tmp, path)
    except Exception:
        pass
