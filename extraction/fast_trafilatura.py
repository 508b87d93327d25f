"""trafilatura's favour-precision extraction, same result, less work per page.

``extract_precision(html, options)`` returns what ``trafilatura.extract(html,
favor_precision=True, include_comments=False, deduplicate=cache)`` returns, for the settings
FineWeb2 uses (txt output, no metadata, no comments, tables on, no images/links, no target
language, no fast mode). It is trafilatura's own sequence (``bare_extraction`` ->
``trafilatura_sequence`` -> ``extract_content`` -> ``compare_extraction``) re-composed from
trafilatura's functions; only work that cannot change the output is removed:

1. **Readability only when it can win.** In precision mode ``compare_extraction`` runs the
   readability fork on a pruned copy of the raw tree and then ``_prefer_readability`` keeps the
   main extraction unless readability's text is longer than twice the main text (or longer than
   ``2 * MIN_EXTRACTED_SIZE`` when the main body has no ``<p>`` text / more tables than
   paragraphs, or the main text is empty). Readability's text is a subsequence of the page's
   text without ``<script>/<style>/<fencedframe>`` (it only deletes, moves and re-wraps nodes;
   see ``readability_text_bound`` for the few ways its serialise-and-reparse round trip can add
   characters, which are counted or make us run it). When that bound is already at most the
   limit, readability (and the OVERALL_DISCARD prune of a raw-tree copy that feeds it) cannot
   change the result and is skipped: 70-80 % of pages.
2. **Fewer tree copies.** The raw tree is copied for readability only when readability runs,
   and the cleaned-tree backup that feeds justext is rebuilt (same deterministic
   ``tree_cleaning(copy(tree))``) only on the few pages where justext runs.
3. **Boilerplate XPaths without Python callbacks.** trafilatura's pruning XPaths use the EXSLT
   ``re:test`` extension, which lxml implements as a Python callback per candidate element (and
   each callback builds an element proxy through lxml.html's Python class lookup): 40 % of the
   extraction time. The expressions that use it are evaluated here by an equivalent Python walk
   over the same elements with the same regular expressions (taken from trafilatura's own
   expressions at import time), in document order, so the pruned trees are identical
   (``tests/extraction/test_fast_extraction.py`` compares them on every call over the real pages).
4. **C-level element classes.** Pages are parsed with trafilatura's parser settings but an
   ``ElementDefaultClassLookup`` (every element an ``lxml.html.HtmlElement``) instead of
   lxml.html's Python ``lookup`` per proxy; trafilatura uses no form-element specific API.

Monkeypatches (process-local, only for the duration of one ``extract_precision`` call, restored
in ``finally`` even on a timeout): ``trafilatura.main_extractor.prune_unwanted_nodes`` (its
``prune_unwanted_sections`` calls it with OVERALL/TEASER/PRECISION lists) and
``trafilatura.utils.HTML_PARSER`` (read by ``load_html`` / ``fromstring_bytes``). Both
replacements fall back to the original for anything they do not recognise.

Guard: the re-composition is tied to the trafilatura functions it mirrors. At import we hash
their source and the XPath skeletons; on any mismatch (another trafilatura release)
``AVAILABLE`` is False with a ``REASON`` and callers use plain ``trafilatura.extract``.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import copy
from typing import Any

import trafilatura
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from lxml.html import HTMLParser as _HtmlParser
from trafilatura import core as _core
from trafilatura import external as _ext
from trafilatura import htmlprocessing as _hp
from trafilatura import main_extractor as _me
from trafilatura import utils as _tu
from trafilatura import xpaths as _xp
from trafilatura.metadata import Document
from trafilatura.settings import Extractor

__all__ = ["AVAILABLE", "REASON", "extract_precision", "make_options", "fast_prune", "readability_text_bound"]

TESTED_VERSION = "2.3.1"

# ---------------------------------------------------------------------------------------------
# Parser: trafilatura.utils.HTML_PARSER's settings, C-level element class lookup.

def _make_parser() -> etree.HTMLParser:
    ref = _tu.HTML_PARSER
    parser = _HtmlParser(
        collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True
    )
    parser.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
        )
    )
    # same parse options as trafilatura's parser (checked, so a change there is not missed)
    if type(ref) is not _HtmlParser:
        raise RuntimeError("trafilatura.utils.HTML_PARSER is not an lxml.html.HTMLParser")
    return parser


# ---------------------------------------------------------------------------------------------
# XPath expressions with re:test, evaluated without callbacks.

_RE_TEST = re.compile(r"re:test\(\s*(@[\w-]+(?:\s*\|\s*@[\w-]+)*)\s*,\s*'([^']*)'\s*(?:,\s*'([^']*)'\s*)?\)")


def _skeleton(path: str) -> str:
    """The XPath text with re:test patterns blanked and whitespace outside string literals removed."""
    blanked = _RE_TEST.sub(lambda m: f"re:test({m.group(1)},'?'{',' + repr(m.group(3)) if m.group(3) else ''})", path)
    parts = blanked.split("'")
    return "'".join(p if i % 2 else re.sub(r"\s+", "", p) for i, p in enumerate(parts))


def _patterns(xpath: etree.XPath) -> list[re.Pattern[str]]:
    """The re:test patterns of an XPath, in order, compiled as lxml's EXSLT ``re:test`` does."""
    out = []
    for m in _RE_TEST.finditer(xpath.path):
        flags = re.UNICODE | (re.IGNORECASE if m.group(3) and "i" in m.group(3) else 0)
        out.append(re.compile(m.group(2), flags))
    return out


