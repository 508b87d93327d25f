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
                       tokenizer directly (no sentencizer) inside a ``memory_zone`` -> same tokens.
                       Rule-based languages load without their tokenizer exceptions and add the
                       ones a text can use (``_LazySpecials``), with their big regexes from a
                       per-machine compiled-code cache (``regex_cache``); tokens per whitespace run
                       are cached (``_ChunkCache``)
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

import copy
import csv
import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import accumulate

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
    import os

    from datatrove.utils._import_utils import ASSETS_PATH

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

        self._dt = SpaCyTokenizer(spec.arg)  # its pipeline is built only if needed (sentences, non-rule tokenizers)
        # rule-based languages: the same tokenizer with its special cases added when a text can use them
        self._specials = _LazySpecials.for_language(spec.arg)
        self._nlp = self._specials.nlp if self._specials is not None else self._dt.tokenizer
        self._tok = self._nlp.tokenizer
        self._is_ja = spec.arg == "ja"
        self._chunks = _ChunkCache(self._nlp, self._specials) if self._specials is not None else None
        # spaCy "zh" with jieba: ChineseTokenizer aligns jieba's words to the text (get_words_and_spaces,
        # quadratic in the text length) and builds a Doc; see _jieba_words for why the words are the same
        is_jieba = getattr(self._tok, "segmenter", None) == "jieba"
        self._jieba = getattr(self._tok, "jieba_seg", None) if is_jieba else None
        # spaCy "ja": JapaneseTokenizer reads five attributes of every SudachiPy morpheme, aligns the words
        # with text[pos:].index (quadratic) and tags the Doc; see _sudachi_words for why the words are the same
        self._sudachi = getattr(self._tok, "tokenizer", None) if self._is_ja else None

    def _tokens(self, text: str, specials_added: bool = False) -> list[str]:
        from datatrove.utils.word_tokenizers import chunk_text_on_bytes

        if self._specials is not None and not specials_added:
            self._specials.add_for(text)
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
        if self._jieba is not None or self._sudachi is not None:
            direct = self._jieba_words if self._jieba is not None else self._sudachi_words
            out = [direct(t) if t else [] for t in texts]
            redo = [i for i, w in enumerate(out) if w is None]
            for i, w in zip(redo, self._tokens_full([texts[i] for i in redo]), strict=True):  # one per text
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

    def _sudachi_words(self, text: str) -> list[str] | None:
        """spaCy ja's tokens straight from SudachiPy, or None (then the text goes through spaCy).

        Per 40 kB chunk (datatrove's), JapaneseTokenizer keeps the morphemes with a non-empty surface, drops
        runs of whitespace morphemes after the first, then ``get_dtokens_and_spaces`` skips whitespace words,
        finds each other word at the first place at or after the previous one (``text[pos:].index``) and
        inserts the text between them as gap words; datatrove strips and drops blank words. When the surfaces
        concatenate to the chunk and no non-whitespace surface begins or ends with whitespace (checked here;
        Sudachi's dictionary has words with inner spaces, e.g. "Trend Micro", which stay one token), a word
        cannot match inside the whitespace before it, so it is found where Sudachi cut it, every gap is
        whitespace (dropped) and stripping changes nothing: the result is the non-whitespace surfaces.
        ``IS_ALPHA`` texts and Sudachi errors go through spaCy (datatrove's retry / error)."""
        from datatrove.utils.word_tokenizers import chunk_text_on_bytes

        if "IS_ALPHA" in text:
            return None
        out: list[str] = []
        try:
            for chunk in chunk_text_on_bytes(text, 40000):
                surfaces = [m.surface() for m in self._sudachi.tokenize(chunk)]
                if "".join(surfaces) != chunk:
                    return None
                for w in surfaces:
                    if w and not w.isspace():
                        if w[0].isspace() or w[-1].isspace():
                            return None
                        out.append(w)
        except Exception:
            return None
        return out

    def _tokens_full(self, texts: list[str]) -> list[list[str]]:
        """The whole text through spaCy's tokenizer (one memory zone for the batch)."""
        if self._specials is not None:  # outside the memory zone: special cases are permanent
            for t in texts:
                self._specials.add_for(t)
        with self._nlp.memory_zone():
            return [self._tokens(t, specials_added=True) if t else [] for t in texts]

    def sent_tokenize(self, text: str) -> list[str]:
        if not text:
            return []
        return self._dt.sent_tokenize(text)


