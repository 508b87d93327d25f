"""Write the report files of a run."""

from __future__ import annotations

from typing import Any

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.report.card import dataset_card
from babelsieve.pipeline.report.html import render
from babelsieve.pipeline.report.plots import all_plots
from babelsieve.pipeline.report.stats import collect_run_stats, read_run_info


def write_report(output: str, storage_options: dict[str, Any] | None = None, *, max_scan_files: int | None = 2000,
                 card: bool = True, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report/index.html``, ``report/<plot>.png`` and (``card``) ``README.md`` below ``output``.

    Returns {"html": url, "card": url|None, "pngs": [url...], "plots": {name: "image"|note}}.
    """
    run = read_run_info(output, storage_options)
    if run is None and not storage.exists(RunLayout(output).manifests_dir(), storage_options):
        raise FileNotFoundError(f"{output} is not a babelsieve output (no _run.json and no _manifests/)")
    stats = collect_run_stats(output, storage_options, max_scan_files=max_scan_files)
    plots = all_plots(stats, (run or {}).get("config"))
    pngs = []
    for p in plots:
        url = storage.join(RunLayout(output).report_dir(), f"{p.name}.png")
        if p.png:
            storage.publish_bytes(url, p.png, storage_options)
            pngs.append(url)
        else:  # a plot from an earlier report whose data is gone must not linger
            storage.remove(url, storage_options, recursive=False)
    html_url = storage.join(RunLayout(output).report_dir(), "index.html")
    storage.publish_bytes(html_url, render(stats, plots, run, output, status).encode("utf-8"), storage_options)
    card_url = None
    if card:
        card_url = RunLayout(output).card
        storage.publish_bytes(card_url, dataset_card(stats, run, output).encode("utf-8"), storage_options)
    return {"html": html_url, "card": card_url, "pngs": pngs,
            "plots": {p.name: ("image" if p.png else p.note) for p in plots}}