_MEMO_MAX = 100_000


def _memo(pattern: re.Pattern[str]) -> tuple[dict[str, bool], Callable[[str], Any]]:
    """(memo dict, search) for ``pattern``; the inline idiom in the matchers is
    ``r = memo.get(v); if r is None: r = memo[v] = search(v) is not None`` (class strings repeat).
    A missing attribute is "" for re:test; none of these patterns matches "", checked here,
    so the matchers treat a missing attribute as no match without calling the regex."""
    if pattern.search("") is not None:
        raise RuntimeError(f"pattern {pattern.pattern!r} matches the empty string")
    return {}, pattern.search


def _test(memo: dict[str, bool], search: Callable[[str], Any], value: str | None) -> bool:
    if value is None:
        return False
    r = memo.get(value)
    if r is None:
        if len(memo) > _MEMO_MAX:
            memo.clear()
        r = memo[value] = search(value) is not None
    return r


def _first(el: Any, a: str, va: str | None, b: str, vb: str | None) -> str | None:
    """Value of ``@a|@b`` as XPath's string(): the first of the two attributes in source order."""
    if va is None:
        return vb
    if vb is None:
        return va
    keys = el.keys()
    return va if keys.index(a) < keys.index(b) else vb


_ELEMENTS = etree.Element  # iterdescendants(tag=Element): elements only, like XPath's *
_DISCARD_TAGS = ("div", "item", "list", "p", "section", "span")
_CONTENT_TAGS = ("article", "div", "main", "section")


def _overall_0(x: etree.XPath) -> Callable[[Any], list]:
    (cm, cs), (im, is_), (km, ks) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants(*_DISCARD_TAGS):
            get = el.get
            idv, cls = get("id"), get("class")
            role, comp = get("role"), get("data-component")
            if (
                get("data-lp-replacement-content") is not None
                or (role is not None and "nav" in role.replace("N", "n"))
                or (comp is not None and "MostPopularStories" in comp)
                or _test(cm, cs, _first(el, "id", idv, "class", cls))
                or _test(im, is_, idv)
                or _test(km, ks, cls)
            ):
                out.append(el)
        return out

    return match


def _overall_1(x: etree.XPath) -> Callable[[Any], list]:
    (hm, hs), (im, is_), (km, ks) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants(_ELEMENTS):
            get = el.get
            idv, cls, style = get("id"), get("class"), get("style")
            if idv is None and cls is None and style is None:
                if get("aria-hidden") == "true":
                    out.append(el)
                continue
            first_ic = _first(el, "id", idv, "class", cls)
            if (
                cls == "comments-title"
                or (first_ic is not None and first_ic.startswith("reply-"))
                or _test(hm, hs, _first(el, "id", idv, "style", style))
                or (style is not None and ("display:none" in style or "display: none" in style))
                or _test(im, is_, idv)
                or _test(km, ks, cls)
                or get("aria-hidden") == "true"
            ):
                out.append(el)
        return out

    return match


