"""Batched language identification with GlotLID-style labels (``iso639-3_Script``).

    >>> from babelsieve.langid import identify
    >>> p = identify(["Все люди рождаются свободными и равными."])[0]
    >>> p.label, round(p.score, 2), p.top_langs          # doctest: +SKIP
    ('rus_Cyrl', 0.99, {'rus_Cyrl': 0.99})

Backends
  * ``glotlid``: GlotLID v3 (fastText, 2102 labels) from the model cache (``babelsieve models pull glotlid``).
    Labels are the model's own. FineWeb2's per-language ``language_score`` minimums apply to it.
  * ``lid176``: fastText lid.176 (176 labels), embedded. Labels are mapped to GlotLID labels: code
    overrides and macrolanguage -> dominant individual language from the language table
    (``als->gsw, no->nob, ms->zsm, ku->kmr, zh->cmn, ar->arb`` ...), the **script is taken from the text**
    (``detect_script``); ``sh`` (Serbo-Croatian) becomes ``srp`` in Cyrillic and ``hrv`` otherwise. If the
    language is not written in the text's script according to GlotLID, the language's main label is used;
    if lid.176 knows no language at all in the text's script (e.g. Cherokee, Tifinagh), the label is
    ``und_<Script>`` with the script share as score. Probabilities of lid.176 labels that map to the same
    label are added up. lid.176 scores are *not* calibrated like GlotLID's: use ``LanguageEntry.lid176_score``.
  * default (``backend=None``): GlotLID if its model is cached, else lid.176 (with a one-time notice).

Text preparation (as datatrove's ``LanguageFilter`` does): the first ``max_chars`` characters
(default ``MAX_CHARS`` = 20,000; datatrove uses the whole text, so scores are identical for texts up to that
length) with newlines replaced by spaces. Texts without any letter of a script (empty, whitespace, digits,
punctuation, emoji, HTML tags/entities, URLs) are not sent to the model: they get ``zxx_Zzzz`` with score 1.0;
U+FFFD-only mojibake also gets ``zxx_Zzzz``.

``top_langs`` holds every label with probability >= ``threshold`` (FineWeb2 stores
``keep_top_pairs_threshold=0.01``) and always the top label.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from babelsieve.langid.script import detect_script

__all__ = [
    "Prediction",
    "LIDBackend",
    "GlotLIDBackend",
    "Lid176Backend",
    "identify",
    "get_backend",
    "default_backend_name",
    "map_lid176_label",
    "prepare_text",
    "MAX_CHARS",
    "NO_LANGUAGE",
]

log = logging.getLogger("babelsieve.langid")

MAX_CHARS = 20_000
# The compiled predictor costs ~0.9 CPU s more than the binding to start (numba + LLVM) and saves ~0.18 s
# per million characters: a process switches to it once it has sent this many characters through the
# binding, which is the break-even point ("rent until you have paid the purchase price": never more
# than 2x the cheaper choice in hindsight). Predictions are bit for bit the same on either path.
COMPILED_AFTER_CHARS = 5_000_000
NO_LANGUAGE = "zxx_Zzzz"
_BATCH = 512


@dataclass(slots=True)
class Prediction:
    label: str  # iso639-3_Script, GlotLID v3 label space
    score: float  # probability of the top label (GlotLID or lid.176, not comparable across backends)
    top_langs: dict[str, float] = field(default_factory=dict)
    backend: str = ""

    @property
    def language(self) -> str:
        return self.label.split("_")[0]

    @property
    def script(self) -> str:
        return self.label.split("_")[1]


def prepare_text(text: str, max_chars: int = MAX_CHARS) -> str:
    """What the fastText model sees: the first ``max_chars`` characters, newlines as spaces."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    return text[:max_chars].replace("\n", " ")


_MARKUP_RE = None


def _has_letters(text: str) -> bool:
    """Any letter outside HTML/XML tags, character entities and URLs?"""
    global _MARKUP_RE
    if "<" in text or "&" in text or "://" in text:
        if _MARKUP_RE is None:
            import re

            _MARKUP_RE = re.compile(r"<[^<>]{0,200}>|&#?\w{1,10};|\w+://\S*")
        text = _MARKUP_RE.sub(" ", text)
    for ch in text:
        if ch.isalpha():
            return True
    return False


