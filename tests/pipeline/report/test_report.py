"""`babelsieve report`: HTML report with plots (checked in headless Chromium) and dataset card.

The report is made from a real pipeline run on the bundled sample WARC (3 shards, one of which
failed once and was rerun), first as it is (extract only: the other plots must say "stage not
run"), then with synthetic outputs of the later stages (tests/pipeline/report/test_report_synthetic.py: known values
for every table and plot). At the end, a real run of every stage (no synthetic output) must also
render every plot.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import fsspec
import polars as pl
import pytest
import yaml

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.report.build import write_report
from babelsieve.pipeline.report.stats import collect_run_stats, read_manifests

from support.data import BABELSIEVE
from support.synthetic_runs import LANGS, add_synthetic_stages, copy_output, shared_runs

ALL_PLOTS = {"languages", "stages", "filter_removal", "cluster_sizes", "language_score", "rehydration", "throughput"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(extract-only output, its report copy, full output with synthetic later stages)."""
    base = tmp_path_factory.mktemp("report")
    out = copy_output(shared_runs(tmp_path_factory)["complete"], base / "out")
    r = subprocess.run([BABELSIEVE, "report", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    early = base / "early"
    shutil.copytree(out / "report", early / "report")
    shutil.copy(out / "README.md", early / "README.md")
    exp = add_synthetic_stages(out)
    r = subprocess.run([BABELSIEVE, "report", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out, early, exp


# --------------------------------------------------------------------------------------- browser


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = "headless Chromium not found: apt-get update && apt-get install -y chromium"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)  # in CI the browser test always runs
    pytest.skip(msg)


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.notes: list[dict] = []
        self.body: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        elif tag == "body":
            self.body = a
        elif tag == "div" and "not-run" in (a.get("class") or ""):
            self.notes.append(a)


def render_in_browser(html_file: Path, tmp_path: Path) -> _Dom:
    """Load the page in headless Chromium, let its script run, parse the resulting DOM."""
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", html_file.resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = _Dom()
    dom.feed(r.stdout)
    assert dom.body, f"no <body> in the dumped DOM: {r.stdout[:500]!r}"
    return dom


@pytest.mark.infra
def test_every_plot_renders_as_a_non_empty_image_in_a_browser(runs, tmp_path):
    out, _, _ = runs
    dom = render_in_browser(out / "report" / "index.html", tmp_path)
    plots = {img.get("data-plot") for img in dom.imgs if "plot" in (img.get("class") or "")}
    assert plots == ALL_PLOTS
    for img in dom.imgs:
        assert img.get("data-ok") == "1", f"plot {img.get('data-plot')} did not render"
        assert img["src"].startswith("data:image/png;base64,")
    assert dom.body.get("data-images") == dom.body.get("data-images-ok") == str(len(ALL_PLOTS))
    assert not dom.notes


@pytest.mark.infra
def test_stages_not_run_show_a_note_and_the_rest_render(runs, tmp_path):
    _, early, _ = runs
    dom = render_in_browser(early / "report" / "index.html", tmp_path)
    rendered = {img["data-plot"] for img in dom.imgs if img.get("data-ok") == "1"}
    noted = {n["data-plot"] for n in dom.notes}
    assert {"languages", "stages", "throughput"} <= rendered
    assert {"filter_removal", "cluster_sizes", "rehydration", "language_score"} <= noted
    assert rendered | noted == ALL_PLOTS and not rendered & noted
    assert dom.body.get("data-images") == dom.body.get("data-images-ok") == str(len(rendered))
    text = (early / "report" / "index.html").read_text()
    for stage in ("filter", "dedup", "rebalance"):
        assert f"Stage not run: {stage}." in text
    assert "langid.backend=none" in text  # why there is no language-score histogram
    assert not (early / "report" / "cluster_sizes.png").exists()


@pytest.mark.infra
def test_the_browser_check_catches_a_broken_image(runs, tmp_path):
    out, _, _ = runs
    html = (out / "report" / "index.html").read_text()
    broken = re.sub(r'(data-plot="cluster_sizes" alt="[^"]*" src="data:image/png;base64,)[^"]+',
                    lambda m: m.group(1) + base64.b64encode(b"not a png").decode(), html, count=1)
    assert broken != html
    page = tmp_path / "broken.html"
    page.write_text(broken)
    dom = render_in_browser(page, tmp_path)
    ok = {img["data-plot"]: img.get("data-ok") for img in dom.imgs}
    assert ok["cluster_sizes"] == "0"
    assert dom.body.get("data-images-ok") == str(len(ALL_PLOTS) - 1)


# --------------------------------------------------------------------------------------- files


def test_report_is_self_contained_with_png_copies(runs):
    out, _, _ = runs
    html = (out / "report" / "index.html").read_text()
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)
    for name in ALL_PLOTS:
        png = (out / "report" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 2000
        assert base64.b64encode(png).decode() in html  # the embedded image is the PNG copy


def test_report_tables_match_the_manifests(runs):
    out, _, exp = runs
    html = (out / "report" / "index.html").read_text()
    ms = [m for m in read_manifests(str(out)) if m["stage"] == "extract"]
    assert f"<td class=\"n\">{sum(m['stats']['docs_in'] for m in ms):,}</td>" in html
    for lang in LANGS:
        assert f"<td>{lang}</td>" in html
    assert "gopher_rep:dup_line_frac" in html and "_stats/filter/" in html


def test_dataset_card(runs):
    out, early, exp = runs
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert sorted(front["language"]) == sorted(lang.split("_")[0] for lang in LANGS)
    assert {c["config_name"] for c in front["configs"]} == set(LANGS)
    assert all(c["data_files"][0]["path"].startswith("rebalance/lang_script=") for c in front["configs"])
    for lang, n in exp["rebalance_after"].items():
        assert re.search(rf"^\| {lang} \| [^|]* \| \w+ \| {n:,} \|", card, re.M), lang
    assert "Russian" in card  # language names from the language table
    assert "Common Crawl Terms of Use" in card and "Apache-2.0" in card
    assert "## Processing steps" in card and "**filter**" in card
    settings = card.split("```yaml", 1)[1].split("```", 1)[0]
    run = storage.read_json(str(out / "_run.json"))
    assert yaml.safe_load(settings) == run["config"]
    early_card = (early / "README.md").read_text()
    assert "**dedup** — not run yet" in early_card


def test_report_on_object_storage_url(runs):
    """An fsspec URL output (memory://, as s3:// goes through the same storage helpers)."""
    out, _, _ = runs
    mem = fsspec.filesystem("memory")
    root = "memory://bs-report-test/out"
    for p in out.rglob("*"):
        if p.is_file() and "report" not in p.parts and p.name != "README.md":
            data = p.read_bytes()
            if p.suffix == ".json" and "_manifests" in p.parts:  # manifests name files by their URL
                data = data.replace(str(out).encode(), root.encode())
            mem.pipe_file(root + "/" + str(p.relative_to(out)), data)
    try:
        stats = collect_run_stats(root)
        local = collect_run_stats(str(out))
        assert stats["languages"].drop("utf8_bytes").equals(local["languages"].drop("utf8_bytes"))
        assert stats["cluster_sizes"].equals(local["cluster_sizes"])
        res = write_report(root)
        assert res["html"] == root + "/report/index.html"
        assert storage.read_bytes(res["html"]).startswith(b"<!DOCTYPE html>")
        assert storage.read_bytes(root + "/report/languages.png").startswith(PNG_MAGIC)
        assert b"# Dataset card" in storage.read_bytes(root + "/README.md")
    finally:
        mem.rm("/bs-report-test", recursive=True)


def test_report_of_a_missing_output_is_a_clear_error(tmp_path):
    r = subprocess.run([BABELSIEVE, "report", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "not a babelsieve output" in r.stderr


def test_collect_run_stats_on_the_real_run(runs):
    out, _, _ = runs
    stats = collect_run_stats(str(out))
    ex = stats["stages"].filter(pl.col("stage") == "extract").row(0, named=True)
    ms = [m for m in read_manifests(str(out)) if m["stage"] == "extract"]
    assert ex["docs_out"] == sum(m["stats"]["docs_out"] for m in ms)
    assert ex["seconds"] == pytest.approx(sum(m["seconds"] for m in ms))
    logs = stats["logs"].filter(pl.col("stage") == "extract")
    assert sorted(logs.select(["task_id", "status"]).rows()) == [
        ("00000", "done"), ("00001", "done"), ("00001", "failed"), ("00002", "done")]
    html = (out / "report" / "index.html").read_text()
    assert "injected fault in extract/00001" in html  # the failed attempt, from the task logs


@pytest.mark.infra
def test_language_score_histogram_of_a_real_language_id_run(tmp_path, tmp_path_factory):
    """Default language ID (embedded lid.176 offline): the histogram is the Parquet `language_score` column."""
    out = tmp_path / "out"
    shard = shared_runs(tmp_path_factory)["shards"][0]
    r = subprocess.run([BABELSIEVE, "run", "--output", str(out), "--input", str(shard), "--no-progress",
                        "--workers", "1", "--only", "extract"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    stats = collect_run_stats(str(out))
    kept = pl.concat([pl.read_parquet(p) for p in (out / "extract").rglob("*.parquet")])
    removed_files = list((out / "removed" / "extract" / "language_score").glob("*.parquet"))
    removed = pl.concat([pl.read_parquet(p) for p in removed_files]) if removed_files else kept.head(0)
    ls = stats["language_score"]
    for name, df in (("kept", kept), ("removed", removed)):
        got = ls.filter(pl.col("set") == name)
        assert got["documents"].sum() == df.filter(pl.col("lang_script") != "und").height
        # bin by bin, against an independent binning of the column
        expect = (df.filter(pl.col("lang_script") != "und")
                  .with_columns((pl.col("language_score") * 20).floor().clip(0, 19).cast(pl.Int64).alias("b"))
                  .group_by("b").agg(pl.len().alias("n")))
        per_bin = got.group_by("bin_lo").agg(pl.col("documents").sum())
        assert {round(b * 20): n for b, n in per_bin.iter_rows()} == dict(expect.iter_rows())
    r = subprocess.run([BABELSIEVE, "report", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    dom = render_in_browser(out / "report" / "index.html", tmp_path)
    ok = {img["data-plot"]: img.get("data-ok") for img in dom.imgs}
    assert ok.get("language_score") == "1" and ok.get("languages") == "1"


# ------------------------------------------------------------------ a real run of every stage


@pytest.fixture(scope="module")
def every_stage_run(tmp_path_factory):
    """A real `babelsieve run` of every stage (language ID and the URL filter on, rebalance with
    FineWeb2's rehydration weights and a temperature mixture) on the sample in three shards plus a
    shard of republished and blocklisted pages, then `babelsieve report`: no synthetic stage."""
    from support.data import SAMPLE_WARC, split_warc
    from support.engines import copies_shard

    base = tmp_path_factory.mktemp("every-stage")
    shards = [*split_warc(SAMPLE_WARC, base / "warcs", 3), copies_shard(base / "warcs")]
    out = base / "out"
    cmd = [BABELSIEVE, "run", "--output", str(out), "--workers", "2", "--no-progress",
           "--set", "stages=[extract,dedup,filter,finalize,rebalance]", "--set", "rebalance.enabled=true",
           "--set", "rebalance.rehydration=fineweb2", "--set", "rebalance.temperature_alpha=0.5"]
    for s in shards:
        cmd += ["--input", str(s)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([BABELSIEVE, "report", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.infra
def test_every_plot_renders_from_a_real_run_of_every_stage(every_stage_run, tmp_path):
    out = every_stage_run
    stages = {m["stage"] for m in read_manifests(str(out))}
    assert {"extract", "dedup_annotate", "filter", "finalize", "rebalance"} <= stages
    dom = render_in_browser(out / "report" / "index.html", tmp_path)
    plots = {img.get("data-plot") for img in dom.imgs if "plot" in (img.get("class") or "")}
    assert plots == ALL_PLOTS, (plots, [n.get("data-plot") for n in dom.notes])
    for img in dom.imgs:
        assert img.get("data-ok") == "1", f"plot {img.get('data-plot')} did not render"
    assert not dom.notes  # no "stage not run" anywhere
    text = (out / "report" / "index.html").read_text()
    assert "Stage not run" not in text