def _raw_tree_prune_0(x: etree.XPath) -> Callable[[Any], list]:
    (am, as_), (bm, bs), (cm, cs), (dm, ds) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants("div", "section", "aside"):
            idv, cls = el.get("id"), el.get("class")
            if (idv is None and cls is None) or not (_test(am, as_, idv) or _test(bm, bs, cls)):
                continue
            if next(el.iterdescendants("h1"), None) is None or _test(cm, cs, idv) or _test(dm, ds, cls):
                out.append(el)
        return out

    return match


def _remove_comments(x: etree.XPath) -> Callable[[Any], list]:
    (im, is_), (km, ks) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants("div", "list", "section", "details"):
            if _test(im, is_, el.get("id")) or _test(km, ks, el.get("class")):
                out.append(el)
        return out

    return match


def _remove_comments_and_lists(x: etree.XPath) -> Callable[[Any], list]:
    (am, as_), (bm, bs), (cm, cs), (dm, ds) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants("div", "list", "section", "details", "ol", "ul"):
            idv, cls = el.get("id"), el.get("class")
            if (idv is None and cls is None) or not (_test(am, as_, idv) or _test(bm, bs, cls)):
                continue
            if el.tag not in ("ol", "ul") or _test(cm, cs, idv) or _test(dm, ds, cls):
                out.append(el)
        return out

    return match


def _precision_1(x: etree.XPath) -> Callable[[Any], list]:
    (bm, bs), (lm, ls) = (_memo(p) for p in _patterns(x))

    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants(*_DISCARD_TAGS):
            get = el.get
            first = _first(el, "id", get("id"), "class", get("class"))
            style = get("style")
            if _test(bm, bs, first) or _test(lm, ls, first) or (style is not None and "border" in style):
                out.append(el)
        return out

    return match


def _teaser(x: etree.XPath) -> Callable[[Any], list]:
    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants(*_DISCARD_TAGS):
            idv, cls = el.get("id"), el.get("class")
            if (idv is not None and "teaser" in idv.replace("T", "t")) or (
                cls is not None and "teaser" in cls.replace("T", "t")
            ):
                out.append(el)
        return out

    return match


def _discard_image(x: etree.XPath) -> Callable[[Any], list]:
    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants(*_DISCARD_TAGS):
            idv, cls = el.get("id"), el.get("class")
            if (idv is not None and "caption" in idv) or (cls is not None and "caption" in cls):
                out.append(el)
        return out

    return match


def _descendants(tag: str) -> Callable[[etree.XPath], Callable[[Any], list]]:
    def build(x: etree.XPath) -> Callable[[Any], list]:
        return lambda tree: list(tree.iterdescendants(tag))

    return build


def _raw_tree_prune_1(x: etree.XPath) -> Callable[[Any], list]:
    def match(tree: Any) -> list:
        out = []
        for el in tree.iterdescendants("div", "section", "aside"):
            cls = el.get("class")
            if cls is not None and "elementor-share-buttons" in cls:
                out.append(el)
        return out

    return match


# BODY_XPATH: _extract() only uses the first node an expression returns. For
# ``.//*[P][1]`` and ``(.//*[P])[1]`` that is the first descendant in document order that
# satisfies P, so the walk stops there.

def _body_0(x: etree.XPath) -> Callable[[Any], list]:
    (im, is_), (km, ks) = (_memo(p) for p in _patterns(x))

    def first(tree: Any) -> list:
        for el in tree.iterdescendants(*_CONTENT_TAGS):
            get = el.get
            idv, cls = get("id"), get("class")
            if (
                cls == "post" or cls == "entry" or get("itemprop") == "articleBody" or idv == "articleContent"
                or _test(im, is_, idv) or _test(km, ks, cls)
            ):
                return [el]
        return []

    return first