def _silence_fasttext() -> None:
    import fasttext.FastText as ft

    ft.eprint = lambda *a, **k: None  # "load_model does not return WordVectorModel" warning


class LIDBackend(ABC):
    """A fastText language-ID model; subclasses map its labels to ``iso639-3_Script``."""

    name = "base"

    def __init__(self, model_path: str | os.PathLike):
        self.model_path = Path(model_path)
        self._model = None
        self._compiled = False  # not loaded yet (None: not available)
        self._chars_seen = 0  # characters predicted through the binding so far
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import fasttext

                    _silence_fasttext()
                    self._model = fasttext.load_model(str(self.model_path))
        return self._model

    @property
    def compiled(self):
        """The model as arrays for the compiled predictor (``fasttext_inference``), or ``None``.

        ``None`` when the model uses a feature the compiled predictor lacks, when numba is missing,
        or when ``BABELSIEVE_LID_INFERENCE=fasttext`` asks for fastText's own binding; predictions
        are the same either way (bit for bit), only slower through the binding.
        """
        return self._compiled_arrays()

    def _use_compiled(self, n_chars: int) -> bool:
        """Which path predicts the next chunk: ``BABELSIEVE_LID_INFERENCE`` = ``fasttext`` (always the
        binding), ``compiled`` (always the compiled predictor), ``auto``/unset (the binding for the
        first :data:`COMPILED_AFTER_CHARS` characters of the process, then the compiled predictor)."""
        mode = os.environ.get("BABELSIEVE_LID_INFERENCE", "auto").lower()
        if mode == "fasttext":
            return False
        if mode != "compiled" and self._chars_seen < COMPILED_AFTER_CHARS:
            self._chars_seen += n_chars
            return False
        if self._compiled_arrays() is None:
            return False
        self._model = None  # release the binding's copy of the model (GlotLID: ~1.6 GB)
        return True

    def _compiled_arrays(self):
        if self._compiled is False:
            with self._lock:
                if self._compiled is False:
                    self._compiled = self._load_compiled()
        return self._compiled

    def _load_compiled(self):
        if os.environ.get("BABELSIEVE_LID_INFERENCE", "").lower() == "fasttext":
            return None
        try:
            import numba  # noqa: F401

            from babelsieve.langid.fasttext_inference import UnsupportedModel, load_fasttext_arrays
        except ImportError as e:  # pragma: no cover - numba is a dependency
            log.info("compiled language-ID predictor unavailable (%s): using fastText's binding", e)
            return None
        # BABELSIEVE_LID_MATRIX=private: a per-process copy of a dense model's input matrix on huge pages
        # (faster), instead of the file's pages shared by all workers of the machine (less memory)
        private = os.environ.get("BABELSIEVE_LID_MATRIX", "shared").lower() == "private"
        try:
            return load_fasttext_arrays(self.model_path, private_matrix=private)
        except (UnsupportedModel, OSError) as e:
            log.info("%s: %s; using fastText's binding", self.model_path.name, e)
            return None

    def labels(self) -> list[str]:
        if self._compiled:  # already loaded (False: not yet, None: unavailable)
            return list(self._compiled.labels)
        return [lab.removeprefix("__label__") for lab in self.model.get_labels()]

    def _binding_predict(self, chunk: list[str], k: int, thr: float) -> tuple[list, list]:
        labels, probs = self.model.f.multilinePredict(chunk, k, thr, "strict")
        return [[lab[9:] for lab in labs] for labs in labels], probs

    def _predict_chunk(self, chunk: list[str], k: int, thr: float, compiled: bool) -> tuple[list, list, bool]:
        """fastText's ``multilinePredict(chunk, k, thr)``: label lists (without ``__label__``), probability
        lists, and whether a line with nothing above ``thr`` already got its top-1 prediction (the compiled
        path computes it in the same pass; the binding needs a second call)."""
        if not compiled:
            return (*self._binding_predict(chunk, k, thr), False)
        from babelsieve.langid import fasttext_inference

        arrays = self._compiled_arrays()
        try:
            if arrays is None:
                raise RuntimeError("disabled after an earlier failure")
            counts, ids, probs = fasttext_inference.predict_lines(arrays, chunk, k, thr, top1_fallback=True)
        except Exception as e:  # e.g. numba cannot compile on this machine: the binding gives the same answers
            if arrays is not None:
                log.warning("compiled language-ID predictor failed (%s: %s); using fastText's binding",
                            type(e).__name__, e)
                self._compiled = None
            return (*self._binding_predict(chunk, k, thr), False)
        names = arrays.labels
        # one row of ids/probs and one count per line of the chunk
        labels = [[names[j] for j in row[:c]] for row, c in zip(ids.tolist(), counts.tolist(), strict=True)]
        return labels, [p[:c] for p, c in zip(probs, counts.tolist(), strict=True)], True

    def _raw(self, texts: list[str], threshold: float) -> list[tuple[list[str], list[float]]]:
        """fastText predictions (labels without ``__label__``) for prepared, non-empty texts."""
        out = []
        thr = max(threshold, 0.0)
        for i in range(0, len(texts), _BATCH):
            # the "\n" is the end-of-sentence token that fasttext's Python predict() appends too
            chunk = [t + "\n" for t in texts[i : i + _BATCH]]
            compiled = self._use_compiled(sum(map(len, chunk)))
            all_labels, all_probs, has_top1 = self._predict_chunk(chunk, -1, thr, compiled)
            for j, (labels, probs) in enumerate(zip(all_labels, all_probs, strict=True)):
                if not len(labels) and not has_top1:  # nothing above the threshold: take the top-1
                    l1, p1 = self._binding_predict([chunk[j]], 1, 0.0)
                    labels, probs = l1[0], p1[0]
                # still nothing (fastText gives no prediction e.g. for one 20,000-letter "word"): empty
                out.append((labels, [min(float(p), 1.0) for p in probs]))
        return out

    @abstractmethod
    def predict(self, texts: list[str], threshold: float = 0.01) -> list[Prediction]:
        """Predictions for prepared texts, labels >= ``threshold`` in ``top_langs``."""

    def supported_labels(self) -> set[str]:
        """GlotLID labels this backend can output."""
        return set(self.labels())


