"""Finalize stage: FineWeb2's final touches (ftfy, PII, table-artifact lines), one task per file.

Input: the kept documents of the ``filter`` stage (or of the stage before it when ``filter`` is not
configured). Output: ``<output>/finalize/lang_script=<lang>/<task_id>.parquet`` with the same
columns, ``text`` rewritten by :mod:`babelsieve.filters.formatters`. Nothing is removed here; the
task's statistics count the documents each step changed.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa

from babelsieve.pipeline.documents import language_dir, read_table, write_table
from babelsieve.pipeline.tasks import Stage, Task, TaskOutput, completed_files, files_digest, register_stage


def _input_stage(config) -> str:
    if "filter" in config.stages:
        return "filter"
    return "dedup_annotate" if "dedup" in config.stages else "extract"


class FinalizeStage(Stage):
    name = "finalize"

    def plan(self) -> list[Task]:
        files = completed_files(self.config, _input_stage(self.config), kind="documents")
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
        entry = write_table(language_dir(self.out("finalize"), lang) + f"/{task.task_id}.parquet", table, self.storage_options)
        return TaskOutput(
            files=[{**entry, "kind": "documents", "lang_script": lang}],
            stats={"docs_in": table.num_rows, "docs_out": table.num_rows, "changed": changed,
                   "languages": {lang: table.num_rows}},
        )


register_stage("finalize", "babelsieve.pipeline.finalize_stage:FinalizeStage", group="finalize")