def _body_2(x: etree.XPath) -> Callable[[Any], list]:
    (im, is_), (fm, fs), (km, ks) = (_memo(p) for p in _patterns(x))
    classes = ("postarea", "art-postcontent", "text", "cell", "story")

    def first(tree: Any) -> list:
        for el in tree.iterdescendants(*_CONTENT_TAGS):
            get = el.get
            idv, cls = get("id"), get("class")
            if (
                get("role") == "article" or idv == "article" or idv == "story" or cls in classes
                or _test(im, is_, idv) or _test(fm, fs, cls) or _test(km, ks, cls)
            ):
                return [el]
        return []

    return first


def _body_3(x: etree.XPath) -> Callable[[Any], list]:
    (im, is_), (km, ks) = (_memo(p) for p in _patterns(x))

    def first(tree: Any) -> list:
        for el in tree.iterdescendants(*_CONTENT_TAGS):
            get = el.get
            idv, cls = get("id"), get("class")
            if (
                idv == "content" or cls == "content" or _test(im, is_, idv) or _test(km, ks, cls)
                or (idv is not None and "main-content" in idv.replace("C", "c").replace("M", "m"))
                or (cls is not None and "main-content" in cls.replace("C", "c").replace("M", "m"))
                or (cls is not None and "page-content" in cls.replace("C", "c").replace("P", "p"))
            ):
                return [el]
        return []

    return first


def _body_1(x: etree.XPath) -> Callable[[Any], list]:
    def first(tree: Any) -> list:
        el = next(tree.iterdescendants("article"), None)
        return [] if el is None else [el]

    return first


def _body_4(x: etree.XPath) -> Callable[[Any], list]:
    # (.//*[P])[1] | (.//main)[1]: the first of the two in document order
    def first(tree: Any) -> list:
        for el in tree.iterdescendants("article", "div", "section", "main"):
            if el.tag == "main":
                return [el]
            get = el.get
            cls, idv, role = get("class"), get("id"), get("role")
            if (
                (cls is not None and cls.startswith("main"))
                or (idv is not None and idv.startswith("main"))
                or (role is not None and role.startswith("main"))
            ):
                return [el]
        return []

    return first


# (list name, index) -> builder of the matcher for that expression
_MATCHERS: dict[tuple[str, int], Callable[[etree.XPath], Callable[[Any], list]]] = {
    ("OVERALL_DISCARD_XPATH", 0): _overall_0,
    ("OVERALL_DISCARD_XPATH", 1): _overall_1,
    ("RAW_TREE_PRUNE_XPATH", 0): _raw_tree_prune_0,
    ("REMOVE_COMMENTS_XPATH", 0): _remove_comments,
    ("REMOVE_COMMENTS_AND_LISTS_XPATH", 0): _remove_comments_and_lists,
    ("PRECISION_DISCARD_XPATH", 1): _precision_1,
    ("RAW_TREE_PRUNE_XPATH", 1): _raw_tree_prune_1,
    ("TEASER_DISCARD_XPATH", 0): _teaser,
    ("DISCARD_IMAGE_ELEMENTS", 0): _discard_image,
    ("PRECISION_DISCARD_XPATH", 0): _descendants("header"),
    ("BODY_XPATH", 0): _body_0,
    ("BODY_XPATH", 1): _body_1,
    ("BODY_XPATH", 2): _body_2,
    ("BODY_XPATH", 3): _body_3,
    ("BODY_XPATH", 4): _body_4,
}
# sha256[:16] of each expression's skeleton (its text with the re:test patterns blanked) in
# trafilatura 2.3.1: the structure each matcher implements. The patterns themselves are read
# from trafilatura's expression, so a changed token list is picked up, a changed structure is not.
_EXPECTED: dict[tuple[str, int], str] = {
    ("BODY_XPATH", 0): "8b39b578f59cb146",
    ("BODY_XPATH", 1): "dffd8931d1ae8060",
    ("BODY_XPATH", 2): "dfecea402c36f63b",
    ("BODY_XPATH", 3): "aa5a35f87fda410a",
    ("BODY_XPATH", 4): "09f48cbb5d10dd7b",
    ("DISCARD_IMAGE_ELEMENTS", 0): "15fc338a258adee5",
    ("OVERALL_DISCARD_XPATH", 0): "7cad91ba11049e63",
    ("OVERALL_DISCARD_XPATH", 1): "e8e44c3ae9ad4d2a",
    ("PRECISION_DISCARD_XPATH", 0): "be67925fffa9fcb2",
    ("PRECISION_DISCARD_XPATH", 1): "4c735481334789d8",
    ("RAW_TREE_PRUNE_XPATH", 0): "0541aceb03b89c91",
    ("RAW_TREE_PRUNE_XPATH", 1): "b58448624fb4e0dc",
    ("REMOVE_COMMENTS_AND_LISTS_XPATH", 0): "e2f26e978aead5ee",
    ("REMOVE_COMMENTS_XPATH", 0): "ded348d6212632e4",
    ("TEASER_DISCARD_XPATH", 0): "42a3f11faa7ef6b2",
}


