"""FineWeb's URL filter (block-listed domains/URLs, banned words in URLs), offline.

We reuse datatrove's ``URLFilter`` and the block lists it ships; the only change is the domain
parser: datatrove builds ``tldextract.TLDExtract()``, which first tries to download the public
suffix list (and logs a traceback without network). We give it the bundled snapshot only.
"""

from __future__ import annotations

from functools import lru_cache


class UrlBlocklist:
    """``reason(url)`` returns None to keep, or the datatrove rule that blocks the URL."""

    def __init__(self) -> None:
        from datatrove.data import Document
        from datatrove.pipeline.filters import URLFilter
        from tldextract import TLDExtract

        self._doc = Document
        self._filter = URLFilter()
        self._filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)

    def reason(self, url: str) -> str | None:
        """None if the URL passes, else the rule name (domain, subdomain, url, hard_blacklisted, ...)."""
        result = self._filter.filter(self._doc(text="", id="", metadata={"url": url}))
        if result is True:
            return None
        return result[1] if isinstance(result, tuple) else "blocked"


@lru_cache(maxsize=1)
def url_blocklist() -> UrlBlocklist:
    """The process-wide instance (loading the block lists takes about a second)."""
    return UrlBlocklist()
