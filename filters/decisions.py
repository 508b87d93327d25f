"""Decisions: thresholds applied to signal columns (Dolma-style "mixer"), vectorised and cheap.

``decide(signals, settings)`` returns one removal reason per document (``None`` = keep), applying
datatrove 0.10.1's three FineWeb2 filters in FineWeb2's order and, inside each filter, datatrove's
order of checks (the first failing check names the reason). Reasons are
``<filter>:<datatrove reason>``:

* ``gopher_rep:`` ``empty``, ``dup_para_frac``, ``dup_para_char_frac``, ``dup_line_frac``,
  ``dup_line_char_frac``, ``top_{n}_gram``, ``duplicated_{n}_n_grams``
* ``fineweb_qual:`` ``empty``, ``line_punct_ratio``, ``short_line_ratio``, ``char_dup_ratio``, ``list_ratio``
* ``gopher_qual:`` ``gopher_short_doc``, ``gopher_long_doc``, ``gopher_below_avg_threshold``,
  ``gopher_above_avg_threshold``, ``gopher_too_many_hashes``, ``gopher_too_many_ellipsis``,
  ``gopher_too_many_bullets``, ``gopher_too_many_end_ellipsis``, ``gopher_below_alpha_threshold``,
  ``gopher_enough_stop_words``
* optional: ``c4:<reason>`` and ``kenlm:perplexity`` (from ``sig_c4_reason`` / ``sig_kenlm_perplexity``
  when those columns exist and the settings enable them).

Rules follow datatrove exactly: ``if self.x and value > self.x`` (a threshold of 0/None is off) for
the Gopher filters; no such rule in FineWebQualityFilter (``line_punct_thr`` -1 or 0 never fires);
``top_n_grams`` is skipped when the document has no n-gram (NaN signal); NaN never fires.
Divergence from datatrove on inputs where datatrove raises ``ZeroDivisionError`` (text with non-blank
lines but no word tokens, with a ratio threshold reached): the ratio is +inf (or NaN for 0/0) here
and the document is removed by the rule that would have divided by zero (``list_ratio``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from babelsieve.filters.settings import FilterSettings

__all__ = ["decide", "decide_arrays", "MissingSignalError", "FILTER_NAMES"]

FILTER_NAMES = {
    "gopher_rep": "GopherRepetitionFilter",
    "fineweb_qual": "FineWebQualityFilter",
    "gopher_qual": "GopherQualityFilter",
}


class MissingSignalError(KeyError):
    """A setting needs a signal column that was not computed (e.g. top_5_gram): recompute signals."""


def _col(signals: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        v = signals[name]
    except KeyError:
        raise MissingSignalError(
            f"signal column {name!r} is missing: the settings need it; recompute signals with it "
            "(compute_signals(top_ns=..., dup_ns=...))"
        ) from None
    if isinstance(v, (pa.ChunkedArray, pa.Array)):
        v = v.to_numpy(zero_copy_only=False)
    return np.asarray(v, dtype=np.float64)


def _as_mapping(signals: Any) -> Mapping[str, Any]:
    if isinstance(signals, pa.Table):
        return {n: signals.column(n) for n in signals.column_names}
    return signals


def _num_rows(signals: Mapping[str, Any]) -> int:
    for v in signals.values():
        return len(v)
    return 0


def decide_arrays(signals: Any, settings: FilterSettings) -> np.ndarray:
    """Removal reason per row as a numpy object array (None = keep)."""
    sig = _as_mapping(signals)
    n = _num_rows(sig)
    reasons = np.full(n, None, dtype=object)
    open_ = np.ones(n, dtype=bool)  # rows not yet removed

    def check(cond: np.ndarray, reason: str) -> None:
        nonlocal open_
        hit = open_ & cond
        if hit.any():
            reasons[hit] = reason
            open_ = open_ & ~hit

    s = settings
    with np.errstate(invalid="ignore"):
        if s.gopher_repetition:
            p = "gopher_rep:"
            check(_col(sig, "sig_text_len") == 0, p + "empty")
            if s.dup_para_frac:
                check(_col(sig, "sig_para_dup_frac") > s.dup_para_frac, p + "dup_para_frac")
            if s.dup_para_char_frac:
                check(_col(sig, "sig_para_dup_char_frac") > s.dup_para_char_frac, p + "dup_para_char_frac")
            if s.dup_line_frac:
                check(_col(sig, "sig_line_dup_frac") > s.dup_line_frac, p + "dup_line_frac")
            if s.dup_line_char_frac:
                check(_col(sig, "sig_line_dup_char_frac") > s.dup_line_char_frac, p + "dup_line_char_frac")
            for k, frac in s.top_n_grams:
                check(_col(sig, f"sig_top_{k}gram_char_frac") > frac, f"{p}top_{k}_gram")
            for k, frac in s.dup_n_grams:
                check(_col(sig, f"sig_dup_{k}gram_char_frac") > frac, f"{p}duplicated_{k}_n_grams")
        if s.fineweb_quality:
            p = "fineweb_qual:"
            check(_col(sig, "sig_nonempty_lines") == 0, p + "empty")
            r = _col(sig, "sig_line_punct_frac")
            cond = r < s.line_punct_thr
            if s.line_punct_exclude_zero:
                cond &= ~(r == 0)
            check(cond, p + "line_punct_ratio")
            check(_col(sig, "sig_short_line_frac") > s.short_line_thr, p + "short_line_ratio")
            check(_col(sig, "sig_line_char_dup_frac") > s.char_duplicates_ratio, p + "char_dup_ratio")
            nl = _col(sig, "sig_newline_word_ratio")
            check((nl > s.new_line_ratio) | np.isnan(nl), p + "list_ratio")
        if s.gopher_quality:
            p = "gopher_qual:"
            nsw = _col(sig, "sig_n_non_symbol_words")
            if s.min_doc_words:
                check(nsw < s.min_doc_words, p + "gopher_short_doc")
            if s.max_doc_words:
                check(nsw > s.max_doc_words, p + "gopher_long_doc")
            avg = _col(sig, "sig_avg_word_len")
            if s.min_avg_word_length:
                check(avg < s.min_avg_word_length, p + "gopher_below_avg_threshold")
            if s.max_avg_word_length:
                check(avg > s.max_avg_word_length, p + "gopher_above_avg_threshold")
            if s.max_symbol_word_ratio:
                check(_col(sig, "sig_hash_word_ratio") > s.max_symbol_word_ratio, p + "gopher_too_many_hashes")
                check(_col(sig, "sig_ellipsis_word_ratio") > s.max_symbol_word_ratio, p + "gopher_too_many_ellipsis")
            if s.max_bullet_lines_ratio:
                check(
                    _col(sig, "sig_bullet_line_frac") > s.max_bullet_lines_ratio, p + "gopher_too_many_bullets"
                )
            if s.max_ellipsis_lines_ratio:
                check(
                    _col(sig, "sig_ellipsis_line_frac") > s.max_ellipsis_lines_ratio,
                    p + "gopher_too_many_end_ellipsis",
                )
            if s.max_non_alpha_words_ratio:
                check(
                    _col(sig, "sig_alpha_word_frac") < s.max_non_alpha_words_ratio,
                    p + "gopher_below_alpha_threshold",
                )
            if s.min_stop_words:
                check(_col(sig, "sig_stopword_count") < s.min_stop_words, p + "gopher_enough_stop_words")
        if s.c4 and "sig_c4_reason" in sig:
            v = sig["sig_c4_reason"]
            v = v.to_pylist() if hasattr(v, "to_pylist") else list(v)
            c4 = np.array([x is not None for x in v], dtype=bool)
            if c4.any():
                hit = open_ & c4
                for i in np.flatnonzero(hit):
                    reasons[i] = "c4:" + v[i]
                open_ &= ~hit
        if s.kenlm_max_perplexity is not None and "sig_kenlm_perplexity" in sig:
            check(_col(sig, "sig_kenlm_perplexity") > s.kenlm_max_perplexity, "kenlm:perplexity")
    return reasons


def decide(signals: Any, settings: FilterSettings) -> pa.Array:
    """Removal reason per row (``pa.string()``, null = keep). ``signals``: a Table or dict of arrays."""
    return pa.array(decide_arrays(signals, settings).tolist(), type=pa.string())