def _skeleton_hash(x: etree.XPath) -> str:
    return hashlib.sha256(_skeleton(x.path).encode()).hexdigest()[:16]


# list id -> list of per-expression matchers (Python walk, or the XPath itself when it has no
# re:test: libxml2 evaluates those natively at C speed)
_FAST_LISTS: dict[int, list[Callable[[Any], list]]] = {}


def _build_fast_lists() -> None:
    names = {name for name, _ in _MATCHERS}
    for name in sorted(names):
        xlist = getattr(_xp, name)
        matchers: list[Callable[[Any], list]] = []
        for i, x in enumerate(xlist):
            spec = _MATCHERS.get((name, i))
            if spec is None:
                if "re:test" in x.path:
                    raise RuntimeError(f"{name}[{i}] uses re:test but has no fast matcher")
                matchers.append(x)
                continue
            builder = spec
            got = _skeleton_hash(x)
            if _EXPECTED.get((name, i)) != got:
                raise RuntimeError(f"{name}[{i}] differs from the expression the fast matcher implements ({got})")
            matchers.append(builder(x))
        _FAST_LISTS[id(xlist)] = matchers


_delete = _hp.delete_element if hasattr(_hp, "delete_element") else None
_ORIG_PRUNE = _hp.prune_unwanted_nodes


def fast_prune(tree: Any, nodelist: list, with_backup: bool = False) -> Any:
    """``trafilatura.htmlprocessing.prune_unwanted_nodes`` with callback-free matchers.

    Same deletions in the same order; the with_backup guard is computed the same way.
    Unknown lists go to trafilatura's function.
    """
    matchers = _FAST_LISTS.get(id(nodelist))
    if matchers is None:
        return _ORIG_PRUNE(tree, nodelist, with_backup)
    if not with_backup:
        for match in matchers:
            for subtree in match(tree):
                _delete(subtree)
        return tree
    matches = dict.fromkeys(el for match in matchers for el in match(tree))
    outer = [el for el in matches if not any(a in matches for a in el.iterancestors())]
    old_len = len(tree.text_content())
    if old_len - sum(len(el.text_content()) for el in outer) > old_len / 7:
        for el in outer:
            _delete(el)
    return tree


# ---------------------------------------------------------------------------------------------
# Readability: an upper bound on the length of its text.

# text nodes readability can keep: all but the content of <script>/<style> (raw-text elements:
# their only child is one text node). <fencedframe> text is counted too: over-counting is safe.
_PAGE_TEXT = etree.XPath(".//text()[not(parent::script or parent::style)]", smart_strings=False)
# the same length computed by libxml2, a little looser: XPath's normalize-space() collapses only
# ASCII whitespace, str.split() collapses more
_LOOSE_LENGTH = etree.XPath("string-length(normalize-space(.))")
# elements whose text libxml2's HTML parser keeps raw (not entity-decoded) on the reparse of
# readability's XML serialisation: & < > \r come back escaped, i.e. longer
_RAWTEXT = ("iframe", "xmp", "noembed", "noframes")
_BOUND_TAGS = ("iframe", "xmp", "noembed", "noframes", "plaintext", "title", "textarea")
_ESCAPE_GROWTH = {"&": 4, "<": 3, ">": 3, "\r": 4}


