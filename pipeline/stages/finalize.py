"""Finalize stage: FineWeb2's final touches (ftfy, PII, table-artifact lines), tasks sized by work.

Input: the kept documents of the configured stage before it (``filter``, or ``classify`` when that
runs between them; :func:`~babelsieve.pipeline.stages.documents_input`), grouped into tasks by documents
and bytes (:func:`~babelsieve.pipeline.core.tasks.work_sized_tasks`). Output, per (task, language):
``<output>/finalize/lang_script=<lang>/<task_id>.parquet`` with FineWeb2's columns in its order plus
``lang_script`` (:data:`~babelsieve.pipeline.core.documents.FINAL_SCHEMA`), the classifiers' ``quality_*``
columns, and the ``sig_*`` columns too with ``finalize.keep_signals``, ``text`` rewritten by
:mod:`babelsieve.filters.formatters`. Nothing is removed here; the task's statistics count the
documents each step changed. An input without rows (outputs of older versions) gives no file.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from babelsieve.pipeline.core.documents import PieceReader, final_columns, language_dir, write_table
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


class FinalizeStage(Stage):
    name = "finalize"

    def plan(self) -> list[Task]:
        files = completed_files(self.config, documents_input(self.config, self.name), kind="documents")
        return work_sized_tasks(self.name, files, self.config)

    def run(self, task: Task) -> TaskOutput:
        files: list[dict] = []
        stats: dict = {"docs_in": 0, "docs_out": 0, "changed": {}, "languages": {}}
        reader = PieceReader(task_pieces(task), self.storage_options)
        for lang, pieces in inputs_by_language(task):
            entry, n, changed, words = self._run_language(task, lang, reader.concat(pieces))
            files += entry
            stats["docs_in"] += n
            stats["docs_out"] += n
            stats["languages"][lang] = n
            for k, v in changed.items():
                stats["changed"][k] = stats["changed"].get(k, 0) + v
            if words is not None:
                stats.setdefault("words", {})[lang] = words
        return TaskOutput(files=files, stats=stats)

    def _run_language(self, task: Task, lang: str, table: pa.Table) -> tuple[list[dict], int, dict, int | None]:
        """Finalize one language's inputs of the task (concatenated in input order)."""
        from babelsieve.filters.formatters import finalize_texts

        cfg = self.config.finalize
        texts = table.column("text").to_pylist()
        if cfg.enabled:
            res = finalize_texts(texts, ftfy=cfg.ftfy, pii=cfg.pii, symbol_lines=cfg.symbol_lines)
            table = table.set_column(table.column_names.index("text"), "text", pa.array(res.texts, type=pa.string()))
            changed = dict(res.changed)
        else:
            changed = {}
        # The filter's word counts go into the stats, so the report and the card still count words
        # once the sig_* columns are dropped.
        words = (int(pc.sum(table.column("sig_n_words")).as_py() or 0)
                 if "sig_n_words" in table.column_names else None)
        table = final_columns(table, keep_signals=cfg.keep_signals)
        files = []
        if table.num_rows:
            url = language_dir(self.layout.stage_dir("finalize"), lang) + f"/{task.task_id}.parquet"
            files.append({**write_table(url, table, self.storage_options), "kind": "documents", "lang_script": lang})
        return files, table.num_rows, changed, words


