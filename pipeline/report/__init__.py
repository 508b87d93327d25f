"""Run reports: statistics merged from manifests and logs, an HTML report with plots, a dataset card.

* :func:`collect_run_stats` -- dict of polars DataFrames (used by ``report`` and ``plan``)
* :func:`write_report` -- ``<output>/report/index.html`` (self-contained), ``<output>/report/*.png``,
  ``<output>/README.md`` (dataset card); local paths or any fsspec URL (``s3://...``)
"""

from __future__ import annotations

from typing import Any

__all__ = ["collect_run_stats", "read_logs", "read_manifests", "read_run_info", "write_report"]


def __getattr__(name: str) -> Any:  # lazy: `babelsieve --help` must not import polars or matplotlib
    if name in ("collect_run_stats", "read_logs", "read_manifests", "read_run_info"):
        from babelsieve.pipeline.report import stats

        return getattr(stats, name)
    if name == "write_report":
        from babelsieve.pipeline.report.build import write_report

        return write_report
    raise AttributeError(name)