def readability_text_bound(tree: Any, limit: int | None = None) -> int | None:
    """Upper bound on ``len(trim(text of try_readability(prune(copy(tree)))))``, or None.

    Readability (trafilatura's fork) removes script/style/fencedframe, deletes subtrees
    (drop_tree keeps tails), moves a candidate's siblings into a new <div> in document order and
    re-wraps loose text in <p>: its text is a subsequence of the remaining page text, and
    deleting characters never lengthens the whitespace-collapsed text (``trim``). Its output is
    serialised as XML and reparsed as HTML; the only ways that adds characters:
    video iframes get the text "VIDEO" (others are dropped); the text of raw-text elements
    (iframe, xmp, noembed, noframes) comes back with & < > \\r escaped; an empty non-void element
    serialised self-closing (``<title/>``, ``<xmp/>``...) swallows the rest of the document as
    text on the reparse (-> None); ``<plaintext>`` likewise (-> None); entity-reference nodes
    (not text nodes) -> None. Inserted characters count double (one may split a whitespace run).

    With ``limit`` (the production path) the length is computed by libxml2 (XPath
    ``string-length(normalize-space(.))``), which collapses only ASCII whitespace: a slightly
    looser bound, several times cheaper than collecting the text nodes in Python.
    """
    extra = 0
    scripts = []
    for el in tree.iter(etree.Entity, "script", "style", *_BOUND_TAGS):
        tag = el.tag
        if tag is etree.Entity:
            return None
        if tag == "script" or tag == "style":
            scripts.append(el)
            continue
        text = el.text
        if tag == "plaintext":
            return None
        if tag == "iframe":
            extra += 5  # "VIDEO"; the iframe's own raw text is dropped or replaced
            continue
        if not text and len(el) == 0:
            if tag == "textarea":
                continue  # readability drops every textarea of its output
            return None
        if tag in _RAWTEXT and text:
            extra += sum(text.count(c) * g for c, g in _ESCAPE_GROWTH.items())
    if limit is not None:
        # libxml2 computes the length: script/style text taken out for the call and put back
        # (their only child is that text node)
        saved = [(el, el.text) for el in scripts if el.text]
        try:
            for el, _ in saved:
                el.text = None
            return int(_LOOSE_LENGTH(tree)) + 2 * extra
        finally:
            for el, text in saved:
                el.text = text
    words = "".join(_PAGE_TEXT(tree)).split()
    collapsed = sum(map(len, words)) + len(words) - 1 if words else 0
    return collapsed + 2 * extra


def readability_limit(body: Any, len_text: int, options: Extractor) -> int | None:
    """Readability's text length up to which ``_prefer_readability`` returns False (precision).

    In precision mode it prefers readability only when the own text is empty, or readability's
    text is longer than 2x the own text, or longer than 2x MIN_EXTRACTED_SIZE while the own body
    has no <p> text or more tables than paragraphs (the recall clauses do not apply).
    None: no such length (own text empty, or not precision mode).
    """
    if len_text == 0 or options.focus != "precision":
        return None
    limit = 2 * len_text
    if not body.xpath(".//p//text()") or len(body.findall(".//table")) > len(body.findall(".//p")):
        limit = min(limit, 2 * options.min_extracted_size)
    return limit


def _within(tree: Any, limit: int | None) -> int | None:
    """The bound on readability's text from ``tree`` if it is <= limit, else None."""
    if limit is None:
        return None
    bound = readability_text_bound(tree, limit)
    return bound if bound is not None and bound <= limit else None


# ---------------------------------------------------------------------------------------------
# The sequence.

# tests set this to a list to run readability on skipped pages too and record, per skipped
# page, (the bound that allowed the skip, the length of readability's actual text)
VERIFY_BOUND: list[tuple[int, int]] | None = None


def _readability(raw: Any) -> tuple[Any, str]:
    algo_body = _ext.try_readability(raw)
    return algo_body, _tu.trim(etree.tostring(algo_body, method="text", encoding="utf-8").decode("utf-8"))


