"""Word tokenizers per language-script pair, offline, matching datatrove's (FineWeb2's) tokens.

FineWeb2's per-language thresholds (average word length, stopwords, n-gram repetition, words per
newline, MinHash shingles) were calibrated with the word tokenizer that datatrove assigns to each
language in ``datatrove/assets/tokenizer_assignment.csv``. We therefore **reuse that table and
datatrove's tokenizer classes** wherever they work offline, and substitute only where they don't:

=====================  ==========================================================================
datatrove class        what we use
=====================  ==========================================================================
SpaCyTokenizer(code)   the same ``spacy.blank(code)`` pipeline (zh: jieba, ja: SudachiPy through
                       datatrove's registered Japanese tokenizer, vi: pyvi); we call the spaCy
                       tokenizer directly (no sentencizer) inside a ``memory_zone`` -> same tokens
WhitespaceTokenizer    datatrove's (spaCy ``xx`` for words)
IndicNLPTokenizer      datatrove's (indic-nlp-library trivial tokenizer)
ThaiTokenizer          datatrove's (pythainlp ``newmm-safe``)
KiwiTokenizer          datatrove's (kiwipiepy<0.22, model ``sbg``)
KhmerTokenizer         datatrove's (khmer-nltk)
LaoTokenizer           datatrove's (laonlp)
BurmeseTokenizer       datatrove's (pyidaungsu-numpy2, word mode)
StanzaTokenizer        **substituted** (stanza downloads its models at first use): spaCy with a
                       close code where spaCy has one (kmr->kmr, gd->gd, hbo->he, hyw->hy,
                       lzh->zh with jieba), else spaCy ``xx``. 98 FineWeb2 configs, 0.27% of bytes.
TibetanTokenizer       **substituted** (botok downloads a dialect pack at first use): our regex,
                       split after each tsheg (U+0F0B/U+0F0C) keeping it on the syllable; shad
                       marks (U+0F0D-U+0F14) are tokens of their own; whitespace separates.
=====================  ==========================================================================

Labels absent from datatrove's table (e.g. ``und_*``, ``zxx_*``, GlotLID labels with no FineWeb2
config) fall back by script (``SCRIPT_FALLBACK``):

======================================  ===============================================
script                                  fallback tokenizer
======================================  ===============================================
Hani, Hans, Hant                        spaCy ``zh`` (jieba)
Jpan, Hira, Kana                        spaCy ``ja`` (SudachiPy, via datatrove)
Hang, Kore                              kiwipiepy (datatrove KiwiTokenizer)
Thai                                    pythainlp (datatrove ThaiTokenizer)
Laoo                                    laonlp (datatrove LaoTokenizer)
Khmr                                    khmer-nltk (datatrove KhmerTokenizer)
Mymr                                    pyidaungsu (datatrove BurmeseTokenizer)
Tibt                                    Tibetan tsheg regex (ours)
Deva Beng Guru Gujr Orya Taml Telu      indic-nlp trivial tokenizer with hi bn pa gu or
Knda Mlym Sinh                          ta te kn ml si
every other script (Latn, Cyrl, Arab,   spaCy ``xx`` (multilingual rules), as datatrove
Grek, Ethi, Geor, Zzzz, ...)            does for its ~930 auto-assigned languages
======================================  ===============================================

API: ``load_word_tokenizer(lang_script)`` (cached) returns a :class:`WordTokenizer` with
``word_tokenize(text)``, ``sent_tokenize(text)``, ``word_tokenize_batch(texts)`` and ``name`` (the
backend, e.g. ``spacy:ru``); ``word_tokenize_batch(texts, lang_script)`` is the module-level
shortcut. ``tokenizer_name(lang_script)`` gives the backend name without loading anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

__all__ = [
    "WordTokenizer",
    "TokenizerSpec",
    "load_word_tokenizer",
    "word_tokenize",
    "word_tokenize_batch",
    "tokenizer_spec",
    "tokenizer_name",
    "SCRIPT_FALLBACK",
    "STANZA_SUBSTITUTES",
]

_LABEL_RE = re.compile(r"^[a-z]{2,3}(_[A-Z][a-z]{3})?$")

# stanza tok_code -> spaCy code (None = spaCy "xx")
STANZA_SUBSTITUTES: dict[str, str] = {"kmr": "kmr", "gd": "gd", "hbo": "he", "hyw": "hy", "lzh": "zh"}

# script -> (datatrove class name, arg)
SCRIPT_FALLBACK: dict[str, tuple[str, str]] = {
    "Hani": ("SpaCyTokenizer", "zh"),
    "Hans": ("SpaCyTokenizer", "zh"),
    "Hant": ("SpaCyTokenizer", "zh"),
    "Jpan": ("SpaCyTokenizer", "ja"),
    "Hira": ("SpaCyTokenizer", "ja"),
    "Kana": ("SpaCyTokenizer", "ja"),
    "Hang": ("KiwiTokenizer", ""),
    "Kore": ("KiwiTokenizer", ""),
    "Thai": ("ThaiTokenizer", ""),
    "Laoo": ("LaoTokenizer", ""),
    "Khmr": ("KhmerTokenizer", ""),
    "Mymr": ("BurmeseTokenizer", ""),
    "Tibt": ("TibetanRegex", ""),
    "Deva": ("IndicNLPTokenizer", "hi"),
    "Beng": ("IndicNLPTokenizer", "bn"),
    "Guru": ("IndicNLPTokenizer", "pa"),
    "Gujr": ("IndicNLPTokenizer", "gu"),
    "Orya": ("IndicNLPTokenizer", "or"),
    "Taml": ("IndicNLPTokenizer", "ta"),
    "Telu": ("IndicNLPTokenizer", "te"),
    "Knda": ("IndicNLPTokenizer", "kn"),
    "Mlym": ("IndicNLPTokenizer", "ml"),
    "Sinh": ("IndicNLPTokenizer", "si"),
}
DEFAULT_FALLBACK = ("SpaCyTokenizer", "xx")


@dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer a label gets: ``kind`` is a datatrove class name or ``TibetanRegex``."""

    kind: str
    arg: str
    source: str  # "datatrove" (table row used as is), "substitute" (stanza/botok), "script-fallback"
    datatrove_kind: str | None = None  # the class datatrove assigns, when different

    @property
    def name(self) -> str:
        if self.kind == "SpaCyTokenizer":
            return f"spacy:{self.arg}"
        if self.kind == "WhitespaceTokenizer":
            return "spacy:xx(whitespace)"
        if self.kind == "IndicNLPTokenizer":
            return f"indicnlp:{self.arg}"
        return {
            "ThaiTokenizer": "pythainlp:newmm-safe",
            "KiwiTokenizer": "kiwipiepy:sbg",
            "KhmerTokenizer": "khmer-nltk",
            "LaoTokenizer": "laonlp",
            "BurmeseTokenizer": "pyidaungsu:word",
            "TibetanRegex": "tibetan-tsheg-regex",
        }.get(self.kind, self.kind)


