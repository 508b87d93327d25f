"""Every path of a run's output, in one place (docs/output.md draws the tree).

```
OUTPUT/
  <stage>/lang_script=<lang>/<task>.parquet    documents of a stage      RunLayout.stage_dir
  removed/<stage>/<reason>/<task>.parquet      removed documents         RunLayout.removed_dir
  _manifests/<stage>/<task>.json               proof a task is complete  RunLayout.manifest
  _index/<stage>.json.gz                       a stage's manifests, one object  RunLayout.manifest_index
  _stats/<stage>/<task>.parquet                per-task statistics       RunLayout.stats_dir
  <stage>_work/                                intermediate files        RunLayout.work_dir
  _logs/<stage>-<ms>.jsonl                     one line per attempt      RunLayout.logs_dir
  _run.json  _summary.json  _lock.json         config + hash, summary, the run lock
  _refilter/  _faults/                         refilter staging and audit, the tests' fault markers
  report/index.html  README.md                 `babelsieve report`: HTML report, dataset card
```
"""

from __future__ import annotations

from dataclasses import dataclass

from babelsieve.pipeline.core import storage


@dataclass(frozen=True)
class RunLayout:
    """The paths below one output root (a local path or an fsspec URL)."""

    root: str

    def _at(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    @property
    def run_marker(self) -> str:
        """``_run.json``: the run's public config and its hash (guards against mixing configs)."""
        return self._at("_run.json")

    @property
    def summary(self) -> str:
        return self._at("_summary.json")

    @property
    def lock(self) -> str:
        return self._at("_lock.json")

    def manifests_dir(self, stage: str | None = None) -> str:
        return self._at("_manifests", stage) if stage else self._at("_manifests")

    def manifest(self, stage: str, task_id: str) -> str:
        return self._at("_manifests", stage, f"{task_id}.json")

    def manifest_index(self, stage: str) -> str:
        """Every completed manifest of a stage in one gzip JSON object (read with one request)."""
        return self._at("_index", f"{stage}.json.gz")

    def logs_dir(self) -> str:
        return self._at("_logs")

    def stats_dir(self, stage: str | None = None) -> str:
        return self._at("_stats", stage) if stage else self._at("_stats")

    def stage_dir(self, stage: str) -> str:
        return self._at(stage)

    def work_dir(self, stage: str, *parts: str) -> str:
        """Intermediate files of a stage that later tasks of the same stage read (dedup's shuffle)."""
        return self._at(f"{stage}_work", *parts)

    def removed_dir(self, stage: str, *reason: str) -> str:
        return self._at("removed", stage, *reason)

    def refilter_dir(self) -> str:
        return self._at("_refilter")

    def fault_marker(self, stage: str, task_id: str) -> str:
        return self._at("_faults", f"{stage}-{task_id}")

    def report_dir(self) -> str:
        return self._at("report")

    @property
    def card(self) -> str:
        return self._at("README.md")