def _compare(tree: Any, body: Any, text: str, options: Extractor, url: str | None) -> tuple[Any, str]:
    """``compare_extraction`` (precision): readability only if it can win, justext as before.

    The bound is tried on the raw tree first (skips the copy, the OVERALL_DISCARD prune and
    readability), then on the pruned copy readability would read (skips readability).
    """
    len_text = len(text)
    use_readability = False
    limit = readability_limit(body, len_text, options)
    bound = _within(tree, limit)
    raw = None
    if bound is None:
        raw = fast_prune(copy(tree), _xp.OVERALL_DISCARD_XPATH)
        bound = _within(raw, limit)
    if bound is None:
        algo_body, algo_text = _readability(raw)
        use_readability = _ext._prefer_readability(body, algo_body, algo_text, len_text, len(algo_text), options)
        if use_readability:
            body, text, len_text = algo_body, algo_text, len(algo_text)
    elif VERIFY_BOUND is not None:
        if raw is None:
            raw = fast_prune(copy(tree), _xp.OVERALL_DISCARD_XPATH)
        VERIFY_BOUND.append((bound, len(_readability(raw)[1])))
    unclean = bool(body.xpath(_ext.SANITIZED_XPATH))
    if unclean or len_text < options.min_extracted_size:
        # the cleaned, unconverted tree trafilatura keeps as a backup, rebuilt only when needed
        cleaned_backup = _hp.tree_cleaning(copy(tree), options)
        body2, text2 = _ext.justext_rescue(cleaned_backup, options)
        len_text2 = len(text2)
        if unclean:
            accept = len_text <= _ext.JUSTEXT_OVERRIDE_RATIO * len_text2 and (
                len_text2 > len_text or not options.images or body.find(".//graphic") is None
            )
        else:
            accept = len_text < len_text2
        if text2 and accept:
            body, text, len_text = body2, text2, len_text2
            use_readability = False
    if use_readability:
        body, text = _ext.sanitize_tree(body, options)
    return body, text


def _sequence(tree: Any, options: Extractor, url: str | None) -> tuple[Any, str]:
    """``trafilatura_sequence`` for precision, comments off (stages 3-4 do not run there)."""
    is_forum = _core._forum_thread_page(tree)
    tree = fast_prune(tree, _xp.RAW_TREE_PRUNE_XPATH)
    tree = fast_prune(tree, _xp.REMOVE_COMMENTS_AND_LISTS_XPATH)
    cleaned = _hp.tree_cleaning(copy(tree), options)
    cleaned = _hp.convert_tags(cleaned, options, url)
    if not is_forum:
        cleaned = fast_prune(cleaned, _xp.REMOVE_COMMENTS_XPATH)
    body, text = _me.extract_content(cleaned, options)
    return _compare(tree, body, text, options, url)


class _InvalidXmlChars:
    """``utils.INVALID_XML_CHARS`` (a character class) with a presence test first: ``str.find``
    per character is a vectorised scan, the regex one is not, and pages rarely contain any."""

    PATTERN = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\ufffe\\uffff]"
    CHARS = tuple(chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF))

    def __init__(self, regex: re.Pattern[str]) -> None:
        self.regex = regex

    def sub(self, repl: str, string: str, count: int = 0) -> str:
        if any(c in string for c in self.CHARS):
            return self.regex.sub(repl, string, count)
        return string


_INVALID_XML_CHARS = (
    _InvalidXmlChars(_tu.INVALID_XML_CHARS)
    if _tu.INVALID_XML_CHARS.pattern == _InvalidXmlChars.PATTERN
    else _tu.INVALID_XML_CHARS
)


@contextmanager
def _patched() -> Iterator[None]:
    old = _me.prune_unwanted_nodes, _me.BODY_XPATH, _tu.HTML_PARSER, _tu.INVALID_XML_CHARS
    _me.prune_unwanted_nodes = fast_prune
    _me.BODY_XPATH = _FAST_LISTS[id(_xp.BODY_XPATH)]
    _tu.HTML_PARSER = _PARSER
    _tu.INVALID_XML_CHARS = _INVALID_XML_CHARS
    try:
        yield
    finally:
        _me.prune_unwanted_nodes, _me.BODY_XPATH, _tu.HTML_PARSER, _tu.INVALID_XML_CHARS = old


def make_options(deduplicate: Any = False) -> Extractor:
    """The Extractor that ``extract(favor_precision=True, include_comments=False)`` builds."""
    return Extractor(
        output_format="txt", fast=False, precision=True, recall=False, comments=False,
        formatting=None, links=False, images=False, tables=True, dedup=deduplicate,
    )