def _lazy_tokenizer_factory(nlp):
    """spaCy's own ``spacy.Tokenizer.v1`` factory, given the language's defaults without special cases."""
    from types import SimpleNamespace

    from spacy.language import create_tokenizer

    defaults = type("Defaults", (nlp.Defaults,), {"tokenizer_exceptions": {}})
    return create_tokenizer()(SimpleNamespace(vocab=nlp.vocab, Defaults=defaults))


class _LazySpecials:
    """spaCy's rule-based tokenizer whose special cases (tokenizer exceptions) are added when a text could use one.

    ``spacy.blank("id")`` adds ~16,000 exceptions one by one at load (2.6-4.4 s; each one tokenized and added to a
    ``PhraseMatcher``), although a page uses a handful. Here the tokenizer starts with none, and before a text is
    tokenized every exception whose string, whitespace removed, occurs in the text with whitespace removed is added
    (one Aho-Corasick pass). Why the tokens are those of the fully loaded tokenizer:

    * A special case acts in two ways. (1) Its string is looked up for a whitespace-free substring of the text (a
      run, or what is left of it while prefixes and suffixes are split off): that substring equals the string, so
      the string occurs in the text. (2) Its ``PhraseMatcher`` pattern (the string tokenized by the affix rules)
      matches a sequence of non-whitespace tokens (patterns with a whitespace token are refused in
      ``for_language``); the matched tokens concatenate to the pattern's tokens concatenated, i.e. the string with
      whitespace removed, and consecutive tokens are separated by nothing or whitespace, so that string occurs in
      the text with whitespace removed. A matched span whose text is not a rule changes nothing itself but can
      stop an overlapping match from applying; it is added too, by the same argument.
    * So every special case that can act on the text is present; the others cannot act. Matches are filtered and
      applied by span and string, independent of the order in which cases were added; each ``add_special_case``
      empties spaCy's cache, so no result computed before an addition is reused after it.

    Cases are added only outside a memory zone (their lexemes must be permanent).
    """

    def __init__(self, nlp, rules: dict):
        import ahocorasick
        from spacy.tokenizer import Tokenizer

        self.nlp = nlp
        self.tok = nlp.tokenizer
        self.rules = rules
        tok = self.tok
        self.plain = Tokenizer(  # the affix rules alone: the patterns spaCy gives its special matcher
            nlp.vocab, rules={}, prefix_search=tok.prefix_search, suffix_search=tok.suffix_search,
            infix_finditer=tok.infix_finditer, token_match=tok.token_match, url_match=tok.url_match,
        )
        groups: dict[str, list[str]] = {}
        for s in sorted(rules):
            groups.setdefault("".join(s.split()), []).append(s)
        self.groups = list(groups.values())
        self.key_len = [len(k) for k in groups]
        self.automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for i, key in enumerate(groups):
            if key:
                self.automaton.add_word(key, i)
        self.automaton.make_automaton()
        self.added: set[int] = set()
        self._patterns: dict[str, tuple[str, ...]] = {}
        self._cut_cache: dict[str, frozenset[int] | None] = {}
        # whitespace-only rules (" ", "\n", ...) have no string to find: always present, as in spaCy
        self._add({i for i, n in enumerate(self.key_len) if n == 0})

    @classmethod
    def for_language(cls, code: str) -> _LazySpecials | None:
        """For a language whose spaCy tokenizer is the rule-based ``Tokenizer``; else None."""
        import spacy

        from .regex_cache import regex_code_cache

        try:
            # the language's big regexes (affixes; French TOKEN_MATCH at import) from the per-machine cache
            with regex_code_cache(f"spacy{spacy.__version__}-{code}"):
                lang_cls = spacy.util.get_lang_class(code)
                if lang_cls.default_config["nlp"]["tokenizer"].get("@tokenizers") != "spacy.Tokenizer.v1":
                    return None  # zh (jieba), ja (SudachiPy), vi (pyvi), ...
                # the blank pipeline spacy.blank(code) builds (same vocabulary and tokenizer factory), without
                # resolving a config
                nlp = lang_cls(create_tokenizer=_lazy_tokenizer_factory)
        except Exception:
            return None
        # Tokens never depend on lexical attributes (the tokenizer reads strings; the special-case matcher
        # matches ORTH), and this pipeline only tokenizes: skip the ~20 Python attribute functions spaCy
        # runs for every new string (German pages, cold cache: 1.7x faster). Sentences use datatrove's own.
        nlp.vocab.lex_attr_getters = {}
        lazy = cls(nlp, dict(lang_cls.Defaults.tokenizer_exceptions or {}))
        for s in lazy.rules:  # a pattern with a whitespace token could match across whitespace: not this path
            if any(c.isspace() for c in s) and s.strip() and lazy.in_matcher(s):
                p = lazy.pattern(s)
                if len(p) > 1 and any(not t or t.strip() != t for t in p):
                    return None
        return lazy

    def pattern(self, s: str) -> tuple[str, ...]:
        """The special matcher's pattern for rule ``s`` (its tokens under the affix rules)."""
        p = self._patterns.get(s)
        if p is None:
            with self.nlp.memory_zone():
                p = self._patterns[s] = tuple(t.text for t in self.plain(s))
        return p

    def in_matcher(self, s: str) -> bool:
        tok = self.tok
        return bool(
            not tok.faster_heuristics or tok.find_prefix(s) or tok.find_infix(s) or tok.find_suffix(s) or " " in s
        )

    def add_for(self, text: str) -> None:
        """Add the special cases that can act on ``text`` (see the class docstring), or on the text datatrove
        retries when spaCy fails on ``IS_ALPHA``."""
        found = {i for _, i in self.automaton.iter("".join(text.split()))}
        if "IS_ALPHA" in text:
            found |= {i for _, i in self.automaton.iter("".join(text.replace("IS_ALPHA", "").split()))}
        self._add(found)

    def _add(self, found: set[int]) -> None:
        new = found - self.added
        if not new:
            return
        if self.nlp.vocab.in_memory_zone:
            raise RuntimeError("special cases must be added outside a spaCy memory zone")
        for i in sorted(new):
            for s in self.groups[i]:
                self.tok.add_special_case(s, self.rules[s])
        self.added |= new

    def crosses(self, runs: list[str], token_ends) -> bool:
        """Could a special-case pattern match the text's tokens across two of its runs?

        spaCy's special matcher runs on the tokens before any matcher rule is applied. A match across a run
        boundary spells the rule's string, whitespace removed, over that boundary in the joined runs; every
        boundary it covers falls between two of the pattern's tokens (tokens never span runs), and where it starts
        or ends inside a run, a token of that run starts or ends. ``token_ends(k)`` gives the token end offsets of
        run ``k`` and the spans (start, end) inside it where a multi-token matcher rule could have applied: only
        strictly inside such a span can the tokens the matcher saw have other boundaries, so an offset there is
        not checked. An occurrence that passes these checks counts (the tokens between are not compared): the
        caller then tokenizes the whole text."""
        joined = "".join(runs)
        hits = [(end, i) for end, i in self.automaton.iter(joined)]
        if not hits:
            return False
        run_starts = list(accumulate((len(r) for r in runs[:-1]), initial=0))
        for end, i in hits:
            start = end - self.key_len[i] + 1
            lo, hi = bisect_right(run_starts, start), bisect_right(run_starts, end)
            if lo == hi:
                continue  # inside one run
            found = False
            for s in self.groups[i]:
                cuts = self._cuts(s)
                if cuts is not None and all(b - start in cuts for b in run_starts[lo:hi]):
                    found = True
                    break
            if not found:
                continue
            first, last = lo - 1, hi - 1
            off = start - run_starts[first]
            if off:  # the match starts inside run `first`: a token must start there
                ends, spans = token_ends(first)
                if off not in ends and not any(a < off < b for a, b in spans):
                    continue
            off = end + 1 - run_starts[last]
            if off < len(runs[last]):  # it ends inside run `last`: a token must end there
                ends, spans = token_ends(last)
                if off not in ends and not any(a < off < b for a, b in spans):
                    continue
            return True
        return False

    def prepare_runs(self, runs: list[str]) -> dict[int, list[tuple[int, int]]]:
        """Before whitespace-free runs are tokenized one by one (no case can span two of them): add the special
        cases that can act on them (``add_for``), and return run index -> the spans (start, end offsets in the run)
        where a multi-token matcher rule could apply inside that run (there its tokens may differ from the tokens
        the matcher saw). One automaton pass serves both."""
        joined = "\n".join(runs)
        hits = [(end, i) for end, i in self.automaton.iter(joined)]
        out: dict[int, list[tuple[int, int]]] = {}
        if not hits:
            return out
        self._add({i for _, i in hits})
        run_starts = list(accumulate((len(r) + 1 for r in runs[:-1]), initial=0))
        for end, i in hits:
            if any(self._cuts(s) is not None for s in self.groups[i]):
                k = bisect_right(run_starts, end) - 1
                b = end + 1 - run_starts[k]
                out.setdefault(k, []).append((b - self.key_len[i], b))
        return out

    def _cuts(self, s: str) -> frozenset[int] | None:
        """Offsets between the tokens of rule ``s``'s matcher pattern (in its string without whitespace), or None
        when the rule is not in the special matcher or its pattern is one token."""
        cuts = self._cut_cache.get(s, False)
        if cuts is False:
            cuts = None
            if self.in_matcher(s):
                p = self.pattern(s)
                if len(p) > 1:
                    ends = list(accumulate(len(t) for t in p))
                    # a pattern that does not spell the string (never seen) counts as matching anywhere
                    cuts = frozenset(ends[:-1]) if "".join(p) == "".join(s.split()) else frozenset(range(ends[-1] + 1))
            self._cut_cache[s] = cuts
        return cuts


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
      the Spanish rule ``"EE. UU."``) is the only way the whole text can differ from its runs:
      ``_LazySpecials.crosses`` finds every place where one could (patterns containing a whitespace
      token, which could also match across a whitespace token, make ``for_language`` refuse the
      language). A document with such a match, and any document containing ``IS_ALPHA``
      (datatrove's retry) or whose run raises, is tokenized whole, exactly as before.

    Runs are tokenized inside a memory zone (no vocabulary growth); the cache maps a run to
    its tokens and is emptied when it holds ``max_entries`` runs.
    """

    def __init__(self, nlp, specials: _LazySpecials, max_entries: int = 500_000):
        self._nlp = nlp
        self._tok = nlp.tokenizer
        self._specials = specials
        self._cache: dict[str, tuple] = {}
        self._matched: dict[str, list] = {}  # cached run -> spans where a multi-token special case could apply
        self.max_entries = max_entries
        self.fallback_docs = 0  # documents tokenized whole (cross-run special case possible, IS_ALPHA)

    def _fill(self, runs: list[str], group_chars: int = 100_000) -> None:
        """Tokenize new runs, many per spaCy call: runs joined by "\n" (a whitespace token between two
        runs, which no special-case pattern contains, so no match spans two runs and each run gets the
        tokens it gets alone); a group that does not split back into its runs goes one run at a time."""
        if len(self._cache) + len(runs) > self.max_entries:
            self._cache.clear()
            self._matched.clear()
        self._matched.update((runs[k], spans) for k, spans in self._specials.prepare_runs(runs).items())
        cache = self._cache
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
                    # lengths compared first: strict=True never raises here
                    if len(per_run) == len(group) and all(
                        "".join(w) == r for w, r in zip(per_run, group, strict=True)
                    ):
                        for r, w in zip(group, per_run, strict=True):
                            cache[r] = tuple(w)
                        continue
                for r in group:  # one run per call (a run that raises stays uncached: its document goes whole)
                    try:
                        cache[r] = tuple(t.text for t in tok(r))
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
        crosses = self._specials.crosses
        matched = self._matched

        def token_ends(runs: list[str], k: int) -> tuple[set[int], list]:
            return set(accumulate(len(t) for t in cache[runs[k]])), matched.get(runs[k], ())

        for i, runs in enumerate(runs_per_doc):
            words: list[str] | None = None
            if runs is not None:
                try:
                    words = [w for r in runs for w in cache[r]]
                except KeyError:  # a run that raised (not cached)
                    words = None
                if words is not None and len(runs) > 1 and crosses(runs, lambda k, runs=runs: token_ends(runs, k)):
                    words = None
            if words is None:
                redo.append(i)
            out.append(words)
        if redo:
            self.fallback_docs += len(redo)
            for i, w in zip(redo, whole([texts[i] for i in redo]), strict=True):  # one token list per text
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


@cache
def _load_backend(kind: str, arg: str) -> WordTokenizer:
    spec = TokenizerSpec(kind, arg, "datatrove")
    if kind == "TibetanRegex":
        return _TibetanTokenizer(spec)
    if kind == "SpaCyTokenizer":
        return _SpacyTokenizer(spec)
    from datatrove.utils import word_tokenizers as dtw

    cls = getattr(dtw, kind)
    return _DatatroveTokenizer(spec, cls(arg) if arg else cls())


@cache
def _load_spec(spec: TokenizerSpec) -> WordTokenizer:
    # one backend per (class, code): labels reaching spaCy "xx" through datatrove's table, a stanza substitute or
    # the script fallback share its tokenizer (and its run cache); each label keeps its own spec and name
    backend = _load_backend(spec.kind, spec.arg)
    if backend.spec == spec:
        return backend
    view = copy.copy(backend)
    view.spec, view.name = spec, spec.name
    return view


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
