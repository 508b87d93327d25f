"""Quality signals: every quantity FineWeb2's filters threshold, as columns (Dolma-style "taggers").

``compute_signals(texts, lang_script)`` returns a :class:`pyarrow.Table` with one row per text and the
columns of :data:`SIGNAL_COLUMNS`, all prefixed ``sig_``. :func:`babelsieve.filters.decisions.decide`
then applies thresholds to these columns, so a language can be re-thresholded without recomputing
anything (``babelsieve refilter``).

Each column mirrors datatrove 0.10.1's arithmetic exactly (``GopherRepetitionFilter``,
``FineWebQualityFilter``, ``GopherQualityFilter``): same line/paragraph splitting, same word tokens
(the language's word tokenizer), same numerators and denominators, ratios computed as the same IEEE
float64 division, so thresholding them gives the same decisions as datatrove.

Columns (``float64`` unless noted; "words" = word-tokenizer tokens of the whole text):

========================================  =========================================================================
column                                    definition (datatrove source)
========================================  =========================================================================
``sig_text_len`` (int64)                  ``len(text)`` in code points (``empty`` when 0)
``sig_para_dup_frac``                     duplicate paragraphs / paragraphs;
                                          paragraphs = ``re.split(r"\\n{2,}", text.strip())``
``sig_para_dup_char_frac``                chars of duplicate paragraph occurrences / ``len(text)``
``sig_line_dup_frac``                     duplicate lines / lines; lines = ``re.split("\\n+", text)`` (not stripped)
``sig_line_dup_char_frac``                chars of duplicate line occurrences / ``len(text)``
``sig_top_{n}gram_char_frac`` n=2,3,4     (chars of the most frequent n-gram, words joined by " ") * its count
                                          / ``len(text)``;
                                          ties -> the n-gram seen first (``Counter.most_common``); NaN when no n-gram
``sig_dup_{n}gram_char_frac`` n=5..10     chars of repeated n-grams (words joined by "", datatrove's greedy
                                          left-to-right scan that skips n words after a repeat) / ``len(text)``
``sig_nonempty_lines`` (int64)            lines of ``text.split("\\n")`` with ``line.strip() != ""``
                                          (FineWeb ``empty`` when 0)
``sig_line_punct_frac``                   non-empty lines ending in a terminal punctuation char / non-empty lines
                                          (NaN if none)
``sig_short_line_frac``                   non-empty lines of <= 30 chars / non-empty lines (``short_line_length=30``)
``sig_line_char_dup_frac``                chars of duplicate non-empty lines / ``len(text.replace("\\n", ""))``
``sig_newline_word_ratio``                ``text.count("\\n")`` / words
                                          (datatrove divides by zero: +inf, or NaN for 0/0)
``sig_n_words`` (int64)                   words
``sig_n_non_symbol_words`` (int64)        words with at least one char outside datatrove's ``PUNCTUATION_SET``
``sig_avg_word_len``                      mean length of non-symbol words (NaN if none)
``sig_hash_word_ratio``                   ``text.count("#")`` / words
``sig_ellipsis_word_ratio``               (``text.count("...") + text.count("…")``) / words
``sig_bullet_line_frac``                  ``text.splitlines()`` lines whose ``lstrip()`` starts with "•" or "-" / lines
``sig_ellipsis_line_frac``                lines whose ``rstrip()`` ends with "..." or "…" / lines
``sig_alpha_word_frac``                   words with at least one ``str.isalpha`` char / words
``sig_stopword_count`` (int64)            distinct stopwords of the language among the words
                                          (depends on the stopword list!)
========================================  =========================================================================

``sig_stopword_count`` is the only column that depends on a setting (the stopword list). When the
list changes, recompute just that column with :func:`stopword_counts` (tokenizing again, nothing
else); ``babelsieve refilter --set stopwords=[...]`` does this automatically.

Speed: lines, paragraphs and stopwords use C-level ``set``/``str`` operations per document; every
word-level quantity is computed for a whole batch at once with numpy: word lengths and code points
are gathered once, character classes come from lookup tables, and n-grams are identified by a
double polynomial hash (moduli 2^31-1 and 10^9+7, ~2^61 values) of their exact character string,
computed from prefix sums, so n-gram equality is string equality (up to a ~1e-15 collision
probability per pair; n-gram char lengths are compared too) with no per-n-gram Python work. Only the
greedy scan for repeated n-grams loops in Python, and only over positions whose n-gram occurred
before in the same document.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import chain

import numpy as np
import pyarrow as pa

__all__ = [
    "SIGNAL_COLUMNS",
    "SIGNAL_SCHEMA",
    "SIGNALS_VERSION",
    "TOP_N_GRAMS",
    "DUP_N_GRAMS",
    "compute_signals",
    "compute_signal_arrays",
    "stopword_counts",
    "get_tokenizer",
]

SIGNALS_VERSION = 1
TOP_N_GRAMS = (2, 3, 4)
DUP_N_GRAMS = (5, 6, 7, 8, 9, 10)
SHORT_LINE_LENGTH = 30  # FineWebQualityFilter default, used by FineWeb2

_INT_COLS = ["sig_text_len", "sig_nonempty_lines", "sig_n_words", "sig_n_non_symbol_words", "sig_stopword_count"]
SIGNAL_COLUMNS: list[str] = (
    ["sig_text_len", "sig_para_dup_frac", "sig_para_dup_char_frac", "sig_line_dup_frac", "sig_line_dup_char_frac"]
    + [f"sig_top_{n}gram_char_frac" for n in TOP_N_GRAMS]
    + [f"sig_dup_{n}gram_char_frac" for n in DUP_N_GRAMS]
    + [
        "sig_nonempty_lines",
        "sig_line_punct_frac",
        "sig_short_line_frac",
        "sig_line_char_dup_frac",
        "sig_newline_word_ratio",
        "sig_n_words",
        "sig_n_non_symbol_words",
        "sig_avg_word_len",
        "sig_hash_word_ratio",
        "sig_ellipsis_word_ratio",
        "sig_bullet_line_frac",
        "sig_ellipsis_line_frac",
        "sig_alpha_word_frac",
        "sig_stopword_count",
    ]
)
SIGNAL_SCHEMA = pa.schema([pa.field(c, pa.int64() if c in _INT_COLS else pa.float64()) for c in SIGNAL_COLUMNS])

_PARA_RE = re.compile(r"\n{2,}")
_LINES_RE = re.compile("\n+")

# --- character tables ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _char_tables() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(is_punct[cp], is_alpha[cp], terminal punctuation) over all code points, from datatrove's sets."""
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

    is_punct = np.zeros(0x110000, dtype=bool)
    is_punct[[ord(c) for c in PUNCTUATION_SET]] = True
    # str.isalpha per code point, computed once (map in C, ~0.1 s): the same predicate datatrove applies per char
    all_chars = "".join(map(chr, range(0x110000)))
    is_alpha = np.frombuffer(bytes(map(str.isalpha, all_chars)), dtype=bool).copy()
    return is_punct, is_alpha, tuple(TERMINAL_PUNCTUATION)


