"""The self-contained HTML report: tables, plots as base64 data URIs, no external resources."""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Iterable
from typing import Any

import polars as pl

from babelsieve.pipeline.report.card import human_bytes
from babelsieve.pipeline.report.plots import Plot

# After load, every <img> gets data-ok="1" when it decoded to a non-empty image, else "0"; the body
# gets data-images / data-images-ok counts. Headless-browser tests (and humans) read these.
_CHECK_JS = """
(function () {
  function mark(img) { img.dataset.ok = (img.complete && img.naturalWidth > 0 && img.naturalHeight > 0) ? "1" : "0"; }
  function tally() {
    var imgs = document.querySelectorAll("img.plot"), ok = 0;
    imgs.forEach(function (img) { mark(img); if (img.dataset.ok === "1") ok++; });
    document.body.dataset.images = String(imgs.length);
    document.body.dataset.imagesOk = String(ok);
  }
  document.querySelectorAll("img.plot").forEach(function (img) {
    img.addEventListener("load", tally); img.addEventListener("error", tally);
  });
  if (document.readyState === "complete") tally(); else window.addEventListener("load", tally);
})();
"""

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; } th { background: #f4f4f4; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; } figcaption { color: #555; font-size: .9em; margin-top: .3em; }
img.plot { max-width: 100%; border: 1px solid #eee; }
.not-run { border: 2px dashed #bbb; background: #fafafa; color: #555; padding: 1.2em; font-style: italic; }
.meta { color: #555; } code { background: #f4f4f4; padding: 0 .2em; }
.failed { color: #b00; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _cell(v: Any, fmt: str | None = None) -> str:
    if v is None:
        return '<td class="n">-</td>'
    if fmt == "bytes":
        return f'<td class="n">{_e(human_bytes(v))}</td>'
    if fmt == "pct":
        return f'<td class="n">{100 * float(v):.1f}%</td>'
    if isinstance(v, bool):
        return f"<td>{_e(v)}</td>"
    if isinstance(v, int):
        return f'<td class="n">{v:,}</td>'
    if isinstance(v, float):
        return f'<td class="n">{v:,.2f}</td>'
    return f"<td>{_e(v)}</td>"


def table(df: pl.DataFrame, columns: Iterable[str], formats: dict[str, str] | None = None, limit: int = 200) -> str:
    cols = [c for c in columns if c in df.columns]
    formats = formats or {}
    if not df.height:
        return '<p class="meta">(none)</p>'
    out = ["<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"]
    for r in df.head(limit).iter_rows(named=True):
        out.append("<tr>" + "".join(_cell(r[c], formats.get(c)) for c in cols) + "</tr>")
    out.append("</table>")
    if df.height > limit:
        out.append(f'<p class="meta">{df.height - limit:,} more rows not shown.</p>')
    return "\n".join(out)


def figure(p: Plot) -> str:
    if p.png:
        b64 = base64.b64encode(p.png).decode()
        return (f'<figure id="plot-{_e(p.name)}"><img class="plot" data-plot="{_e(p.name)}" alt="{_e(p.title)}" '
                f'src="data:image/png;base64,{b64}"><figcaption><b>{_e(p.title)}.</b> {_e(p.caption)} '
                f'(<code>report/{_e(p.name)}.png</code>)</figcaption></figure>')
    return (f'<figure id="plot-{_e(p.name)}"><div class="not-run" data-plot="{_e(p.name)}"><b>{_e(p.title)}</b>: '
            f'{_e(p.note)}</div></figure>')


def render(stats: dict[str, pl.DataFrame], plots: list[Plot], run: dict[str, Any] | None, output: str,
           status: dict[str, Any] | None = None) -> str:
    config = (run or {}).get("config") or {}
    st = stats["stages"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>babelsieve report: {_e(output)}</title><style>{_CSS}</style></head><body>",
        f"<h1>babelsieve run report</h1><p class=\"meta\">output <code>{_e(output)}</code> · config hash "
        f"<code>{_e((run or {}).get('config_hash', '?'))}</code> · configured stages "
        f"<code>{_e(', '.join(config.get('stages') or []))}</code> · generated "
        f"{_e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}</p>",
        "<p>The dataset card is <code>README.md</code> at the output's root. Measured numbers come from the task "
        "manifests (<code>_manifests/</code>) and task logs (<code>_logs/</code>).</p>",
    ]
    if status:
        parts.append("<h2>Status</h2>")
        rows = pl.DataFrame(status["stages"]) if status.get("stages") else pl.DataFrame()
        parts.append(table(rows, ["stage", "state", "planned", "done", "failed", "pending", "note"]))
    parts.append("<h2>Stages</h2>")
    parts.append(table(st, ["stage", "tasks", "seconds", "max_task_seconds", "docs_in", "docs_out", "removed",
                            "skipped", "files", "bytes_out", "docs_per_core_second"], {"bytes_out": "bytes"}))
    parts.append("<h2>Plots</h2>")
    parts.extend(figure(p) for p in plots)

    langs = stats["languages"]
    doc_stages = [s for s in st["stage"].to_list() if s in set(langs["stage"].to_list())]
    if doc_stages:
        last = doc_stages[-1]
        parts.append(f"<h2>Languages after {_e(last)}</h2>")
        parts.append(table(langs.filter(pl.col("stage") == last),
                           ["lang_script", "docs_in", "docs_out", "removed", "words", "utf8_bytes", "bytes_out"],
                           {"utf8_bytes": "bytes", "bytes_out": "bytes"}))
    parts.append("<h2>Removal by stage, language and reason</h2>")
    parts.append(table(stats["removal"], ["stage", "lang_script", "filter", "reason", "removed", "docs_in", "rate"],
                       {"rate": "pct"}))
    parts.append("<h2>Removed, skipped and problem counts (manifests)</h2>")
    parts.append(table(stats["stage_reasons"], ["stage", "what", "reason", "count"]))
    if stats["rehydration"].height:
        parts.append("<h2>Rehydration and rebalancing</h2>")
        parts.append(table(stats["rehydration"], ["lang_script", "docs_before", "docs_after", "expansion",
                                                  "bytes_before", "bytes_after"],
                           {"bytes_before": "bytes", "bytes_after": "bytes"}))
    if "quality_scores" in stats:
        parts.append("<h2>Quality classifiers: kept share per bucket</h2>")
        parts.append(table(stats["quality_buckets"], ["classifier", "lang_script", "bucket", "lo", "hi", "documents",
                                                       "kept", "kept_share"], {"kept_share": "pct"}))
        parts.append("<h2>Quality classifiers: score histogram per language</h2>")
        parts.append(table(stats["quality_scores"], ["classifier", "lang_script", "lo", "hi", "documents", "kept"],
                           limit=400))
    for key in sorted(k for k in stats if k.startswith("stats/")):
        parts.append(f"<h2>Stage statistics: <code>_{_e(key)}/</code></h2>")
        df = stats[key]
        parts.append(table(df, [c for c in df.columns if c != "_file"], limit=100))
    logs = stats["logs"]
    failed = logs.filter(pl.col("status") == "failed")
    parts.append('<h2>Failed task attempts (task logs)</h2>')
    parts.append(table(failed, ["stage", "task_id", "error", "log_file"]))
    scan = stats["scan"]
    if scan.height and (scan["files_scanned"] < scan["files_total"]).any():
        parts.append('<p class="meta">Histograms were computed on an even sample of the Parquet files: '
                     + ", ".join(f"{r['stage']}/{r['kind']} {r['files_scanned']:,} of {r['files_total']:,}"
                                 for r in scan.iter_rows(named=True)) + ".</p>")
    parts.append(f"<script>{_CHECK_JS}</script></body></html>")
    return "\n".join(parts)
