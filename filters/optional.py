"""Optional filters, off by default (FineWeb2 uses neither), switchable per language.

* **C4 quality** (:func:`c4_signals`): datatrove's ``C4QualityFilter`` run as is (its own code,
  wrapped), kept as the signal column ``sig_c4_reason`` (null = passes; else ``lorem_ipsum``,
  ``curly_bracket``, ``too_few_sentences``). ``decide`` removes with ``c4:<reason>`` when the
  language's settings have ``c4=True``. C4 also *edits* the text (drops lines); as a filter here we
  only use its decision and keep the text unchanged.
* **KenLM perplexity** (:class:`KenLMScorer`, CCNet-style): one model per language (ARPA or binary,
  path or fsspec URL), perplexity of the document computed CCNet's way (per line: ``10 **
  (-log10_prob / (words + 1))`` aggregated over the document as ``10 ** (-sum log10 / sum (words+1))``
  on whitespace-split, lower-cased lines), stored as ``sig_kenlm_perplexity``;
  ``settings.kenlm_max_perplexity`` removes above a threshold (``kenlm:perplexity``), and
  :func:`perplexity_buckets` gives CCNet's head/middle/tail labels from per-language cut-offs.
  The ``kenlm`` module comes from the ``ufal-kenlm`` wheel (prebuilt, same API as ``kenlm``).
  Training (lmplz) is not provided: it is in no wheel and needs Boost development packages.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["c4_signals", "KenLMScorer", "load_kenlm", "perplexity_buckets"]


def c4_signals(texts: Sequence[str], lang_script: str = "en", **c4_kwargs) -> list[str | None]:
    """datatrove's C4QualityFilter decision per text (None = passes)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter

    # sentence splitting uses the language's tokenizer; C4's own language is English
    f = C4QualityFilter(language=_c4_language(lang_script), **c4_kwargs)
    out = []
    for i, t in enumerate(texts):
        try:
            res = f.filter(Document(text=t or "", id=str(i)))
        except Exception as e:  # noqa: BLE001 - a tokenizer that cannot load: report, do not crash
            out.append(f"error:{type(e).__name__}")
            continue
        ok, why = res if isinstance(res, tuple) else (res, None)
        out.append(None if ok else (why or "c4"))
    return out


def _c4_language(lang_script: str) -> str:
    from datatrove.utils.word_tokenizers import load_tokenizer_assignments

    return lang_script if lang_script in load_tokenizer_assignments() else "en"


def _local_path(url: str) -> str:
    if "://" not in url or url.startswith("file://"):
        return url[len("file://") :] if url.startswith("file://") else url
    import fsspec

    suffix = ".arpa" if url.endswith(".arpa") else ".bin"
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="babelsieve-kenlm-")
    os.close(fd)
    with fsspec.open(url, "rb") as src, open(path, "wb") as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
    return path


@lru_cache(maxsize=8)
def load_kenlm(url: str):
    try:
        import kenlm
    except ImportError as e:  # pragma: no cover - the dependency is declared
        raise RuntimeError("KenLM scoring needs the `kenlm` module: pip install ufal-kenlm") from e
    path = _local_path(url)
    if not os.path.exists(path):
        raise FileNotFoundError(f"KenLM model not found: {url}")
    return kenlm.Model(path)


class KenLMScorer:
    """CCNet-style document perplexity with a KenLM model."""

    def __init__(self, model_url: str):
        self.model = load_kenlm(model_url)

    def perplexity(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full(len(texts), np.nan)
        score = self.model.score
        for i, t in enumerate(texts):
            logp, length = 0.0, 0
            for line in (t or "").split("\n"):
                line = " ".join(line.lower().split())
                if not line:
                    continue
                logp += score(line)  # log10 P(line </s> | <s>)
                length += len(line.split()) + 1
            if length:
                out[i] = round(10.0 ** (-logp / length), 1)
        return out


def perplexity_buckets(ppl: np.ndarray, head: float, tail: float) -> list[str | None]:
    """CCNet buckets: ``head`` (ppl < head cut-off), ``middle``, ``tail`` (ppl >= tail cut-off)."""
    out: list[str | None] = []
    for p in ppl:
        if np.isnan(p):
            out.append(None)
        elif p < head:
            out.append("head")
        elif p < tail:
            out.append("middle")
        else:
            out.append("tail")
    return out
