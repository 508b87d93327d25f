"""Plots of a run's statistics (matplotlib, Agg canvas, no pyplot global state).

Each plot function takes the dict of :func:`collect_run_stats` and returns a :class:`Plot`: either
PNG bytes, or -- when the data does not exist (yet) -- a note saying which stage has not run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before anything else of matplotlib: no display, ever

import polars as pl  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

TOP_LANGUAGES = 25
_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


@dataclass
class Plot:
    name: str  # file stem: report/<name>.png
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None  # shown instead of the image when there is no data


def _figure(width: float = 8.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # No timestamp/software metadata: the same statistics give the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _stage_ran(stats: dict[str, pl.DataFrame], prefix: str) -> bool:
    return any(s == prefix or s.startswith(prefix + "_") for s in stats["stages"]["stage"].to_list())


def _not_run(stage: str, what: str) -> str:
    return f"Stage not run: {stage}. {what} appears here once the {stage} stage has completed tasks in this output."


def _doc_stages(stats: dict[str, pl.DataFrame]) -> list[str]:
    langs = stats["languages"]
    order = stats["stages"]["stage"].to_list()
    present = set(langs["stage"].to_list())
    return [s for s in order if s in present]


def _label_height(n: int) -> float:
    return max(3.0, min(12.0, 1.2 + 0.28 * n))


# --------------------------------------------------------------------------------------- plots


def plot_languages(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("languages", "Language distribution",
             "Documents per language-script pair after the first and the last stage that wrote documents "
             f"(top {TOP_LANGUAGES} by the last stage).")
    stages = _doc_stages(stats)
    if not stages:
        p.note = _not_run("extract", "The language distribution")
        return p
    langs = stats["languages"]
    first, last = stages[0], stages[-1]
    last_df = langs.filter(pl.col("stage") == last).sort(["docs_out", "lang_script"], descending=[True, False])
    top = last_df.head(TOP_LANGUAGES)["lang_script"].to_list()
    if not top:
        top = langs.filter(pl.col("stage") == first).sort("docs_out", descending=True).head(TOP_LANGUAGES)[
            "lang_script"].to_list()
    show = [first] if first == last else [first, last]
    fig = _figure(8, _label_height(len(top)))
    ax = fig.add_subplot()
    h = 0.8 / len(show)
    for i, s in enumerate(show):
        d = dict(langs.filter(pl.col("stage") == s).select(["lang_script", "docs_out"]).iter_rows())
        ys = [j + i * h for j in range(len(top))]
        ax.barh(ys, [d.get(lang, 0) or 0 for lang in top], height=h, label=f"after {s}", color=_COLORS[i])
    ax.set_yticks([j + h * (len(show) - 1) / 2 for j in range(len(top))], top)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    vals = last_df["docs_out"].to_list()
    if vals and max(vals) > 50 * max(1, min(v for v in vals if v) if any(vals) else 1):
        ax.set_xscale("log")
    ax.legend(loc="lower right")
    ax.set_title(p.title)
    p.png = _png(fig)
    return p


def plot_funnel(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("stages", "Documents through the stages",
             "Documents written by each stage (all languages), and documents it removed, from the task manifests.")
    st = stats["stages"].filter(pl.col("docs_out").is_not_null() | (pl.col("removed") > 0))
    if not st.height:
        p.note = _not_run("extract", "The stage funnel")
        return p
    fig = _figure(8, 3.8)
    ax = fig.add_subplot()
    names = st["stage"].to_list()
    out = [int(x or 0) for x in st["docs_out"].to_list()]
    rem = [int(x or 0) for x in st["removed"].to_list()]
    ax.bar(names, out, color=_COLORS[0], label="documents out")
    ax.bar(names, rem, bottom=out, color=_COLORS[3], label="removed")
    ax.set_ylabel("documents")
    ax.legend()
    ax.set_title(p.title)
    for lbl in ax.get_xticklabels():
        lbl.set_rotation(20)
    p.png = _png(fig)
    return p


def plot_removal(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("filter_removal", "Per-filter removal rate by language",
             "Share of each language's documents entering the filter stage that each filter removed "
             f"(top {TOP_LANGUAGES} languages by input).")
    if not _stage_ran(stats, "filter"):
        p.note = _not_run("filter", "The per-filter removal rate by language")
        return p
    rem = stats["removal"].filter(pl.col("stage") == "filter")
    if not rem.height:
        p.note = "The filter stage ran and removed no documents: nothing to plot."
        return p
    inputs = (stats["languages"].filter(pl.col("stage") == "filter").sort("docs_in", descending=True)
              .head(TOP_LANGUAGES)["lang_script"].to_list())
    langs = [lang for lang in inputs if lang in set(rem["lang_script"].to_list())] or sorted(
        set(rem["lang_script"].to_list()))[:TOP_LANGUAGES]
    per_filter = rem.group_by(["lang_script", "filter"]).agg(pl.col("rate").fill_null(0.0).sum())
    reasons = sorted(set(per_filter["filter"].to_list()))
    rate = {(r["lang_script"], r["filter"]): r["rate"] for r in per_filter.iter_rows(named=True)}
    grid = [[rate.get((lang, reason), 0.0) for reason in reasons] for lang in langs]
    fig = _figure(max(6.0, 1.6 + 1.3 * len(reasons)), _label_height(len(langs)))
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", cmap="Reds", vmin=0, vmax=max(0.01, max(max(r) for r in grid)))
    ax.set_xticks(range(len(reasons)), reasons, rotation=25, ha="right")
    ax.set_yticks(range(len(langs)), langs)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8,
                    color="white" if v > 0.5 * max(0.01, max(max(r) for r in grid)) else "black")
    fig.colorbar(im, ax=ax, label="removed / documents in")
    ax.set_title(p.title)
    p.png = _png(fig)
    return p


def plot_cluster_sizes(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("cluster_sizes", "Duplicate-cluster size distribution",
             "Kept documents by `minhash_cluster_size` (the size of the MinHash duplicate cluster each one "
             "represents), log-log; one line per language (top 6) and all languages.")
    cs = stats["cluster_sizes"]
    if not cs.height:
        p.note = _not_run("dedup", "The cluster-size distribution (`minhash_cluster_size`)")
        return p
    stage = cs["stage"].to_list()[0]
    cs = cs.filter(pl.col("stage") == stage)
    fig = _figure(8, 4.2)
    ax = fig.add_subplot()
    allx = cs.group_by("cluster_size").agg(pl.col("documents").sum()).sort("cluster_size")
    ax.plot(allx["cluster_size"].to_list(), allx["documents"].to_list(), marker="o", color="black", label="all")
    top = (cs.group_by("lang_script").agg(pl.col("documents").sum()).sort(["documents", "lang_script"],
                                                                            descending=[True, False])
           .head(6)["lang_script"].to_list())
    for i, lang in enumerate(top):
        d = cs.filter(pl.col("lang_script") == lang).sort("cluster_size")
        ax.plot(d["cluster_size"].to_list(), d["documents"].to_list(), marker=".", alpha=0.8, color=_COLORS[i],
                label=lang)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("minhash_cluster_size")
    ax.set_ylabel("kept documents")
    ax.legend(fontsize=8)
    ax.set_title(f"{p.title} ({stage})")
    p.png = _png(fig)
    return p


def plot_language_score(stats: dict[str, pl.DataFrame], langid_backend: str | None = None) -> Plot:
    p = Plot("language_score", "Language-score histogram",
             "Documents by language-ID score (`language_score`) after extraction, kept vs removed by the "
             "per-language minimum score (documents labelled `und` are not shown).")
    ls = stats["language_score"]
    if not ls.height:
        if langid_backend == "none":
            p.note = ("No language scores: this run had language ID disabled (langid.backend=none), so every "
                      "document is labelled `und` with score 0.")
        else:
            p.note = _not_run("extract", "The language-score histogram")
        return p
    stage = ls["stage"].to_list()[0]
    ls = ls.filter(pl.col("stage") == stage)
    fig = _figure(8, 4.0)
    ax = fig.add_subplot()
    bins = sorted(set(ls["bin_lo"].to_list()))
    width = (ls["bin_hi"] - ls["bin_lo"]).max() or 0.05
    bottom = {b: 0 for b in bins}
    for s in ("kept", "removed"):
        d = dict(ls.filter(pl.col("set") == s).group_by("bin_lo").agg(pl.col("documents").sum()).iter_rows())
        if not d:
            continue
        ys = [d.get(b, 0) for b in bins]
        ax.bar(bins, ys, width=width, align="edge", bottom=[bottom[b] for b in bins], label=s,
               color=_COLORS[0] if s == "kept" else _COLORS[3], edgecolor="white")
        for b, y in zip(bins, ys, strict=True):  # ys: one count per bin
            bottom[b] += y
    ax.set_xlim(0, 1)
    ax.set_xlabel("language_score")
    ax.set_ylabel("documents")
    ax.legend()
    ax.set_title(f"{p.title} ({stage})")
    p.png = _png(fig)
    return p


def plot_rehydration(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("rehydration", "Before / after rehydration and rebalancing",
             "Documents per language entering the rebalance stage and written by it (rehydration upsamples "
             f"by duplicate-cluster size; mixing up- or down-samples languages); top {TOP_LANGUAGES}.")
    r = stats["rehydration"]
    if not r.height:
        p.note = _not_run("rebalance", "The before/after comparison of rehydration and rebalancing")
        return p
    r = r.sort(["docs_after", "lang_script"], descending=[True, False]).head(TOP_LANGUAGES)
    langs = r["lang_script"].to_list()
    fig = _figure(8, _label_height(len(langs)))
    ax = fig.add_subplot()
    h = 0.4
    ax.barh([i for i in range(len(langs))], r["docs_before"].to_list(), height=h, label="before",
            color=_COLORS[0])
    ax.barh([i + h for i in range(len(langs))], r["docs_after"].to_list(), height=h, label="after",
            color=_COLORS[2])
    for i, e in enumerate(r["expansion"].to_list()):
        if e is not None:
            ax.text(max(r["docs_before"][i], r["docs_after"][i]), i + h / 2, f" x{e:.2f}", va="center", fontsize=8)
    ax.set_yticks([i + h / 2 for i in range(len(langs))], langs)
    ax.invert_yaxis()
    ax.set_xlabel("documents")
    ax.legend(loc="lower right")
    ax.set_title(p.title)
    p.png = _png(fig)
    return p


def plot_throughput(stats: dict[str, pl.DataFrame]) -> Plot:
    p = Plot("throughput", "Measured throughput per stage",
             "Documents per core-second of task time (task manifests' `seconds`), per stage.")
    st = stats["stages"].filter(pl.col("docs_per_core_second").is_not_null())
    if not st.height:
        p.note = _not_run("extract", "Throughput")
        return p
    fig = _figure(8, 3.5)
    ax = fig.add_subplot()
    ax.bar(st["stage"].to_list(), st["docs_per_core_second"].to_list(), color=_COLORS[4])
    ax.set_ylabel("documents / core-second")
    ax.set_title(p.title)
    for lbl in ax.get_xticklabels():
        lbl.set_rotation(20)
    p.png = _png(fig)
    return p


def all_plots(stats: dict[str, pl.DataFrame], run_config: dict[str, Any] | None = None) -> list[Plot]:
    backend = ((run_config or {}).get("langid") or {}).get("backend")
    makers: list[Callable[[], Plot]] = [
        lambda: plot_languages(stats),
        lambda: plot_funnel(stats),
        lambda: plot_removal(stats),
        lambda: plot_cluster_sizes(stats),
        lambda: plot_language_score(stats, backend),
        lambda: plot_rehydration(stats),
        lambda: plot_throughput(stats),
    ]
    return [m() for m in makers]
