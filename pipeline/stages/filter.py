"""Filter stage: FineWeb2's per-language quality filters, tasks sized by work.

Input: the Parquet files of ``dedup_annotate`` (when ``dedup`` is in ``config.stages``) or else
``extract`` (an entry per language of each file: ``documents.language_pieces``), grouped into tasks by
documents and bytes (:func:`~babelsieve.pipeline.tasks.work_sized_tasks`, ``config.tasks``); a task filters each of its
languages on the concatenation of that language's inputs. For each document the stage
computes the signal columns (``babelsieve.filters.signals``) and decides with the language's
settings (language table + ``config.filter.overrides[lang]``), then writes:

* kept:     ``<output>/filter/lang_script=<lang>/<task_id>.parquet`` (documents + ``sig_*`` columns;
  no file when the task keeps nothing)
* removed:  ``<output>/removed/filter/<filter>/<rule>/<task_id>-<lang>.parquet`` (same + ``removal_reason``,
  e.g. ``gopher_rep:dup_line_frac`` lands in ``removed/filter/gopher_rep/dup_line_frac/``)
* stats:    ``<output>/_stats/filter/<task_id>-<lang>.parquet`` (``babelsieve.filters.apply.STATS_SCHEMA``:
  per language, per filter, per reason, per ``minhash_cluster_size``)

Because the signals are stored, ``babelsieve refilter`` can re-threshold a language later without
recomputing them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import REMOVED_EXTRA, PieceReader, language_dir, write_table
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import (
    Stage,
    Task,
    TaskOutput,
    completed_files,
    inputs_by_language,
    task_pieces,
    work_sized_tasks,
)
from babelsieve.pipeline.stages import documents_input


def filter_settings_for(config, lang_script: str):
    """(FilterSettings, note) of a language under this run's config."""
    from babelsieve.filters.apply import resolve_settings

    fc = config.filter
    lang = lang_script
    return resolve_settings(
        lang,
        fc.overrides.get(lang) or fc.overrides.get(lang.split("_")[0]),
        gopher_repetition=fc.gopher_repetition,
        fineweb_quality=fc.fineweb_quality,
        gopher_quality=fc.gopher_quality,
        c4=fc.c4 or None,
        kenlm_model=fc.kenlm.get(lang),
        kenlm_max_perplexity=fc.kenlm_max_perplexity.get(lang),
    )


def _append_columns(table: pa.Table, arrays: dict[str, Any]) -> pa.Table:
    for name, arr in arrays.items():
        if isinstance(arr, np.ndarray) and arr.dtype == object:
            col = pa.array(arr.tolist(), type=pa.string())
        else:
            col = pa.array(arr)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, col)
        else:
            table = table.append_column(name, col)
    return table


def removed_url(out_base: str, reason: str, task_id: str, lang: str) -> str:
    """One file per (task, language, reason): a task may hold several languages."""
    parts = [p.replace("/", "_") for p in reason.split(":")]
    return storage.join(RunLayout(out_base).removed_dir("filter", *parts), f"{task_id}-{lang}.parquet")


def stats_url(out_base: str, task_id: str, lang: str) -> str:
    """The statistics file of one language of a filter task."""
    return storage.join(RunLayout(out_base).stats_dir("filter"), f"{task_id}-{lang}.parquet")


def write_decided(
    stage_out: str, out_base: str, task_id: str, lang: str, table: pa.Table, reasons: list, storage_options
) -> list[dict]:
    """Write kept and removed documents of one task; return manifest entries (a part without rows
    gets no file and no entry)."""
    files = []
    mask = pa.array([r is None for r in reasons], type=pa.bool_())
    if "removal_reason" in table.column_names:
        table = table.drop_columns(["removal_reason"])
    kept = table.filter(mask)
    if kept.num_rows:  # nothing kept: no file (the task's stats say languages {lang: 0})
        entry = write_table(language_dir(stage_out, lang) + f"/{task_id}.parquet", kept, storage_options)
        files.append({**entry, "kind": "documents", "lang_script": lang})
    with_reason = table.append_column(REMOVED_EXTRA, pa.array(reasons, type=pa.string()))
    for reason in sorted({r for r in reasons if r is not None}):
        part = with_reason.filter(pa.array([r == reason for r in reasons], type=pa.bool_()))
        entry = write_table(removed_url(out_base, reason, task_id, lang), part, storage_options)
        files.append({**entry, "kind": "removed", "lang_script": lang, "reason": reason})
    return files


class FilterStage(Stage):
    name = "filter"

    def plan(self) -> list[Task]:
        files = completed_files(self.config, documents_input(self.config, self.name), kind="documents")
        return work_sized_tasks(self.name, files, self.config)

    def run(self, task: Task) -> TaskOutput:
        files: list[dict] = []
        stats: dict[str, Any] = {"docs_in": 0, "docs_out": 0, "removed": {}, "languages": {}}
        removed: dict[str, int] = {}
        notes: list[str] = []
        reader = PieceReader(task_pieces(task), self.storage_options)
        for lang, pieces in inputs_by_language(task):
            got, n_in, lang_removed, note = self._run_language(task, lang, reader.concat(pieces))
            files += got
            stats["docs_in"] += n_in
            stats["docs_out"] += n_in - sum(lang_removed.values())
            stats["languages"][lang] = n_in - sum(lang_removed.values())
            for r, k in lang_removed.items():
                removed[r] = removed.get(r, 0) + k
            if note and note not in notes:
                notes.append(note)
        stats["removed"] = dict(sorted(removed.items()))
        if notes:
            stats["notes"] = notes
        return TaskOutput(files=files, stats=stats)

    def _run_language(self, task: Task, lang: str, table: pa.Table) -> tuple[list[dict], int, dict[str, int], str]:
        """Filter one language's inputs of the task (concatenated in input order): files, docs, removals, note."""
        from babelsieve.filters.apply import signals_for, stats_rows, stats_table
        from babelsieve.filters.decisions import decide_arrays

        settings, note = filter_settings_for(self.config, lang)
        texts = [t or "" for t in table.column("text").to_pylist()]
        arrays = signals_for(texts, settings)
        reasons = decide_arrays(arrays, settings).tolist() if self.config.filter.enabled else [None] * len(texts)
        table = _append_columns(table, arrays)
        files = write_decided(self.layout.stage_dir("filter"), self.config.output, task.task_id, lang, table, reasons,
                              self.storage_options)
        has_sizes = "minhash_cluster_size" in table.column_names
        sizes = table.column("minhash_cluster_size").to_pylist() if has_sizes else None
        rows = stats_rows(task.task_id, lang, reasons, sizes)
        entry = write_table(stats_url(self.config.output, task.task_id, lang), stats_table(rows), self.storage_options)
        files.append({**entry, "kind": "stats", "lang_script": lang})
        removed: dict[str, int] = {}
        for r in reasons:
            if r is not None:
                removed[r] = removed.get(r, 0) + 1
        return files, len(texts), removed, note


