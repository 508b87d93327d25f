"""What a task reports about its work: the ``stats`` of its manifest, typed.

Stages return a plain mapping (their own keys are welcome); :class:`TaskStats` is how everything that
reads statistics (the run summary, the logs, the report, the dataset card) sees it, so no reader
guesses at key names. ``docs_in``/``docs_out`` are documents read and written; ``removed``,
``skipped`` and ``problem_counts`` count documents by reason; ``languages`` and ``words`` are per
``lang_script``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_COUNTS = ("removed", "skipped", "problem_counts", "languages", "words")


def _counts(value: Any) -> dict[str, int]:
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):  # a bare total instead of {reason: n}
        return {"(total)": int(value)}
    if not isinstance(value, Mapping):
        return {}
    return {str(k): int(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class TaskStats:
    """The statistics of one task (see the module docstring); ``extra`` keeps a stage's own keys."""

    docs_in: int | None = None
    docs_out: int | None = None
    removed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    problem_counts: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    words: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, stats: Mapping[str, Any] | None) -> TaskStats:
        """Read a manifest's ``stats`` (older outputs named the counts ``documents``/``kept``)."""
        d = dict(stats or {})
        known = {"docs_in", "docs_out", *_COUNTS}
        return cls(
            docs_in=_count(d.get("docs_in", d.get("documents"))),
            docs_out=_count(d.get("docs_out", d.get("kept"))),
            **{k: _counts(d.get(k)) for k in _COUNTS},
            extra={k: v for k, v in d.items() if k not in known},
        )