@lru_cache(maxsize=1)
def _assignments() -> dict[str, tuple[str, str]]:
    """datatrove's lookup keys -> (class, tok_code), built exactly like datatrove builds them."""
    from datatrove.utils._import_utils import ASSETS_PATH
    import os

    table: dict[str, tuple[str, str]] = {}
    with open(os.path.join(ASSETS_PATH, "tokenizer_assignment.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cls, arg = row["type"], row["tok_code"]
            if not cls:
                continue
            code_3, code_1, script = row["code_3"], row["code_1"], row["script"]
            k3 = f"{code_3}_{script}"
            if k3 not in table:
                table[k3] = (cls, arg)
                if row["default_script"]:
                    table[code_3] = (cls, arg)
            k1 = f"{code_1}_{script}"
            if code_1 and row["default_code_1"] and k1 not in table:
                table[k1] = (cls, arg)
                if row["default_script"]:
                    table[code_1] = (cls, arg)
    return table


def _check_label(lang_script: str) -> None:
    if not isinstance(lang_script, str) or not _LABEL_RE.match(lang_script):
        raise ValueError(
            f"malformed language label {lang_script!r}: expected iso639-3 code and ISO 15924 script, e.g. 'rus_Cyrl'"
        )


def tokenizer_spec(lang_script: str) -> TokenizerSpec:
    """Resolve the tokenizer for a label without loading it."""
    _check_label(lang_script)
    found = _assignments().get(lang_script)
    if found is not None:
        cls, arg = found
        if cls == "StanzaTokenizer":
            return TokenizerSpec("SpaCyTokenizer", STANZA_SUBSTITUTES.get(arg, "xx"), "substitute", f"stanza:{arg}")
        if cls == "TibetanTokenizer":
            return TokenizerSpec("TibetanRegex", "", "substitute", "botok")
        return TokenizerSpec(cls, arg, "datatrove")
    script = lang_script.split("_", 1)[1] if "_" in lang_script else ""
    cls, arg = SCRIPT_FALLBACK.get(script, DEFAULT_FALLBACK)
    return TokenizerSpec(cls, arg, "script-fallback")


def tokenizer_name(lang_script: str) -> str:
    return tokenizer_spec(lang_script).name


def _strip(tokens: Iterable[str]) -> list[str]:
    # datatrove's strip_strings
    out = []
    for t in tokens:
        t = t.strip()
        if t:
            out.append(t)
    return out


class WordTokenizer(ABC):
    """A loaded tokenizer. ``name`` is its backend; ``spec`` how it was chosen."""

    def __init__(self, spec: TokenizerSpec):
        self.spec = spec
        self.name = spec.name

    @abstractmethod
    def word_tokenize(self, text: str) -> list[str]:
        """The words of ``text``, as datatrove's tokenizer for this language gives them."""

    @abstractmethod
    def sent_tokenize(self, text: str) -> list[str]:
        """The sentences of ``text``."""

    def word_tokenize_batch(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.word_tokenize(t) for t in texts]

    def __repr__(self) -> str:
        return f"<WordTokenizer {self.name} ({self.spec.source})>"


class _DatatroveTokenizer(WordTokenizer):
    """Delegates to datatrove's own class (identical tokens)."""

    def __init__(self, spec: TokenizerSpec, dt_tok):
        super().__init__(spec)
        self._dt = dt_tok

    def word_tokenize(self, text: str) -> list[str]:
        if not text:
            return []
        return self._dt.word_tokenize(text)

    def sent_tokenize(self, text: str) -> list[str]:
        if not text:
            return []
        try:
            return self._dt.sent_tokenize(text)
        except ImportError:  # indic-nlp's sentence splitter needs pandas, installed --no-deps
            return _regex_sentences(text)


def _regex_sentences(text: str) -> list[str]:
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer

    return WhitespaceTokenizer().sent_tokenize(text) or _strip([text])


class _SpacyTokenizer(WordTokenizer):
    """datatrove's SpaCyTokenizer pipeline, tokenizer called directly (the sentencizer does not change
    tokens), with datatrove's Japanese 40 kB chunking and its "IS_ALPHA" workaround."""

    def __init__(self, spec: TokenizerSpec):
        super().__init__(spec)
        from datatrove.utils.word_tokenizers import SpaCyTokenizer

        self._dt = SpaCyTokenizer(spec.arg)
        self._nlp = self._dt.tokenizer  # builds spacy.blank(...) + sentencizer
        self._tok = self._nlp.tokenizer
        self._is_ja = spec.arg == "ja"
        self._chunks = _ChunkCache.for_tokenizer(self._nlp)
        # spaCy "zh" with jieba: ChineseTokenizer aligns jieba's words to the text (get_words_and_spaces,
        # quadratic in the text length) and builds a Doc; see _jieba_words for why the words are the same
        self._jieba = getattr(self._tok, "jieba_seg", None) if getattr(self._tok, "segmenter", None) == "jieba" else None

    def _tokens(self, text: str) -> list[str]:
        from datatrove.utils.word_tokenizers import chunk_text_on_bytes

        chunks = chunk_text_on_bytes(text, 40000) if self._is_ja else [text]
        self._nlp.max_length = len(text) + 10
        try:
            return _strip(t.text for c in chunks for t in self._tok(c))
        except Exception:
            if "IS_ALPHA" in text:
                return _strip(t.text for c in chunks for t in self._tok(c.replace("IS_ALPHA", "")))
            raise

    def word_tokenize(self, text: str) -> list[str]:
        if not text:
            return []
        return self.word_tokenize_batch([text])[0]

    def word_tokenize_batch(self, texts: Iterable[str]) -> list[list[str]]:
        texts = list(texts)
        if self._chunks is not None:
            return self._chunks.tokenize_batch(texts, self._tokens_full)
        if self._jieba is not None:
            out = [self._jieba_words(t) if t else [] for t in texts]
            redo = [i for i, w in enumerate(out) if w is None]
            for i, w in zip(redo, self._tokens_full([texts[i] for i in redo])):
                out[i] = w
            return out  # type: ignore[return-value]
        return self._tokens_full(texts)

    def _jieba_words(self, text: str) -> list[str] | None:
        """spaCy zh's tokens straight from jieba, or None (then the text goes through spaCy).

        ChineseTokenizer: ``words = [x for x in jieba.cut(text, cut_all=False) if x]``, then
        ``get_words_and_spaces(words, text)`` drops whitespace-only words, finds each other word at the
        first place at or after the previous one, and inserts the text between them as extra words;
        datatrove then strips and drops blank words. When the words concatenate to the text and the
        non-whitespace words contain no whitespace (both checked here; jieba guarantees them, as it
        cuts whitespace into words of its own), each word is found exactly where jieba cut it, every
        inserted gap is whitespace (dropped), and stripping changes nothing: the result is the
        non-whitespace words. ``IS_ALPHA`` texts go through spaCy (datatrove's retry)."""
        if "IS_ALPHA" in text:
            return None
        words = [x for x in self._jieba.cut(text, cut_all=False) if x]
        kept = [w for w in words if not w.isspace()]
        if "".join(words) != text or "".join(kept) != "".join(text.split()):
            return None
        return kept

    def _tokens_full(self, texts: list[str]) -> list[list[str]]:
        """The whole text through spaCy's tokenizer (one memory zone for the batch)."""
        with self._nlp.memory_zone():
            return [self._tokens(t) if t else [] for t in texts]

    def sent_tokenize(self, text: str) -> list[str]:
        if not text:
            return []
        return self._dt.sent_tokenize(text)


class _ChunkCache:
    """Word tokens of spaCy's rule-based ``Tokenizer`` per whitespace-separated chunk, cached per process.

    Why this gives exactly the tokens of ``tokenizer(text)`` followed by datatrove's ``strip_strings``:

    * ``Tokenizer._tokenize_affixes`` splits the text into maximal runs of ``str.isspace`` /
      non-space characters, i.e. the non-space runs are exactly ``text.split()``, and tokenizes each
      run on its own (prefixes, suffixes, infixes, ``token_match``, ``url_match``, per-string special
      cases, its own per-run cache): a run's tokens depend on the run's string only. Whitespace runs
      give whitespace-only tokens, which ``strip_strings`` drops; non-space runs give tokens without
      whitespace, which ``strip`` leaves as they are.
    * ``Tokenizer._apply_special_cases`` then runs a ``PhraseMatcher`` (ORTH) over the whole token
      sequence for the multi-token special-case patterns. A match inside one run is found, filtered
      and applied the same way when the run is tokenized alone (matches in different runs never
      overlap, and the longest-first filter keeps their relative order). A match *across* runs (e.g.
      the Spanish rule ``"EE. UU."``) is the only way the whole text can differ from its runs. Where
      the last token of a run and the first of the next are consecutive tokens of some pattern
      (``_pairs``), the joined tokens are compared with every such pattern at that place
      (``_crosses``; a pattern containing a whitespace token could also match across a whitespace
      token: languages with such a pattern do not get this path). A document with a match, and any document containing ``IS_ALPHA`` (datatrove's retry) or whose run raises, is
      tokenized whole, exactly as before.

    Runs are tokenized one by one inside a memory zone (no vocabulary growth); the cache maps a run to
    its tokens and is emptied when it holds ``max_entries`` runs.
    """

    def __init__(self, nlp, pairs: dict, max_entries: int = 500_000):
        self._nlp = nlp
        self._tok = nlp.tokenizer
        self._pairs = pairs
        self._ends = {a for a, _ in pairs}
        self._starts = {b for _, b in pairs}
        self._cache: dict[str, tuple] = {}
        self.max_entries = max_entries
        self.fallback_docs = 0  # documents tokenized whole (cross-run special case possible, IS_ALPHA)

    @classmethod
    def for_tokenizer(cls, nlp) -> "_ChunkCache | None":
        from spacy.tokenizer import Tokenizer

        tok = nlp.tokenizer
        if type(tok) is not Tokenizer:  # zh (jieba), ja (SudachiPy), vi (pyvi), ...: not run-compositional
            return None
        plain = Tokenizer(
            nlp.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
            infix_finditer=tok.infix_finditer, token_match=tok.token_match, url_match=tok.url_match,
        )
        pairs: dict[tuple[str, str], list[tuple[tuple[str, ...], int]]] = {}
        with nlp.memory_zone():
            for s in tok.rules or {}:
                # the strings spaCy adds to its special matcher, tokenized as spaCy does (affixes, no specials)
                if tok.faster_heuristics and not (
                    tok.find_prefix(s) or tok.find_infix(s) or tok.find_suffix(s) or " " in s
                ):
                    continue
                pattern = [t.text for t in plain(s)]
                if len(pattern) < 2:
                    continue
                if any(not p or p.strip() != p for p in pattern):
                    return None  # a pattern with whitespace in a token: keep whole-text tokenization
                for k in range(1, len(pattern)):  # (token k-1, token k) -> the pattern, k
                    pairs.setdefault((pattern[k - 1], pattern[k]), []).append((tuple(pattern), k))
        return cls(nlp, pairs)

    def _crosses(self, words: list[str], boundaries: list[int]) -> bool:
        """Does a special-case pattern match the tokens across one of these run boundaries?"""
        for b in boundaries:
            for pattern, k in self._pairs[(words[b - 1], words[b])]:
                a = b - k
                if a >= 0 and tuple(words[a : a + len(pattern)]) == pattern:
                    return True
        return False

    def _store(self, run: str, toks: list[str]) -> None:
        self._cache[run] = (tuple(toks) if len(toks) > 1 else (run,), toks[-1] in self._ends, toks[0] in self._starts)

    def _fill(self, runs: list[str], group_chars: int = 100_000) -> None:
        """Tokenize new runs, many per spaCy call: runs joined by "\n" (a whitespace token between two
        runs, which no special-case pattern contains, so no match spans two runs and each run gets the
        tokens it gets alone); a group that does not split back into its runs goes one run at a time."""
        if len(self._cache) + len(runs) > self.max_entries:
            self._cache.clear()
        tok = self._tok
        with self._nlp.memory_zone():
            i = 0
            while i < len(runs):
                j, size = i, 0
                while j < len(runs) and (j == i or size + len(runs[j]) < group_chars):
                    size += len(runs[j]) + 1
                    j += 1
                group = runs[i:j]
                i = j
                try:
                    texts = [t.text for t in tok("\n".join(group))]
                except Exception:
                    texts = None
                if texts is not None:
                    per_run: list[list[str]] = [[]]
                    for t in texts:
                        if t.isspace():
                            if per_run[-1]:
                                per_run.append([])
                        else:
                            per_run[-1].append(t)
                    if not per_run[-1]:
                        per_run.pop()
                    if len(per_run) == len(group) and all("".join(w) == r for w, r in zip(per_run, group)):
                        for r, w in zip(group, per_run):
                            self._store(r, w)
                        continue
                for r in group:  # one run per call (a run that raises stays uncached: its document goes whole)
                    try:
                        self._store(r, [t.text for t in tok(r)])
                    except Exception:
                        pass

    def tokenize_batch(self, texts: list[str], whole) -> list[list[str]]:
        cache = self._cache
        # datatrove retries a text containing "IS_ALPHA" without it: such documents go whole, untouched
        runs_per_doc = [t.split() if "IS_ALPHA" not in t else None for t in texts]
        missing = {r for runs in runs_per_doc if runs for r in runs if r not in cache}
        if missing:
            self._fill(list(missing))
            cache = self._cache
        out: list[list[str] | None] = []
        redo: list[int] = []
        pairs = self._pairs
        for i, runs in enumerate(runs_per_doc):
            if runs is None:
                redo.append(i)
                out.append(None)
                continue
            words: list[str] | None = []
            prev_risky = False
            prev_last = None
            risky: list[int] = []
            try:
                for r in runs:
                    toks, end_risky, start_risky = cache[r]
                    if prev_risky and start_risky and (prev_last, toks[0]) in pairs:
                        risky.append(len(words))
                    words += toks
                    prev_risky = end_risky
                    prev_last = toks[-1]
                if risky and self._crosses(words, risky):
                    words = None
            except KeyError:  # a run that raised (not cached)
                words = None
            if words is None:
                redo.append(i)
            out.append(words)
        if redo:
            self.fallback_docs += len(redo)
            for i, w in zip(redo, whole([texts[i] for i in redo])):
                out[i] = w
        return out  # type: ignore[return-value]


_TSHEG_RE = re.compile(
    r"[\u0F0D-\u0F14]"  # shad and other sentence/phrase marks: one token each
    r"|[^\s\u0F0B\u0F0C\u0F0D-\u0F14]+[\u0F0B\u0F0C]?"  # syllable with its tsheg
    r"|[\u0F0B\u0F0C]"  # stray tsheg
)
_TIB_SENT_RE = re.compile(r"[^\u0F0D-\u0F14]+[\u0F0D-\u0F14]+|[^\u0F0D-\u0F14]+$")


class _TibetanTokenizer(WordTokenizer):
    """Offline substitute for botok: split after each tsheg, keeping it on the syllable."""

    def word_tokenize(self, text: str) -> list[str]:
        return _TSHEG_RE.findall(text) if text else []

    def sent_tokenize(self, text: str) -> list[str]:
        return _strip(_TIB_SENT_RE.findall(text)) if text else []


@lru_cache(maxsize=None)
def _load_spec(spec: TokenizerSpec) -> WordTokenizer:
    if spec.kind == "TibetanRegex":
        return _TibetanTokenizer(spec)
    if spec.kind == "SpaCyTokenizer":
        return _SpacyTokenizer(spec)
    from datatrove.utils import word_tokenizers as dtw

    cls = getattr(dtw, spec.kind)
    return _DatatroveTokenizer(spec, cls(spec.arg) if spec.arg else cls())


def load_word_tokenizer(lang_script: str) -> WordTokenizer:
    """Tokenizer for a GlotLID-style label (``rus_Cyrl``); cached, one instance per backend.

    Accepts also datatrove's bare keys (``ru``, ``rus``). Unknown but well-formed labels fall back by
    script; malformed labels raise ``ValueError``.
    """
    return _load_spec(tokenizer_spec(lang_script))


def word_tokenize(text: str, lang_script: str) -> list[str]:
    return load_word_tokenizer(lang_script).word_tokenize(text)


def word_tokenize_batch(texts: Iterable[str], lang_script: str) -> list[list[str]]:
    """Tokenize many documents of one language (one tokenizer lookup, one spaCy memory zone)."""
    return load_word_tokenizer(lang_script).word_tokenize_batch(texts)
