"""Finalize stage: FineWeb2's final touches (ftfy, PII, table-artifact lines), one task per file.

Input: the kept documents of the configured stage before it (``filter``, or ``classify`` when that
runs between them; :func:`~babelsieve.pipeline.stages.documents_input`). Output:
``<output>/finalize/lang_script=<lang>/<task_id>.parquet`` with FineWeb2's columns in its order plus
``lang_script`` (:data:`~babelsieve.pipeline.core.documents.FINAL_SCHEMA`), the classifiers' ``quality_*`` columns,
and the ``sig_*`` columns too with ``finalize.keep_signals``, ``text`` rewritten by
:mod:`babelsieve.filters.formatters`. Nothing is removed here; the task's statistics count the
documents each step changed. An input without rows (outputs of older versions) gives no file.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from babelsieve.pipeline.core.documents import final_columns, language_dir, read_table, write_table
from babelsieve.pipeline.core.tasks import Stage, Task, TaskOutput, completed_files, files_digest
from babelsieve.pipeline.stages import documents_input


class FinalizeStage(Stage):
    name = "finalize"

    def plan(self) -> list[Task]:
        files = completed_files(self.config, documents_input(self.config, self.name), kind="documents")
        tasks, seen = [], set()
        for f in sorted(files, key=lambda f: (f.get("lang_script", ""), f["path"])):
            lang = f.get("lang_script") or "und"
            stem = posixpath.basename(f["path"]).rsplit(".", 1)[0]
            tid = stem if stem.startswith(lang) else f"{lang}-{stem}"
            while tid in seen:
                tid += "_"
            seen.add(tid)
            tasks.append(Task(self.name, tid, (f["path"],), {"lang_script": lang}, files_digest([f])))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        from babelsieve.filters.formatters import finalize_texts

        (url,) = task.inputs
        lang = task.params.get("lang_script") or "und"
        table = read_table(url, self.storage_options)
        cfg = self.config.finalize
        texts = table.column("text").to_pylist()
        if cfg.enabled:
            res = finalize_texts(texts, ftfy=cfg.ftfy, pii=cfg.pii, symbol_lines=cfg.symbol_lines)
            table = table.set_column(table.column_names.index("text"), "text", pa.array(res.texts, type=pa.string()))
            changed = res.changed
        else:
            changed = {}
        # The filter's word counts go into the stats, so the report and the card still count words
        # once the sig_* columns are dropped.
        words = ({"words": {lang: int(pc.sum(table.column("sig_n_words")).as_py() or 0)}}
                 if "sig_n_words" in table.column_names else {})
        table = final_columns(table, keep_signals=cfg.keep_signals)
        files = []
        if table.num_rows:
            url = language_dir(self.layout.stage_dir("finalize"), lang) + f"/{task.task_id}.parquet"
            files.append({**write_table(url, table, self.storage_options), "kind": "documents", "lang_script": lang})
        return TaskOutput(
            files=files,
            stats={"docs_in": table.num_rows, "docs_out": table.num_rows, "changed": changed,
                   "languages": {lang: table.num_rows}, **words},
        )


