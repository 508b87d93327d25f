"""Filter settings per language: FineWeb2's per-language values plus FineWeb2's fixed settings.

``language_settings(lang_script, overrides)`` builds a :class:`FilterSettings` from the language
table (``babelsieve.langid.language_table.get_language``: the values of FineWeb-2's
``configs/{lang_script}.yml``) and the settings that ``fineweb-2-pipeline.py`` fixes for every
language:

* GopherRepetitionFilter: ``dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0`` (off),
  ``dup_line_frac``, ``top_n_grams``, ``dup_n_grams`` from the table;
* FineWebQualityFilter: ``short_line_thr=999`` (off), ``char_duplicates_ratio=0.1``,
  ``line_punct_exclude_zero=False``, ``short_line_length=30``; ``line_punct_thr``, ``new_line_ratio``
  from the table;
* GopherQualityFilter: datatrove defaults ``min_doc_words=50, max_doc_words=100000,
  max_symbol_word_ratio=0.1, max_bullet_lines_ratio=0.9, max_ellipsis_lines_ratio=0.3``,
  ``min_stop_words=2``; ``min/max_avg_word_length``, ``max_non_alpha_words_ratio``, ``stopwords`` from
  the table;
* no C4, no KenLM (both optional, off by default).

A language missing from the table gets the table's script defaults (``has_fineweb2_config=False``,
empty stopword list, so the stopword rule is skipped: ``min_stop_words`` is set to 0 and a warning
is recorded in ``notes``). Overrides (``config.filter.overrides[lang]``) replace any field by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FilterSettings", "language_settings", "settings_from_fineweb2_yaml", "SETTING_NAMES"]


def _pairs(v: Any) -> tuple[tuple[int, float], ...]:
    return tuple((int(n), float(f) if not isinstance(f, int) else f) for n, f in (v or ()))


@dataclass(frozen=True)
class FilterSettings:
    lang_script: str = ""
    # which filters run (FineWeb2: the three below)
    gopher_repetition: bool = True
    fineweb_quality: bool = True
    gopher_quality: bool = True
    # GopherRepetitionFilter (None/0 = off, as datatrove's `if self.x and ...`)
    dup_para_frac: float | None = 0
    dup_para_char_frac: float | None = 0
    dup_line_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    # FineWebQualityFilter (no falsy rule: a threshold <= 0 / >= 1 simply never fires)
    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 999
    char_duplicates_ratio: float = 0.1
    new_line_ratio: float = 0.3
    # GopherQualityFilter (None/0 = off)
    min_doc_words: int | None = 50
    max_doc_words: int | None = 100000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    max_non_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stopwords: tuple[str, ...] = ()
    # optional filters
    c4: bool = False
    kenlm_model: str | None = None
    kenlm_max_perplexity: float | None = None
    has_fineweb2_config: bool = True
    notes: tuple[str, ...] = field(default=(), compare=False)

    def with_overrides(self, overrides: dict[str, Any] | None) -> FilterSettings:
        if not overrides:
            return self
        names = {f.name for f in dataclasses.fields(self)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(f"unknown filter setting(s) {bad} for {self.lang_script}; known: {sorted(SETTING_NAMES)}")
        fixed = dict(overrides)
        for k in ("top_n_grams", "dup_n_grams"):
            if k in fixed:
                fixed[k] = _pairs(fixed[k])
        if "stopwords" in fixed:
            fixed["stopwords"] = tuple(fixed["stopwords"] or ())
        return dataclasses.replace(self, **fixed)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["top_n_grams"] = [list(x) for x in self.top_n_grams]
        d["dup_n_grams"] = [list(x) for x in self.dup_n_grams]
        d["stopwords"] = list(self.stopwords)
        d["notes"] = list(self.notes)
        return d


SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(FilterSettings)) - {"notes", "lang_script"}


def settings_from_fineweb2_yaml(cfg: dict[str, Any], lang_script: str = "") -> FilterSettings:
    """FineWeb2 settings from one of FineWeb-2's ``configs/*.yml`` mappings (as fineweb-2-pipeline.py)."""
    return FilterSettings(
        lang_script=lang_script,
        dup_line_frac=cfg["dup_line_frac"],
        top_n_grams=_pairs(cfg["top_n_grams"]),
        dup_n_grams=_pairs(cfg["dup_n_grams"]),
        line_punct_thr=cfg["line_punct_thr"],
        new_line_ratio=cfg["new_line_ratio"],
        min_avg_word_length=cfg["min_avg_word_length"],
        max_avg_word_length=cfg["max_avg_word_length"],
        max_non_alpha_words_ratio=cfg["max_non_alpha_words_ratio"],
        stopwords=tuple(cfg["stopwords"]),
    )


def language_settings(lang_script: str, overrides: dict[str, Any] | None = None) -> FilterSettings:
    """FineWeb2 settings of a language-script label, with optional overrides.

    Raises ``ValueError`` for a malformed label; a well-formed label without a FineWeb2 config gets
    the language table's script defaults (see the module docstring).
    """
    from babelsieve.langid.language_table import get_language

    e = get_language(lang_script)
    s = settings_from_fineweb2_yaml(
        {
            "dup_line_frac": e.dup_line_frac,
            "top_n_grams": e.top_n_grams,
            "dup_n_grams": e.dup_n_grams,
            "line_punct_thr": e.line_punct_thr,
            "new_line_ratio": e.new_line_ratio,
            "min_avg_word_length": e.min_avg_word_length,
            "max_avg_word_length": e.max_avg_word_length,
            "max_non_alpha_words_ratio": e.max_non_alpha_words_ratio,
            "stopwords": e.stopwords,
        },
        lang_script,
    )
    if not e.has_fineweb2_config:
        notes = (f"{lang_script} has no FineWeb2 config: thresholds are the {e.defaults_from} script defaults",)
        if not e.stopwords:
            notes += ("no stopword list: the stopword rule is off (min_stop_words=0)",)
        s = dataclasses.replace(
            s, has_fineweb2_config=False, min_stop_words=s.min_stop_words if e.stopwords else 0, notes=notes
        )
    return s.with_overrides(overrides)
