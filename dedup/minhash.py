"""Vectorised MinHash signatures with FineWeb2's (datatrove's) semantics.

What a signature *means* is datatrove 0.10.1's ``MinhashDedupSignature``:

* text -> ``datatrove.utils.text.simplify_text`` (lowercase, digits -> 0, punctuation -> space,
  whitespace collapsed, diacritics removed) -> the language's word tokenizer -> word n-grams
  (5 by default); documents with fewer than ``n`` words have no shingles and no signature;
* every shingle is a 64-bit hash; the ``num_buckets * hashes_per_bucket`` (14 x 8 = 112)
  permutations are ``((x * a + b) mod 2**64) mod (2**61 - 1)`` with ``a, b`` drawn exactly like
  datatrove (``np.random.RandomState(seed).randint``), so the permutation family is the same;
* the signature is the per-permutation minimum, split into 14 bands of 8.

What differs is *how* it is computed, to remove the per-n-gram Python loop:

* ``simplify_text`` runs once on a whole batch joined by a separator (same result per document):
  lower and numbers on the whole batch; punctuation / whitespace with one regex built from the
  punctuation and whitespace characters that occur in the batch, matching only runs that are not
  already one space (no substitution per word gap); NFD + removal of ``Mn`` characters (classified
  with ``unicodedata``, as datatrove) only on the documents that are not ASCII;
* for tokenizers that tokenize each whitespace-separated chunk independently (spaCy's rule-based
  tokenizers, i.e. ~all Latin/Cyrillic/Arabic/... languages), the batch is split once and every
  chunk is mapped to a dense id in a chunk vocabulary (one C-level lookup pass per batch); the
  vocabulary holds each chunk's token hashes, gathered with numpy. Other tokenizers (jieba,
  SudachiPy, Thai, Korean, ...) run on the batch and only their tokens are hashed;
* ``shingle_hash="fast"`` (default) hashes each *token* once with xxhash64 and combines the n
  token hashes of an n-gram with vectorised 64-bit mixing (order-sensitive); this is a different
  64-bit hash of the same n-gram, so signatures are not bit-identical to datatrove's but have the
  same collision behaviour (Jaccard estimates are equal in distribution).
  ``shingle_hash="datatrove"`` hashes ``" ".join(ngram)`` with xxhash64 like datatrove (slower) and
  gives bit-identical signatures (tested);
* the 112 permutations are applied with numpy to all shingles of a batch at once, the Mersenne
  reduction uses shifts instead of ``%``, and ``np.minimum.reduceat`` takes the per-document min.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from operator import itemgetter

import numpy as np
import xxhash

MERSENNE = np.uint64((1 << 61) - 1)
_M61 = (1 << 61) - 1
_h64 = xxhash.xxh64_intdigest  # bytes in: xxhash>=4 refuses str (3.x hashed str as UTF-8)
_SEP = "\ue000"  # private use: not whitespace for re's \s, not punctuation, not a digit, not Mn
# Mixing constants (splitmix64 / xxhash primes).
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)

# spaCy languages whose tokenizer is rule based and splits each whitespace-separated chunk on its
# own (spaCy's Tokenizer caches per chunk). Others segment running text (jieba, Sudachi, pyvi).
_NOT_CHUNK_LOCAL_SPACY = {"zh", "ja", "vi", "th", "ko"}


def permutation_params(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datatrove's ``MinhashDedupSignature.parameters`` (same RandomState draws), as 1-D arrays."""
    gen = np.random.RandomState(seed)
    a = gen.randint(1, MERSENNE, dtype=np.uint64, size=(1, num_perm))
    b = gen.randint(0, MERSENNE, dtype=np.uint64, size=(1, num_perm))
    return a.ravel(), b.ravel()