class GlotLIDBackend(LIDBackend):
    name = "glotlid"

    def predict(self, texts: list[str], threshold: float = 0.01) -> list[Prediction]:
        preds: list[Prediction | None] = [None] * len(texts)
        todo, idx = [], []
        for i, t in enumerate(texts):
            if _has_letters(t):
                todo.append(t)
                idx.append(i)
            else:
                preds[i] = Prediction(NO_LANGUAGE, 1.0, {NO_LANGUAGE: 1.0}, self.name)
        for i, (labels, probs) in zip(idx, self._raw(todo, threshold), strict=True):  # _raw: one per text
            if not labels:
                lab = f"und_{detect_script(texts[i], 2000)[0]}"
                preds[i] = Prediction(lab, 0.0, {lab: 0.0}, self.name)
                continue
            top = {lab: p for lab, p in zip(labels, probs, strict=True) if p >= threshold}
            top.setdefault(labels[0], probs[0])
            preds[i] = Prediction(labels[0], probs[0], top, self.name)
        return preds  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _lid176_tables():
    from babelsieve.langid.language_table import load_table

    t = load_table()
    glot = set(t["languages"]) | set(t["glotlid_only"])
    codes = t["lid176"]["codes"]
    primary = t["lid176"]["primary_label"]
    # scripts in which at least one lid.176 language is written (GlotLID labels)
    targets = set(codes.values()) | {"srp", "hrv"}
    covered = {lab.split("_")[1] for lab in glot if lab.split("_")[0] in targets}
    return glot, codes, primary, covered


def map_lid176_label(code: str, script: str) -> str:
    """A lid.176 label (``sr`` or ``__label__sr``) + the text's script -> a GlotLID label."""
    glot, codes, primary, covered = _lid176_tables()
    code = code.removeprefix("__label__")
    iso3 = codes[code]
    if iso3 == "hbs":
        iso3 = "srp" if script == "Cyrl" else "hrv"
    label = f"{iso3}_{script}"
    if label in glot:
        return label
    return primary[iso3]