# --- polynomial hashing of substrings -------------------------------------------------------------

_P1, _B1 = 2147483647, 911382323
_P2, _B2 = 1000000007, 972663749
_K_DOC, _K_LEN = 1_234_567_891 % 2147483647, 987_654_321
_POW_CACHE: dict[tuple[int, int, bool], np.ndarray] = {}


def _powers(base: int, mod: int, n: int, inverse: bool) -> np.ndarray:
    key = (base, mod, inverse)
    arr = _POW_CACHE.get(key)
    if arr is None or len(arr) < n:
        b = pow(base, mod - 2, mod) if inverse else base
        size = max(n, 1 << 16, 0 if arr is None else 2 * len(arr))
        out = np.empty(size, dtype=np.int64)
        out[0] = 1
        m = 1
        while m < size:  # doubling: out[m:2m] = out[:m] * b^m
            k = min(m, size - m)
            out[m : m + k] = out[:k] * pow(b, m, mod) % mod
            m += k
        _POW_CACHE[key] = arr = out
    return arr


class _SubstringHasher:
    """Hash of any substring [a, b) of a code point array, as one int64 (two moduli)."""

    def __init__(self, cps: np.ndarray):
        n = len(cps)
        c = cps.astype(np.int64) + 1  # never 0
        self.g1 = np.zeros(n + 1, dtype=np.int64)
        self.g2 = np.zeros(n + 1, dtype=np.int64)
        # prefix sums of c_j * B^j, chunked so int64 cumsum never overflows
        for g, p, b in ((self.g1, _P1, _B1), (self.g2, _P2, _B2)):
            terms = c * _powers(b, p, n, False)[:n] % p
            chunk = 1 << 30
            acc = 0
            for s in range(0, n, chunk):
                part = np.cumsum(terms[s : s + chunk]) + acc
                part %= p
                g[s + 1 : s + 1 + len(part)] = part
                acc = int(part[-1]) if len(part) else acc
        self.n = n

    def hash(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        i1 = _powers(_B1, _P1, self.n + 1, True)
        i2 = _powers(_B2, _P2, self.n + 1, True)
        h1 = (self.g1[b] - self.g1[a]) % _P1 * i1[a] % _P1
        h2 = (self.g2[b] - self.g2[a]) % _P2 * i2[a] % _P2
        return h1 * _P2 + h2


# --- tokenizer ---------------------------------------------------------------------------------


def get_tokenizer(lang_script: str) -> Callable[[list[str]], list[list[str]]]:
    """Batch word tokenizer of a language: the langid engineer's table (datatrove's assignment)."""
    from babelsieve.langid.word_tokenizers import load_word_tokenizer

    tok = load_word_tokenizer(lang_script)
    return tok.word_tokenize_batch


def stopword_counts(words_per_doc: Iterable[Sequence[str]], stopwords: Iterable[str]) -> np.ndarray:
    """Distinct stopwords among each document's words (datatrove: ``len(stop_words & set(words))``)."""
    sw = frozenset(stopwords)
    return np.fromiter((len(sw.intersection(w)) for w in words_per_doc), dtype=np.int64)


# --- main entry points ---------------------------------------------------------------------------


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _dup_counts(items: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (# repeated occurrences, chars of repeated occurrences)."""
    u = set(items)
    return len(items) - len(u), sum(map(len, items)) - sum(map(len, u))


def _line_signals(texts: Sequence[str], out: dict[str, np.ndarray]) -> None:
    _, _, term = _char_tables()
    n = len(texts)
    para_dup = np.zeros(n)
    para_dupc = np.zeros(n, dtype=np.int64)
    n_para = np.ones(n, dtype=np.int64)
    line_dup = np.zeros(n, dtype=np.int64)
    line_dupc = np.zeros(n, dtype=np.int64)
    n_lines = np.ones(n, dtype=np.int64)
    ne_lines = np.zeros(n, dtype=np.int64)
    punct = np.zeros(n, dtype=np.int64)
    short = np.zeros(n, dtype=np.int64)
    fw_dupc = np.zeros(n, dtype=np.int64)
    nl = np.zeros(n, dtype=np.int64)
    hashes = np.zeros(n, dtype=np.int64)
    ellips = np.zeros(n, dtype=np.int64)
    sl_n = np.zeros(n, dtype=np.int64)
    bullets = np.zeros(n, dtype=np.int64)
    end_ell = np.zeros(n, dtype=np.int64)
    for i, text in enumerate(texts):
        paras = _PARA_RE.split(text.strip())
        n_para[i] = len(paras)
        para_dup[i], para_dupc[i] = _dup_counts(paras)
        lines = _LINES_RE.split(text)
        n_lines[i] = len(lines)
        line_dup[i], line_dupc[i] = _dup_counts(lines)
        ne = [ln for ln in text.split("\n") if ln.strip() != ""]
        ne_lines[i] = len(ne)
        if ne:
            punct[i] = sum(1 for ln in ne if ln.endswith(term))
            short[i] = sum(1 for ln in ne if len(ln) <= SHORT_LINE_LENGTH)
            fw_dupc[i] = _dup_counts(ne)[1]
        nl[i] = text.count("\n")
        hashes[i] = text.count("#")
        ellips[i] = text.count("...") + text.count("…")
        sl = text.splitlines()
        sl_n[i] = len(sl)
        if sl:
            bullets[i] = sum(1 for s in sl if s.lstrip().startswith(("•", "-")))
            end_ell[i] = sum(1 for s in sl if s.rstrip().endswith(("...", "…")))
    tl = out["sig_text_len"]
    out["sig_para_dup_frac"] = _div(para_dup, n_para)
    out["sig_para_dup_char_frac"] = _div(para_dupc, tl)
    out["sig_line_dup_frac"] = _div(line_dup, n_lines)
    out["sig_line_dup_char_frac"] = _div(line_dupc, tl)
    out["sig_nonempty_lines"] = ne_lines
    out["sig_line_punct_frac"] = _div(punct, ne_lines)
    out["sig_short_line_frac"] = _div(short, ne_lines)
    out["sig_line_char_dup_frac"] = _div(fw_dupc, tl - nl)
    out["_newlines"] = nl
    out["_hashes"] = hashes
    out["_ellipsis"] = ellips
    out["sig_bullet_line_frac"] = _div(bullets, sl_n)
    out["sig_ellipsis_line_frac"] = _div(end_ell, sl_n)


def _greedy_dup_chars(n_pos: int, cand: list[int], gids: list[int], first: list[int], clen: list[int], n: int) -> int:
    """datatrove's find_all_duplicate, visiting only positions whose n-gram occurred before.

    ``n_pos`` n-gram positions of the document; ``cand`` the positions that are not first occurrences
    of their n-gram (ascending), with, for each, ``gids`` its n-gram group, ``first`` the group's first
    position and ``clen`` the n-gram's char length.
    A first occurrence is in datatrove's ``unique`` set iff the scan landed on it (it was not inside a
    jump); a later occurrence lands as "new" only when every earlier occurrence was jumped over.
    """
    skipped = bytearray(n_pos)  # 1 = inside a jump (never landed on)
    added_late: set[int] = set()
    chars = 0
    i, n_cand = 0, len(cand)
    while i < n_cand:
        c = cand[i]
        g = gids[i]
        if not skipped[first[i]] or g in added_late:
            chars += clen[i]
            end = min(c + n, n_pos)
            skipped[c + 1 : end] = b"\x01" * (end - c - 1)
            i = bisect_left(cand, c + n, i + 1)  # next candidate the scan can land on
        else:
            added_late.add(g)
            i += 1
    return chars


def _repeated(key: np.ndarray) -> np.ndarray:
    """Indices (ascending) of a superset of the entries of ``key`` whose value occurs more than once.

    One value sort (much cheaper than an argsort) finds the repeated values; the entries holding one
    are then picked by a bit table indexed by the key's low bits (a few percent false positives, which
    the caller drops: their group has one member)."""
    if len(key) < 2:
        return np.empty(0, dtype=np.int64)
    ks = np.sort(key)
    d = ks[1:] == ks[:-1]
    if not d.any():
        return np.empty(0, dtype=np.int64)
    vals = ks[1:][d]
    bits = min(max(int(len(vals)).bit_length() + 5, 12), 24)
    mask = (1 << bits) - 1
    table = np.zeros(mask + 1, dtype=bool)
    table[vals & mask] = True
    return np.flatnonzero(table[key & mask])


def _word_signals(
    words: list[list[str]],
    text_len: np.ndarray,
    out: dict[str, np.ndarray],
    top_ns: Sequence[int],
    dup_ns: Sequence[int],
) -> None:
    is_punct, is_alpha, _ = _char_tables()
    n_docs = len(words)
    counts = np.fromiter(map(len, words), dtype=np.int64, count=n_docs)
    n_words_total = int(counts.sum())
    flat = list(chain.from_iterable(words))
    wlen = np.fromiter(map(len, flat), dtype=np.int64, count=n_words_total)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    spaced = " ".join(flat)
    cps = np.frombuffer(spaced.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    # word k occupies [s_k, s_k + len_k) of the space-joined string
    ends_nosp = np.cumsum(wlen)
    starts_nosp = ends_nosp - wlen
    starts_sp = starts_nosp + np.arange(n_words_total, dtype=np.int64)
    ends_sp = starts_sp + wlen
    word_mask = np.ones(len(cps), dtype=bool)
    if n_words_total > 1:
        word_mask[ends_sp[:-1]] = False  # the separators
    cps_nosp = cps[word_mask]

    # per-word char classes via prefix counts over the space-free string (words may be empty-safe)
    def per_word_any(table: np.ndarray) -> np.ndarray:
        cs = np.zeros(len(cps_nosp) + 1, dtype=np.int64)
        np.cumsum(table[cps_nosp], out=cs[1:])
        return (cs[ends_nosp] - cs[starts_nosp]) > 0

    non_symbol = per_word_any(~is_punct)
    alpha = per_word_any(is_alpha)
    doc_bounds = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=doc_bounds[1:])

    def per_doc_sum(x: np.ndarray) -> np.ndarray:
        cs = np.zeros(len(x) + 1, dtype=np.int64 if x.dtype != np.float64 else np.float64)
        np.cumsum(x, out=cs[1:])
        return cs[doc_bounds[1:]] - cs[doc_bounds[:-1]]

    n_ns = per_doc_sum(non_symbol.astype(np.int64))
    ns_len = per_doc_sum(np.where(non_symbol, wlen, 0))
    out["sig_n_words"] = counts
    out["sig_n_non_symbol_words"] = n_ns
    out["sig_avg_word_len"] = _div(ns_len, n_ns)
    out["sig_alpha_word_frac"] = _div(per_doc_sum(alpha.astype(np.int64)), counts)
    out["sig_newline_word_ratio"] = _div(out.pop("_newlines"), counts)
    out["sig_hash_word_ratio"] = _div(out.pop("_hashes"), counts)
    out["sig_ellipsis_word_ratio"] = _div(out.pop("_ellipsis"), counts)

    need = max(list(top_ns) + list(dup_ns) + [0])
    if n_words_total == 0 or need == 0:
        for n in top_ns:
            out[f"sig_top_{n}gram_char_frac"] = np.full(n_docs, np.nan)
        for n in dup_ns:
            out[f"sig_dup_{n}gram_char_frac"] = np.zeros(n_docs)
        return
    h_sp = _SubstringHasher(cps)
    h_nosp = _SubstringHasher(cps_nosp)
    widx = np.arange(n_words_total, dtype=np.int64)

    def valid_starts(n: int) -> np.ndarray:
        last = widx[: max(n_words_total - n + 1, 0)]
        return last[doc_of[last + n - 1] == doc_of[last]] if len(last) else last

    def group_key(doc: np.ndarray, length: np.ndarray, key: np.ndarray) -> np.ndarray:
        """One int64 per n-gram, equal for equal (doc, length, string hash).

        doc and length are folded into the first hash component (mod 2^31-1), so n-grams of other
        documents or other lengths share a key only by a hash collision (~2^-61 per pair)."""
        h1, h2 = np.divmod(key, _P2)
        return ((h1 + doc * _K_DOC + length * _K_LEN) % _P1) * _P2 + h2

    def repeated_groups(k: np.ndarray):
        """Positions (indices into k, ascending) of repeated n-grams; for each, its group id, the
        group's first position and size. Only repeated n-grams can be a top n-gram with count > 1 or
        a duplicate, and they are usually few, so only they are argsorted."""
        rep = _repeated(k)
        if not len(rep):
            return rep, rep, rep, rep
        order = np.argsort(k[rep], kind="stable")  # rep is ascending: equal keys keep position order
        ks = k[rep][order]
        new = np.ones(len(order), dtype=bool)
        new[1:] = ks[1:] != ks[:-1]
        starts = np.flatnonzero(new)
        gid_sorted = np.cumsum(new) - 1
        size_sorted = np.diff(np.append(starts, len(order)))[gid_sorted]
        first_sorted = rep[order][starts][gid_sorted]
        gid = np.empty(len(rep), dtype=np.int64)
        gid[order] = gid_sorted
        first = np.empty(len(rep), dtype=np.int64)
        first[order] = first_sorted
        size = np.empty(len(rep), dtype=np.int64)
        size[order] = size_sorted
        keep = size > 1  # drop the bit table's false positives
        return rep[keep], gid[keep], first[keep], size[keep]

    for n in top_ns:
        res = np.full(n_docs, np.nan)
        st = valid_starts(n)
        if len(st):
            a, b = starts_sp[st], ends_sp[st + n - 1]
            length = b - a
            doc = doc_of[st]
            # every n-gram seen once: most_common(1) is the document's first n-gram, count 1
            dstart = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
            res[doc[dstart]] = _div(length[dstart], text_len[doc[dstart]])
            rep, _, _, cnt = repeated_groups(group_key(doc, length, h_sp.hash(a, b)))
            if len(rep):
                # docs with a repeated n-gram: max count, then the first position having it (a first
                # occurrence, hence the max-count n-gram seen first = Counter.most_common(1))
                rdoc = doc[rep]
                rstart = np.flatnonzero(np.r_[True, rdoc[1:] != rdoc[:-1]])
                dmax = np.maximum.reduceat(cnt, rstart)
                run = np.repeat(np.arange(len(rstart)), np.diff(np.append(rstart, len(rep))))
                hit = np.flatnonzero(cnt == dmax[run])
                _, first_hit = np.unique(run[hit], return_index=True)
                best = rep[hit[first_hit]]
                docs_here = rdoc[rstart]
                res[docs_here] = _div(length[best] * cnt[hit[first_hit]], text_len[docs_here])
        out[f"sig_top_{n}gram_char_frac"] = res

    for n in dup_ns:
        res = np.zeros(n_docs)
        st = valid_starts(n)
        if len(st):
            a, b = starts_nosp[st], ends_nosp[st + n - 1]
            length = b - a
            doc = doc_of[st]
            rep, gid, first, _ = repeated_groups(group_key(doc, length, h_nosp.hash(a, b)))
            is_cand = first != rep
            if is_cand.any():
                cand = rep[is_cand]
                c_doc = doc[cand]
                st_bounds = np.searchsorted(doc, np.arange(n_docs + 1))
                c_bounds = np.searchsorted(c_doc, np.arange(n_docs + 1))
                c_gid, c_first, c_len = gid[is_cand], first[is_cand], length[cand]
                for d in np.unique(c_doc).tolist():
                    s0 = int(st_bounds[d])
                    c0, c1 = c_bounds[d], c_bounds[d + 1]
                    res[d] = _greedy_dup_chars(
                        int(st_bounds[d + 1]) - s0,
                        (cand[c0:c1] - s0).tolist(),
                        c_gid[c0:c1].tolist(),
                        (c_first[c0:c1] - s0).tolist(),
                        c_len[c0:c1].tolist(),
                        n,
                    )
        out[f"sig_dup_{n}gram_char_frac"] = _div(res, text_len)


def compute_signal_arrays(
    texts: Sequence[str],
    lang_script: str | None = None,
    *,
    stopwords: Iterable[str] | None = None,
    tokenize: Callable[[list[str]], list[list[str]]] | None = None,
    words: list[list[str]] | None = None,
    top_ns: Sequence[int] = TOP_N_GRAMS,
    dup_ns: Sequence[int] = DUP_N_GRAMS,
    max_batch_chars: int = 8_000_000,
) -> dict[str, np.ndarray]:
    """Signals as a dict of numpy arrays (see :func:`compute_signals`)."""
    texts = [t if isinstance(t, str) else "" for t in texts]  # None -> "" (an empty document)
    if stopwords is None:
        stopwords = _language_stopwords(lang_script) if lang_script else []
    if words is None:
        if tokenize is None:
            if lang_script is None:
                raise ValueError("compute_signals needs lang_script (for the word tokenizer) or tokenize=/words=")
            tokenize = get_tokenizer(lang_script)
        words = tokenize(list(texts))
    # batches bounded in characters keep the hash arrays small
    parts: list[dict[str, np.ndarray]] = []
    i = 0
    while i < len(texts) or (i == 0 and not parts):
        j, size = i, 0
        while j < len(texts) and (j == i or size + len(texts[j]) <= max_batch_chars):
            size += len(texts[j])
            j += 1
        parts.append(_compute_batch(texts[i:j], words[i:j], stopwords, top_ns, dup_ns))
        i = j
        if not texts:
            break
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _compute_batch(texts, words, stopwords, top_ns, dup_ns) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    text_len = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    out["sig_text_len"] = text_len
    _line_signals(texts, out)
    _word_signals(words, text_len, out, top_ns, dup_ns)
    out["sig_stopword_count"] = stopword_counts(words, stopwords)
    cols = [c for c in SIGNAL_COLUMNS if c in out] + sorted(k for k in out if k not in SIGNAL_COLUMNS)
    return {c: out[c] for c in cols}


def compute_signals(
    texts: Sequence[str],
    lang_script: str | None = None,
    **kwargs,
) -> pa.Table:
    """One row of ``sig_*`` columns per text (see the module docstring for each column).

    ``lang_script`` picks the word tokenizer and the stopword list (``stopwords=`` overrides the list,
    ``tokenize=`` the tokenizer, ``words=`` gives pre-tokenized words). Empty or ``None`` texts give a
    row too (``sig_text_len`` 0).
    """
    arrays = compute_signal_arrays(texts, lang_script, **kwargs)
    fields = []
    for k in arrays:
        fields.append(pa.field(k, pa.int64() if k in _INT_COLS else pa.float64()))
    return pa.table({k: pa.array(v) for k, v in arrays.items()}, schema=pa.schema(fields))


def _language_stopwords(lang_script: str) -> list[str]:
    from babelsieve.filters.settings import language_settings

    return list(language_settings(lang_script).stopwords)