def splitmix(x: np.ndarray) -> np.ndarray:
    """64-bit finaliser (splitmix64), vectorised, wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _K2
        x = x ^ (x >> np.uint64(27))
        x = x * _K3
        x = x ^ (x >> np.uint64(31))
    return x


# ---------------------------------------------------------------------------------------------
# text normalisation (datatrove's simplify_text, batched)


def _char_class(codepoints) -> re.Pattern[str]:
    cps = sorted(codepoints)
    ranges, start, prev = [], None, None
    for c in cps:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            ranges.append((start, prev))
            start = prev = c
    if start is not None:
        ranges.append((start, prev))
    body = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{body}]+")


@lru_cache(maxsize=1)
def _norm():
    """datatrove's numbers pattern and its punctuation / whitespace sets.

    Returns ``(numbers, punct_ws_chars)``: ``punct_ws_chars`` is every character that datatrove
    turns into a space (its punctuation table) or collapses (``\\s`` of ``re``), as a frozenset.
    """
    from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION_TRANS, WHITESPACE_PATTERN

    assert set(PUNCTUATION_TRANS.values()) == {32}, "datatrove's punctuation table changed"
    assert WHITESPACE_PATTERN.pattern == r"\s+", "datatrove's whitespace pattern changed"
    ws = {chr(c) for c in range(0x110000) if chr(c).isspace()}  # re's \s for str is str.isspace
    assert all(WHITESPACE_PATTERN.fullmatch(c) for c in ws) and not WHITESPACE_PATTERN.search("\u200b\ufeff_x")
    return NUMBERS_PATTERN, frozenset(chr(c) for c in PUNCTUATION_TRANS) | frozenset(ws)


@lru_cache(maxsize=4096)
def _class_pattern(chars: frozenset, multi_only: frozenset) -> re.Pattern[str]:
    """``[chars]{2,}|[chars - multi_only]``: the runs of ``chars`` that are not a lone character of
    ``multi_only``. Replacing its matches by one space == replacing every ``[chars]+`` run by one
    space when ``multi_only == {" "}`` (a lone space already is one space), without touching the
    (hundreds of thousands of) single spaces between words."""
    cls = "".join(re.escape(c) for c in sorted(chars))
    single = "".join(re.escape(c) for c in sorted(chars - multi_only))
    return re.compile(f"[{cls}]{{2,}}|[{single}]" if single else f"[{cls}]{{2,}}")


@lru_cache(maxsize=4096)
def _mn_pattern(chars: frozenset) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]+")


_MN_CACHE: dict[str, bool] = {}


def _drop_mn(text: str) -> str:
    """Remove every character whose ``unicodedata.category`` is ``Mn`` (datatrove's test, exactly:
    the distinct characters of the text are classified with ``unicodedata`` itself)."""
    present = set(text)
    mn = set()
    for c in present:
        if c > "\x7f":
            v = _MN_CACHE.get(c)
            if v is None:
                v = _MN_CACHE[c] = unicodedata.category(c) == "Mn"
            if v:
                mn.add(c)
    return _mn_pattern(frozenset(mn)).sub("", text) if mn else text


def simplify_joined(texts: Sequence[str]) -> str | None:
    """``_SEP.join(simplify_text(t) for t in texts)`` up to spaces around each ``_SEP`` (every
    segment is its document's simplified text, possibly with one leading / trailing space), or
    None when a text contains ``_SEP`` itself.

    * lower, numbers -> "0" (datatrove's regex) on the whole batch;
    * punctuation -> space and whitespace collapse: one regex built from the punctuation /
      whitespace characters that actually occur in the batch (``set(text)``), matching only runs
      that are not already a single space;
    * NFD + removal of ``Mn`` characters only on the segments that are not ASCII (NFD and ``Mn``
      leave ASCII unchanged; ``_SEP`` is a starter without decomposition, so NFD is segment-local).
    """
    if any(_SEP in t for t in texts):
        return None
    numbers, punct_ws = _norm()
    text = _SEP.join(texts).lower()
    text = numbers.sub("0", text)
    present = punct_ws.intersection(text)
    if present:
        if present == {" "}:
            if "  " in text:
                text = _class_pattern(frozenset(present), frozenset(" ")).sub(" ", text)
        else:
            text = _class_pattern(frozenset(present), frozenset(" ")).sub(" ", text)
    if not text.isascii():
        segs = text.split(_SEP)
        bad = [i for i, t in enumerate(segs) if not t.isascii()]
        if bad:
            sub = _drop_mn(unicodedata.normalize("NFD", _SEP.join([segs[i] for i in bad])))
            # texts containing _SEP were refused above, so sub has exactly one segment per bad index
            for i, t in zip(bad, sub.split(_SEP), strict=True):
                segs[i] = t
            text = _SEP.join(segs)
    return text


def simplify_batch(texts: Sequence[str]) -> list[str]:
    """``[simplify_text(t) for t in texts]`` with datatrove's default TextNormConfig, batched.

    Punctuation runs become one space here (datatrove: one space each) - the whitespace
    collapse right after makes the two identical.
    """
    if not texts:
        return []
    joined = simplify_joined(texts)
    if joined is None:
        from datatrove.utils.text import simplify_text

        return [simplify_text(t) for t in texts]
    return [p.strip() for p in joined.split(_SEP)]


# ---------------------------------------------------------------------------------------------
# tokens -> 64-bit token hashes


def _load_tokenizer(lang_script: str):
    try:
        from babelsieve.langid.word_tokenizers import load_word_tokenizer, tokenizer_spec

        return load_word_tokenizer(lang_script), tokenizer_spec(lang_script)
    except ImportError:  # pragma: no cover - the langid package is part of the repo
        from datatrove.utils.word_tokenizers import load_word_tokenizer

        return load_word_tokenizer(lang_script), None


class _ChunkCache(dict):
    """chunk (whitespace-free string) -> tuple of xxhash64 of its tokens; computed on a miss."""

    def __init__(self, tokenize):
        super().__init__()
        self._tokenize = tokenize

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        v = tuple(_h64(t.encode()) for t in self._tokenize(chunk))
        if len(self) > 2_000_000:
            self.clear()
        self[chunk] = v
        return v


class _ChunkVocab(dict):
    """chunk (whitespace-free string) -> dense id; per id its token count and the offset of its
    tokens' xxhash64 values in ``tok``. Id 0 is the document separator ``_SEP`` (no tokens)."""

    LIMIT = 4_000_000

    def __init__(self, tokenize):
        super().__init__()
        self._tokenize = tokenize
        self.reset()

    def reset(self) -> None:
        self.clear()
        self[_SEP] = 0
        self._ntok = [0]
        self._off = [0]
        self._tok: list[int] = []
        self.ntok = np.zeros(1, np.int64)
        self.off = np.zeros(1, np.int64)
        self.tok = np.zeros(0, np.uint64)

    def __missing__(self, chunk: str) -> int:
        hs = [_h64(t.encode()) for t in self._tokenize(chunk)]
        k = len(self)
        self[chunk] = k
        self._ntok.append(len(hs))
        self._off.append(len(self._tok) + self.tok.size)
        self._tok.extend(hs)
        return k

    def sync(self) -> None:
        """Move the entries added since the last call into the numpy arrays."""
        if len(self._ntok) > self.ntok.size:
            self.ntok = np.concatenate([self.ntok, np.array(self._ntok[self.ntok.size :], np.int64)])
            self.off = np.concatenate([self.off, np.array(self._off[self.off.size :], np.int64)])
            self.tok = np.concatenate([self.tok, np.array(self._tok, np.uint64)])
            self._tok = []


class _ChunkTokens(dict):
    """chunk -> tuple of its tokens (datatrove mode: the n-grams are joined strings)."""

    def __init__(self, tokenize):
        super().__init__()
        self._tokenize = tokenize

    def __missing__(self, chunk: str) -> tuple[str, ...]:
        v = tuple(self._tokenize(chunk))
        if len(self) > 2_000_000:
            self.clear()
        self[chunk] = v
        return v


class _TokenHashCache(dict):
    def __missing__(self, tok: str) -> int:
        v = _h64(tok.encode())
        if len(self) > 2_000_000:
            self.clear()
        self[tok] = v
        return v


class MinHasher:
    """Signatures for one language. ``signatures(texts)`` -> (has_sig bool[n], sigs uint64[m, P])."""

    def __init__(
        self,
        lang_script: str,
        n_grams: int = 5,
        num_buckets: int = 14,
        hashes_per_bucket: int = 8,
        seed: int = 1,
        shingle_hash: str = "fast",
        tokenizer=None,
        chunk_local: bool | None = None,
    ):
        self.lang_script = lang_script
        self.n = n_grams
        self.num_buckets = num_buckets
        self.rows = hashes_per_bucket
        self.num_perm = num_buckets * hashes_per_bucket
        self.a, self.b = permutation_params(self.num_perm, seed)
        if shingle_hash not in ("fast", "datatrove"):
            raise ValueError(f"shingle_hash must be 'fast' or 'datatrove', got {shingle_hash!r}")
        self.shingle_hash = shingle_hash
        spec = None
        if tokenizer is None:
            tokenizer, spec = _load_tokenizer(lang_script)
        self.tokenizer = tokenizer
        if chunk_local is None:
            chunk_local = spec is not None and spec.kind == "SpaCyTokenizer" and spec.arg not in _NOT_CHUNK_LOCAL_SPACY
        self.chunk_local = chunk_local
        self._chunks = _ChunkCache(self._tokenize_chunk)
        self._vocab = _ChunkVocab(self._tokenize_chunk)
        self._chunk_tokens = _ChunkTokens(self._tokenize_chunk)
        self._toks = _TokenHashCache()
        self._tok_chunk = getattr(tokenizer, "_tokens", None)  # our spaCy wrapper without memory zone

    def _tokenize_chunk(self, chunk: str) -> list[str]:
        if self._tok_chunk is not None:
            return self._tok_chunk(chunk)
        return self.tokenizer.word_tokenize(chunk)

    # -- shingles --------------------------------------------------------------------------
    def token_hashes_joined(self, joined: str, ndocs: int) -> tuple[np.ndarray, np.ndarray]:
        """``token_hashes`` of the documents of ``simplify_joined`` (chunk-local tokenizers): one
        ``split`` of the whole batch, one dict lookup per chunk (``np.fromiter``), then numpy."""
        voc = self._vocab
        if len(voc) > voc.LIMIT:
            voc.reset()
        words = joined.replace(_SEP, f" {_SEP} ").split()
        if len(words) > 1:  # itemgetter: one C call for all lookups (misses go to __missing__)
            ids = np.fromiter(itemgetter(*words)(voc), dtype=np.int64, count=len(words))
        else:
            ids = np.array([voc[w] for w in words], dtype=np.int64)
        voc.sync()
        nt = voc.ntok[ids]
        doc = np.cumsum(ids == 0)
        counts = np.bincount(doc, weights=nt, minlength=ndocs).astype(np.int64)
        if counts.size != ndocs:
            raise AssertionError("document separator count mismatch")
        keep = nt > 0
        ids, nt = ids[keep], nt[keep]
        if nt.size and int(nt.max()) == 1:
            return voc.tok[voc.off[ids]], counts
        total = int(nt.sum())
        first = np.cumsum(nt) - nt
        pos = np.repeat(voc.off[ids] - first, nt) + np.arange(total)
        return voc.tok[pos], counts

    def token_hashes(self, simplified: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All token hashes of a batch (concatenated) and per-document token counts."""
        if self.chunk_local:
            get = self._chunks.__getitem__
            per_doc = [list(chain.from_iterable(map(get, t.split()))) for t in simplified]
        else:
            if hasattr(self.tokenizer, "word_tokenize_batch"):
                toks = self.tokenizer.word_tokenize_batch(simplified)
            else:
                toks = [self.tokenizer.word_tokenize(t) for t in simplified]
            get = self._toks.__getitem__
            per_doc = [list(map(get, t)) for t in toks]
        counts = np.fromiter(map(len, per_doc), dtype=np.int64, count=len(per_doc))
        flat = np.fromiter(chain.from_iterable(per_doc), dtype=np.uint64, count=int(counts.sum()))
        return flat, counts

    def _shingles_fast(self, simplified: Sequence[str] | None, joined: str | None = None, ndocs: int = 0):
        if joined is not None:
            th, counts = self.token_hashes_joined(joined, ndocs)
        else:
            th, counts = self.token_hashes(simplified)
        n = self.n
        nsh = np.maximum(counts - n + 1, 0)
        total = th.size
        if total < n or nsh.sum() == 0:
            return np.zeros(0, np.uint64), nsh
        m = total - n + 1
        with np.errstate(over="ignore"):
            h = th[:m] * _K1
            for k in range(1, n):
                h = (h << np.uint64(7)) | (h >> np.uint64(57))
                h ^= th[k : k + m]
                h *= _K1
        h = splitmix(h)
        # keep the n-grams that start and end inside one document
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        keep = np.zeros(m, dtype=bool)
        idx = np.repeat(starts, nsh) + (np.arange(int(nsh.sum())) - np.repeat(np.cumsum(nsh) - nsh, nsh))
        keep[idx] = True
        return h[keep], nsh

    def _shingles_datatrove(self, simplified: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        from datatrove.utils.text import ngrams

        out: list[int] = []
        nsh = np.zeros(len(simplified), np.int64)
        h64 = _h64
        n = self.n
        if self.chunk_local:  # tokens from the per-chunk cache (the same tokens, tested)
            get = self._chunk_tokens.__getitem__
            for i, t in enumerate(simplified):
                toks = list(chain.from_iterable(map(get, t.split())))
                hs = [h64(" ".join(toks[j : j + n]).encode()) for j in range(len(toks) - n + 1)]
                nsh[i] = len(hs)
                out.extend(hs)
            return np.array(out, dtype=np.uint64), nsh
        for i, t in enumerate(simplified):
            hs = [h64(" ".join(g).encode()) for g in ngrams(self.tokenizer.word_tokenize(t), self.n)]
            nsh[i] = len(hs)
            out.extend(hs)
        return np.array(out, dtype=np.uint64), nsh

    # -- signatures ------------------------------------------------------------------------
    def signatures(self, texts: Sequence[str], block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(has_sig: bool[len(texts)], sigs: uint64[has_sig.sum(), num_perm])."""
        texts = list(texts)
        if (
            self.shingle_hash == "fast"
            and self.chunk_local
            and texts
            and (joined := simplify_joined(texts)) is not None
        ):
            sh, nsh = self._shingles_fast(None, joined, len(texts))
        elif self.shingle_hash == "fast":
            sh, nsh = self._shingles_fast(simplify_batch(texts))
        else:
            sh, nsh = self._shingles_datatrove(simplify_batch(texts))
        has = nsh > 0
        sigs = permute_min(sh, nsh[has], self.a, self.b, block=block)
        return has, sigs

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        return band_keys(sigs, self.num_buckets, self.rows)


def permute_min(
    shingles: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray, block: int = 1024
) -> np.ndarray:
    """Per document (``counts`` consecutive shingles, all > 0), min over shingles of each permutation.

    ``((x * a + b) mod 2**64) mod (2**61 - 1)`` exactly as datatrove computes it on uint64; the
    Mersenne reduction is ``(v & p) + (v >> 61)`` followed by ``min(r, r - p)`` (unsigned wrap),
    which equals ``v % p`` for every 64-bit ``v``. Work is done in blocks of ``block`` shingles so
    temporaries stay in cache; documents spanning blocks are min-merged.
    """
    P = a.size
    ndocs = counts.size
    out = np.full((ndocs, P), np.iinfo(np.uint64).max, dtype=np.uint64)
    if ndocs == 0:
        return out
    doc_of = np.repeat(np.arange(ndocs), counts)
    total = shingles.size
    buf = np.empty((block, P), dtype=np.uint64)
    tmp = np.empty((block, P), dtype=np.uint64)
    a2 = a[None, :]
    b2 = b[None, :]
    s61 = np.uint64(61)
    with np.errstate(over="ignore"):
        for s in range(0, total, block):
            e = min(total, s + block)
            k = e - s
            v = buf[:k]
            t = tmp[:k]
            np.multiply(shingles[s:e, None], a2, out=v)
            np.add(v, b2, out=v)
            np.right_shift(v, s61, out=t)
            np.bitwise_and(v, MERSENNE, out=v)
            np.add(v, t, out=v)
            np.subtract(v, MERSENNE, out=t)
            np.minimum(v, t, out=v)
            d = doc_of[s:e]
            # segment starts inside this block
            starts = np.flatnonzero(np.concatenate(([True], d[1:] != d[:-1])))
            red = np.minimum.reduceat(v, starts, axis=0)
            docs = d[starts]
            np.minimum(out[docs], red, out=red)
            out[docs] = red
    return out


def band_keys(sigs: np.ndarray, num_buckets: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band): a mix of the band's ``rows`` values and its index.

    Shape (n, num_buckets). Two documents share a key in band ``j`` iff their band values are equal
    (up to 64-bit hash collisions: ~n^2 / 2^65 expected false keys per band, negligible).
    """
    n = sigs.shape[0]
    v = sigs.reshape(n, num_buckets, rows)
    with np.errstate(over="ignore"):
        h = np.broadcast_to((np.arange(num_buckets, dtype=np.uint64) + np.uint64(1)) * _K3, (n, num_buckets)).copy()
        for j in range(rows):
            h ^= v[:, :, j]
            h *= _K1
            h = (h << np.uint64(31)) | (h >> np.uint64(33))
        return splitmix(h)


def exact_jaccard(a: Iterable[int], b: Iterable[int]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


_WS = re.compile(r"\s+")