class Lid176Backend(LIDBackend):
    name = "lid176"

    def __init__(self, model_path: str | os.PathLike | None = None):
        if model_path is None:
            from babelsieve.langid.models import lid176_path

            model_path = lid176_path()
        super().__init__(model_path)
        self._map: dict[tuple[str, str], str] = {}

    def supported_labels(self) -> set[str]:
        glot, codes, primary, covered = _lid176_tables()
        targets = set(codes.values()) | {"srp", "hrv"}
        return {lab for lab in glot if lab.split("_")[0] in targets}

    def _label(self, code: str, script: str) -> str:
        key = (code, script)
        lab = self._map.get(key)
        if lab is None:
            lab = self._map[key] = map_lid176_label(code, script)
        return lab

    def predict(self, texts: list[str], threshold: float = 0.01) -> list[Prediction]:
        covered = _lid176_tables()[3]
        preds: list[Prediction | None] = [None] * len(texts)
        todo, idx, scripts = [], [], []
        for i, t in enumerate(texts):
            script, share = detect_script(t, 2000)
            if script in ("Zyyy", "Zzzz") or not _has_letters(t):
                preds[i] = Prediction(NO_LANGUAGE, 1.0, {NO_LANGUAGE: 1.0}, self.name)
            elif script not in covered:
                lab = f"und_{script}"
                preds[i] = Prediction(lab, share, {lab: share}, self.name)
            else:
                todo.append(t)
                idx.append(i)
                scripts.append(script)
        for i, script, (labels, probs) in zip(idx, scripts, self._raw(todo, threshold), strict=True):
            if not labels:
                lab = f"und_{script}"
                preds[i] = Prediction(lab, 0.0, {lab: 0.0}, self.name)
                continue
            merged: dict[str, float] = {}
            for code, p in zip(labels, probs, strict=True):
                lab = self._label(code, script)
                merged[lab] = merged.get(lab, 0.0) + p
            best = max(merged, key=merged.__getitem__)
            score = min(merged[best], 1.0)
            top = {lab: min(p, 1.0) for lab, p in merged.items() if p >= threshold}
            top.setdefault(best, score)
            preds[i] = Prediction(best, score, top, self.name)
        return preds  # type: ignore[return-value]


_backends: dict[str, LIDBackend] = {}
_notice_given = False


def default_backend_name() -> str:
    from babelsieve.langid.models import find_glotlid

    return "glotlid" if find_glotlid() is not None else "lid176"


def get_backend(backend: str | LIDBackend | None = None) -> LIDBackend:
    """``None`` (GlotLID if cached, else lid.176), ``"glotlid"``, ``"lid176"`` (alias ``"ft176"``) or an instance."""
    global _notice_given
    if isinstance(backend, LIDBackend):
        return backend
    name = backend or default_backend_name()
    name = {"ft176": "lid176", "fasttext": "lid176", "glotlid_v3": "glotlid"}.get(name, name)
    if name in _backends:
        return _backends[name]
    if name == "lid176":
        if backend is None and not _notice_given:
            log.warning("using embedded lid.176; run `babelsieve models pull glotlid` for GlotLID v3")
            _notice_given = True
        b: LIDBackend = Lid176Backend()
    elif name == "glotlid":
        from babelsieve.langid.models import HOW_TO_GET, ModelUnavailableError, find_glotlid

        path = find_glotlid()
        if path is None:
            raise ModelUnavailableError(HOW_TO_GET)
        b = GlotLIDBackend(path)
    else:
        raise ValueError(f"unknown language-ID backend {backend!r}: use 'glotlid' or 'lid176'")
    _backends[name] = b
    return b


def identify(
    texts: list[str],
    backend: str | LIDBackend | None = None,
    threshold: float = 0.01,
    max_chars: int = MAX_CHARS,
) -> list[Prediction]:
    """Language of each text: one :class:`Prediction` per input, in order (see module doc)."""
    if isinstance(texts, str):
        raise TypeError("identify() takes a list of texts; wrap a single text in a list")
    b = get_backend(backend)
    prepared = [prepare_text(t, max_chars) for t in texts]
    return b.predict(prepared, threshold)
