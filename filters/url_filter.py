"""FineWeb's URL filter (block-listed domains/URLs, banned words in URLs), offline and fast to load.

We reuse datatrove's ``URLFilter``: its block lists (the ones it ships, read by its own
``download_data``) and its decision code (``URLFilter.filter`` is what runs for every URL). Two
things differ, neither changes a decision:

* The domain parser: datatrove builds ``tldextract.TLDExtract()``, which first tries to download
  the public suffix list (and logs a traceback without network). We give it the bundled snapshot.
* Loading. datatrove parses its 4.5 million block-listed domains into a Python set in every
  process (4-7 s, ~500 MB, and every later garbage collection walks that set). We parse them once
  with datatrove's code and keep a *prebuilt* copy in the cache directory
  (``$BABELSIEVE_CACHE`` or ``~/.cache/babelsieve``, under ``url_filter/<key>/``): the domains
  as a sorted array of 64-bit hashes with the UTF-8 strings laid out in the same order, both
  memory-mapped (so worker processes share the page cache and load in milliseconds). Membership
  is exact: a hash hit is confirmed by comparing the stored string. The small lists (block-listed
  URLs, banned words, banned subwords, soft-banned words) are pickled beside it as sets. The key
  is datatrove's version plus the sha256 of its list files, so an upgrade rebuilds the cache.
  The cache is built under a temporary name and renamed into place (readers never see a partial
  one); concurrent first builders serialise on a lock file. If the cache directory cannot be
  written, the lists are used from memory as datatrove loads them.

``tests/filters/test_url_filter.py`` compares decision and reason with datatrove's own ``URLFilter`` on
block-listed domains, subdomains, full URLs, banned words, the soft-word threshold and banned
subwords.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import mmap
import os
import pickle
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

_FORMAT = 1  # bump when the layout of the prebuilt files changes
_SMALL_LISTS = ("block_listed_url", "banned_words", "banned_subwords", "soft_banned_words")


def _hash64(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _encode(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


class PrebuiltStringSet:
    """Read-only set of strings in memory-mapped files; only ``in`` and ``len`` (what URLFilter uses).

    ``hashes.npy``: sorted uint64 hashes; ``offsets.npy``: uint64 start of each string in
    ``strings.bin`` (same order) plus the end; ``strings.bin``: the UTF-8 strings concatenated.
    """

    def __init__(self, directory: Path) -> None:
        import numpy as np

        self._np = np
        self._hashes = np.load(directory / "hashes.npy", mmap_mode="r")
        self._offsets = np.load(directory / "offsets.npy", mmap_mode="r")
        with open(directory / "strings.bin", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._blob: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._n = len(self._hashes)

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        key = _encode(item)
        h = _hash64(key)
        hashes = self._hashes
        i = int(self._np.searchsorted(hashes, self._np.uint64(h), side="left"))
        while i < self._n and int(hashes[i]) == h:
            if self._blob[int(self._offsets[i]):int(self._offsets[i + 1])] == key:
                return True
            i += 1
        return False

    @staticmethod
    def write(strings: set[str], directory: Path) -> None:
        import numpy as np

        blake2b, from_bytes = hashlib.blake2b, int.from_bytes  # inlined _encode/_hash64: 4.5 million calls
        encoded = [s.encode("utf-8", "surrogatepass") for s in strings]
        hashes = np.array([from_bytes(blake2b(b, digest_size=8).digest(), "little") for b in encoded], dtype=np.uint64)
        order = np.argsort(hashes, kind="stable").tolist()
        encoded = [encoded[i] for i in order]
        offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
        np.cumsum(np.array([len(b) for b in encoded], dtype=np.uint64), out=offsets[1:])
        np.save(directory / "hashes.npy", hashes[order])
        np.save(directory / "offsets.npy", offsets)
        with open(directory / "strings.bin", "wb") as f:
            f.write(b"".join(encoded))


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """``cache``, else ``$BABELSIEVE_CACHE``, else ``~/.cache/babelsieve`` (as langid.models)."""
    if cache is None:
        cache = os.environ.get("BABELSIEVE_CACHE") or Path.home() / ".cache" / "babelsieve"
    return Path(cache).expanduser() / "url_filter"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_key() -> str:
    """datatrove's version + sha256 of the list files it ships (the tar of domains/URLs, the word lists)."""
    from importlib.metadata import version

    from datatrove.utils._import_utils import ASSETS_PATH

    files = sorted(n for n in os.listdir(ASSETS_PATH) if n.startswith("url_filter") or n.endswith("_words.txt")
                   or n == "banned_subwords.txt")
    parts = {"format": _FORMAT, "datatrove": version("datatrove"),
             "files": {n: _sha256(os.path.join(ASSETS_PATH, n)) for n in files}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _datatrove_filter() -> Any:
    """datatrove's URLFilter with its lists loaded by its own code (offline domain parser)."""
    from datatrove.pipeline.filters.url_filter import URLFilter

    f = URLFilter()
    f.tldextractor = _tld_extractor()
    f.download_data()
    return f


def _tld_extractor() -> Any:
    from tldextract import TLDExtract

    # The bundled public suffix list snapshot only: no download attempt, no cache writes.
    return TLDExtract(suffix_list_urls=(), cache_dir=None)


def _build(directory: Path) -> None:
    """Write the prebuilt lists into ``directory`` (which must exist and be empty)."""
    import gc

    # 4.5 million strings: without this, every collection during the build walks them again.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        _build_lists(directory)
    finally:
        if was_enabled:
            gc.enable()


def _build_lists(directory: Path) -> None:
    f = _datatrove_filter()
    PrebuiltStringSet.write(f.block_listed_domains, directory)
    with open(directory / "lists.pkl", "wb") as out:
        pickle.dump({name: set(getattr(f, name)) for name in _SMALL_LISTS}, out, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {"domains": len(f.block_listed_domains), **{name: len(getattr(f, name)) for name in _SMALL_LISTS}}
    (directory / "meta.json").write_text(json.dumps(meta, sort_keys=True))  # written last: marks a complete build


def prebuilt_dir(cache: str | os.PathLike | None = None) -> Path:
    """The directory of the prebuilt lists for this datatrove, built now if missing (atomically)."""
    root = cache_root(cache)
    final = root / cache_key()
    if (final / "meta.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(root / f"{final.name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process building the same key: wait for it, then reuse
        if (final / "meta.json").exists():
            return final
        for stale in root.glob(f".tmp-{final.name}-*"):  # left by a killed builder (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
        try:
            _build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the lists are public data
            if final.exists():  # a leftover without meta.json (not written by this code): replace it
                shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _prebuilt_filter(directory: Path) -> Any:
    """A datatrove URLFilter whose lists come from ``directory``; its own ``filter`` decides."""
    import ahocorasick
    from datatrove.pipeline.filters.url_filter import URLFilter

    _DEFAULT_SOFT_THRESHOLD = inspect.signature(URLFilter.__init__).parameters["soft_word_threshold"].default

    class PrebuiltURLFilter(URLFilter):
        # URLFilter.__new__ checks its dependencies by scanning every installed distribution's
        # metadata (~0.4 s); they were checked when the cache was built with datatrove's own class.
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return object.__new__(cls)

        def __init__(self) -> None:  # URLFilter.__init__ would build a TLDExtract that downloads
            with open(directory / "lists.pkl", "rb") as f:
                lists = pickle.load(f)
            self.soft_word_threshold = _DEFAULT_SOFT_THRESHOLD  # URLFilter's default, as FineWeb
            self.block_listed_domains = PrebuiltStringSet(directory)
            for name in _SMALL_LISTS:
                setattr(self, name, lists[name])
            self.use_integrated_lists = True
            self.exclusion_writer = None
            self.tldextractor = _tld_extractor()
            automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for word in self.banned_subwords:  # same insertion as URLFilter.download_data
                automaton.add_word(word, len(automaton))
            automaton.make_automaton()
            self.banned_subwords_automaton = automaton
            self._downloaded = True

        def download_data(self) -> None:
            return

    return PrebuiltURLFilter()


class UrlBlocklist:
    """``reason(url)`` returns None to keep, or the datatrove rule that blocks the URL.

    ``prebuilt=False`` uses datatrove's URLFilter exactly as it loads itself (slow; for tests).
    """

    def __init__(self, cache: str | os.PathLike | None = None, prebuilt: bool = True) -> None:
        from datatrove.data import Document

        self._doc = Document
        self._filter: Any = None
        if prebuilt:
            try:
                self._filter = _prebuilt_filter(prebuilt_dir(cache))
            except OSError:  # read-only or full cache directory: load the lists in memory instead
                self._filter = None
        if self._filter is None:
            self._filter = _datatrove_filter()

    @property
    def prebuilt(self) -> bool:
        return isinstance(self._filter.block_listed_domains, PrebuiltStringSet)

    def reason(self, url: str) -> str | None:
        """None if the URL passes, else the rule name (domain, subdomain, url, hard_blacklisted, ...)."""
        result = self._filter.filter(self._doc(text="", id="", metadata={"url": url}))
        if result is True:
            return None
        return result[1] if isinstance(result, tuple) else "blocked"


@lru_cache(maxsize=1)
def url_blocklist() -> UrlBlocklist:
    """The process-wide instance (milliseconds once the prebuilt cache exists; ~10-20 s to build it once)."""
    return UrlBlocklist()