def _supported(options: Extractor) -> bool:
    return (
        options.focus == "precision" and not options.comments and not options.fast and options.format == "txt"
        and not options.with_metadata and not options.lang and not options.images and not options.links
    )


def extract_precision(html: str, options: Extractor, url: str | None = None) -> str | None:
    """Same output as ``trafilatura.extract(html, options=options)`` for the supported options."""
    if not AVAILABLE or not _supported(options):
        return trafilatura.extract(html, url=url, options=options)
    with _patched():
        try:
            tree = _tu.load_html(html, options.max_file_size)
            if tree is None:
                raise ValueError
            body, text = _sequence(tree, options, url)
            if options.max_tree_size:
                if len(body) > options.max_tree_size:
                    etree.strip_tags(body, "hi")
                if len(body) > options.max_tree_size:
                    raise ValueError
            if len(text) < options.min_output_size and 0 < options.min_output_comm_size:
                raise ValueError
            if options.dedup and _core.duplicate_test(body, options) is True:
                raise ValueError
        except (TypeError, ValueError):
            return None
    document = Document()
    document.raw_text, document.commentsbody, document.body = text, etree.Element("body"), body
    return _core.determine_returnstring(document, options)


# ---------------------------------------------------------------------------------------------
# Guard: the trafilatura code this module re-composes, as of 2.3.1.

# sha256[:16] of inspect.getsource() of the trafilatura 2.3.1 functions this module mirrors
_SOURCE_HASHES = {
    "core.trafilatura_sequence": "f03dc4d2946dacbd",
    "core._prepare_tree": "9595f0642825c2c7",
    "core._extract_and_compare": "f7d056c2118222e8",
    "core.bare_extraction": "2e57adb3062086f9",
    "core._internal_extraction": "bdf38a3bab82427b",
    "external.compare_extraction": "2d3d1ffea3ba469f",
    "external._prefer_readability": "f6ee688e9ae60074",
    "external.try_readability": "538e3c8e5ab7e4d4",
    "htmlprocessing.prune_unwanted_nodes": "4731f8e24ef86449",
    "readability_lxml.Document": "fe2ad9d1920eed29",
    "utils.load_html": "bc0039c89805dea3",
}


def _source_hash(fn: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


_MIRRORED = {
    "core.trafilatura_sequence": lambda: _core.trafilatura_sequence,
    "core._prepare_tree": lambda: _core._prepare_tree,
    "core._extract_and_compare": lambda: _core._extract_and_compare,
    "core.bare_extraction": lambda: _core.bare_extraction,
    "core._internal_extraction": lambda: _core._internal_extraction,
    "external.compare_extraction": lambda: _ext.compare_extraction,
    "external._prefer_readability": lambda: _ext._prefer_readability,
    "external.try_readability": lambda: _ext.try_readability,
    "htmlprocessing.prune_unwanted_nodes": lambda: _hp.prune_unwanted_nodes,
    "readability_lxml.Document": lambda: __import__("trafilatura.readability_lxml", fromlist=["Document"]).Document,
    "utils.load_html": lambda: _tu.load_html,
}


def _check() -> str:
    if trafilatura.__version__ != TESTED_VERSION:
        return f"trafilatura {trafilatura.__version__} (fast path verified on {TESTED_VERSION})"
    for name, get in _MIRRORED.items():
        try:
            got = _source_hash(get())
        except (OSError, TypeError, AttributeError) as e:
            return f"cannot read {name}: {e}"
        if _SOURCE_HASHES.get(name) != got:
            return f"{name} differs from the code the fast path mirrors ({got})"
    if _me.BODY_XPATH is not _xp.BODY_XPATH or _me.prune_unwanted_nodes is not _hp.prune_unwanted_nodes:
        return "trafilatura.main_extractor no longer uses xpaths.BODY_XPATH / htmlprocessing.prune_unwanted_nodes"
    try:
        _build_fast_lists()
    except (RuntimeError, AttributeError) as e:
        return str(e)
    return ""


_PARSER = _make_parser()
REASON = ""
AVAILABLE = False


def _init() -> None:
    global REASON, AVAILABLE
    REASON = _check()
    AVAILABLE = not REASON


_init()
