"""Run FineWeb2's per-language filters on a batch of documents: signals, then decisions.

Engine-free helpers used by the pipeline's filter stage and by ``babelsieve refilter``; also the
one-call API for a user:

    >>> from babelsieve.filters.apply import filter_texts
    >>> reasons = filter_texts(["..."], "rus_Cyrl")          # None = keep, else "<filter>:<reason>"
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from babelsieve.filters.decisions import decide
from babelsieve.filters.settings import FilterSettings, language_settings
from babelsieve.filters.signals import compute_signal_arrays

__all__ = ["resolve_settings", "signals_for", "filter_texts", "stats_rows", "STATS_SCHEMA"]

STATS_SCHEMA = pa.schema(
    [
        pa.field("task_id", pa.string()),
        pa.field("lang_script", pa.string()),
        pa.field("level", pa.string()),  # total | filter | reason | cluster_size
        pa.field("name", pa.string()),  # filter / reason name; null for total and cluster_size rows
        pa.field("minhash_cluster_size", pa.int64()),  # for level=cluster_size
        pa.field("docs_in", pa.int64()),
        pa.field("removed", pa.int64()),
        pa.field("removal_rate", pa.float64()),
    ]
)


def resolve_settings(
    lang_script: str, overrides: dict[str, Any] | None = None, **switches: Any
) -> tuple[FilterSettings, str | None]:
    """Settings of a label; a malformed label (not ``xxx_Yyyy``) gets the global defaults with a note.

    Returns ``(settings, note)``; ``note`` says what fallback was used (None when none).
    """
    note = None
    try:
        s = language_settings(lang_script)
    except ValueError:
        s = language_settings("und_Zzzz")
        note = f"malformed language label {lang_script!r}: global default thresholds, spaCy 'xx' tokenizer"
    if s.notes and note is None:
        note = "; ".join(s.notes)
    import dataclasses

    s = dataclasses.replace(s, lang_script=lang_script, **{k: v for k, v in switches.items() if v is not None})
    return s.with_overrides(overrides), note


def _tokenizer_label(lang_script: str) -> str:
    from babelsieve.langid.word_tokenizers import tokenizer_spec

    try:
        tokenizer_spec(lang_script)
        return lang_script
    except ValueError:
        return "und_Zzzz"


def signals_for(texts: Sequence[str], settings: FilterSettings) -> dict[str, np.ndarray]:
    """All signal columns for these settings (FineWeb2's n-gram sizes plus any extra ones they use)."""
    from babelsieve.filters.signals import DUP_N_GRAMS, TOP_N_GRAMS

    top_ns = sorted(set(TOP_N_GRAMS) | {n for n, _ in settings.top_n_grams})
    dup_ns = sorted(set(DUP_N_GRAMS) | {n for n, _ in settings.dup_n_grams})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = compute_signal_arrays(
            list(texts),
            _tokenizer_label(settings.lang_script),
            stopwords=settings.stopwords,
            top_ns=top_ns,
            dup_ns=dup_ns,
        )
    if settings.c4:
        from babelsieve.filters.optional import c4_signals

        arrays["sig_c4_reason"] = np.array(c4_signals(texts, settings.lang_script), dtype=object)
    if settings.kenlm_model:
        from babelsieve.filters.optional import KenLMScorer

        arrays["sig_kenlm_perplexity"] = KenLMScorer(settings.kenlm_model).perplexity(texts)
    return arrays


def filter_texts(texts: Sequence[str], lang_script: str, overrides: dict[str, Any] | None = None) -> list[str | None]:
    """FineWeb2's decision for each text of one language (None = keep)."""
    settings, _ = resolve_settings(lang_script, overrides)
    return decide(signals_for(texts, settings), settings).to_pylist()


def stats_rows(
    task_id: str, lang_script: str, reasons: Sequence[str | None], cluster_sizes: Sequence[int | None] | None
) -> list[dict]:
    """Per-language statistics: totals, per filter, per reason, and per minhash_cluster_size."""
    n = len(reasons)
    removed = [r for r in reasons if r is not None]
    rows = [dict(level="total", name=None, minhash_cluster_size=None, docs_in=n, removed=len(removed))]
    by_filter: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for r in removed:
        by_reason[r] = by_reason.get(r, 0) + 1
        f = r.split(":", 1)[0]
        by_filter[f] = by_filter.get(f, 0) + 1
    # a filter sees only what earlier filters kept: docs_in per filter follows FineWeb2's order
    remaining = n
    for f in ("gopher_rep", "fineweb_qual", "gopher_qual", "c4", "kenlm"):
        k = by_filter.pop(f, 0)
        if k or f in ("gopher_rep", "fineweb_qual", "gopher_qual"):
            rows.append(dict(level="filter", name=f, minhash_cluster_size=None, docs_in=remaining, removed=k))
        remaining -= k
    for f, k in sorted(by_filter.items()):
        rows.append(dict(level="filter", name=f, minhash_cluster_size=None, docs_in=n, removed=k))
    for r, k in sorted(by_reason.items()):
        rows.append(dict(level="reason", name=r, minhash_cluster_size=None, docs_in=n, removed=k))
    if cluster_sizes is not None:
        agg: dict[int, list[int]] = {}
        for cs, r in zip(cluster_sizes, reasons, strict=True):  # both one entry per document
            if cs is None:
                continue
            a = agg.setdefault(int(cs), [0, 0])
            a[0] += 1
            a[1] += r is not None
        for cs in sorted(agg):
            rows.append(
                dict(level="cluster_size", name=None, minhash_cluster_size=cs, docs_in=agg[cs][0], removed=agg[cs][1])
            )
    for row in rows:
        row["task_id"] = task_id
        row["lang_script"] = lang_script
        row["removal_rate"] = row["removed"] / row["docs_in"] if row["docs_in"] else 0.0
    return rows


def stats_table(rows: list[dict]) -> pa.Table:
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in STATS_SCHEMA}, schema=STATS_SCHEMA)
