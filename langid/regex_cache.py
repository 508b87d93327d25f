"""Compiled-regex cache for spaCy language modules that compile a huge regex at import.

``import spacy.lang.fr`` compiles ``TOKEN_MATCH``, one alternation of ~600 patterns over spaCy's Unicode letter
classes: 3-5 CPU seconds in ``re``'s parser and charset optimiser, in every process that tokenizes French (the
same cost in datatrove). The result of that work is the pattern's ``_sre`` code, a list of integers that depends
only on the pattern string, the flags and the Python version. We store it once per machine (under
``$BABELSIEVE_CACHE`` or ``~/.cache/babelsieve``, ``regex/``) and, before the module is imported, put the
pattern built from it into ``re``'s own compile cache under the module's exact (pattern, flags) key. The module's
``re.compile`` call then returns that object instead of compiling: the same code gives the same matcher.

Nothing here can change a result: the cached object is used only when the module asks ``re`` for exactly the
pattern string and flags it was built from (``re``'s cache key); after the import we check that the module holds
our object, and anything unexpected (another Python, a changed module, a missing ``re`` internal) falls back to
the plain import and rewrites the cache.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from pathlib import Path
from types import ModuleType

# modules whose import compiles a regex worth caching: module -> (global holding the pattern, the flags argument
# of the module's re.compile call; spaCy writes its flags inline, "(?iu)...")
SLOW_REGEX_MODULES: dict[str, tuple[tuple[str, int], ...]] = {"spacy.lang.fr.tokenizer_exceptions": (("TOKEN_MATCH", 0),)}
_FORMAT = 1
FROM_CACHE: dict[str, bool] = {}  # module -> were its regexes taken from the cache (for tests and reports)


def _cache_file(module: str) -> Path | None:
    try:
        import _sre
        import spacy

        tag = f"{module}-spacy{spacy.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}-sre{_sre.MAGIC}-v{_FORMAT}"
    except Exception:
        return None
    root = Path(os.environ.get("BABELSIEVE_CACHE") or Path.home() / ".cache" / "babelsieve")
    return root / "regex" / f"{tag}.pickle"


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
    return (pattern, flags, flags | p.state.flags, [int(c) for c in code], p.state.groups - 1, dict(groupindex), tuple(indexgroup))


def _seed(entries: list[tuple]) -> list:
    import _sre
    import re

    objs = []
    for pattern, flags, final_flags, code, groups, groupindex, indexgroup in entries:
        obj = _sre.compile(pattern, final_flags, code, groups, groupindex, indexgroup)
        re._cache[(str, pattern, flags)] = obj  # type: ignore[attr-defined]
        objs.append(obj)
    return objs


def preload_spacy_language(code: str) -> None:
    """Import spaCy's modules for language ``code`` that have slow regexes, through the cache."""
    for module in SLOW_REGEX_MODULES:
        if module.startswith(f"spacy.lang.{code}."):
            import_with_regex_cache(module)


def import_with_regex_cache(module: str) -> ModuleType:
    """``importlib.import_module(module)``, with its slow regexes taken from the cache when they are there."""
    names = SLOW_REGEX_MODULES.get(module)
    if names is None or module in sys.modules:
        return importlib.import_module(module)
    path = _cache_file(module)
    seeded: list = []
    if path is not None and path.exists():
        try:
            seeded = _seed(pickle.loads(path.read_bytes()))
        except Exception:
            seeded = []
    mod = importlib.import_module(module)
    # the global may be the pattern or one of its bound methods (spaCy keeps ``re.compile(...).match``)
    held = [getattr(getattr(mod, n, None), "__self__", getattr(mod, n, None)) for n, _ in names]
    FROM_CACHE[module] = bool(seeded) and len(seeded) == len(held) and all(a is b for a, b in zip(held, seeded))
    if FROM_CACHE[module]:
        return mod
    if path is not None:  # first use on this machine (or a stale cache): store the code of what the module compiled
        try:
            entries = [_code_of(p.pattern, flags) for p, (_, flags) in zip(held, names)]
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(tmp, path)
        except Exception:
            pass
    return mod

