"""The dataset card (``<output>/README.md``), in the shape of FineWeb2's card.

Front matter a Hugging Face hub can read (languages, size category, one config per language
subset pointing at the last stage's Parquet files), then: summary, languages table, data fields,
processing steps with this run's numbers, settings (the saved config), licence notes.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import yaml

from babelsieve.pipeline.core.config import redact_secrets

FIELDS = [
    ("text", "the extracted text (trafilatura, precision-favouring)"),
    ("id", "WARC record id of the source page"),
    ("dump", "Common Crawl snapshot (e.g. CC-MAIN-2024-10)"),
    ("url", "URL of the page"),
    ("date", "crawl date (WARC-Date)"),
    ("file_path", "WARC file the page came from"),
    ("language", "ISO 639-3 code (e.g. `rus`)"),
    ("language_score", "language-ID confidence of the top label"),
    ("language_script", "ISO 15924 script (e.g. `Cyrl`)"),
    ("minhash_cluster_size", "size of the MinHash duplicate cluster this document was kept from (after dedup)"),
    ("top_langs", "JSON object of the labels above the top-langs threshold and their scores"),
    ("lang_script", "babelsieve's partition key, `language_script` pair (e.g. `rus_Cyrl`)"),
]

STEP_TEXT = {
    "extract": "HTML responses (status 200) of the WARC files; FineWeb URL filter (block lists, banned words); "
               "text extraction with trafilatura favouring precision; language identification; removal of "
               "documents below their language's minimum language score.",
    "dedup": "global MinHash deduplication per language (5-gram word shingles from each language's word tokenizer, "
             "14 bands x 8 hashes, 64-bit hashes); one document kept per duplicate cluster, with "
             "`minhash_cluster_size` recorded on it.",
    "filter": "FineWeb2's per-language heuristic filters (Gopher repetition, FineWeb quality, Gopher quality) with "
              "thresholds and stopwords from the language table; every removed document is kept aside under "
              "`removed/filter/<filter>/`.",
    "classify": "learned quality scores from fastText classifiers per language (`quality_<name>` columns, buckets "
                "in `quality_<name>_bucket`); documents below a classifier's threshold are kept aside under "
                "`removed/classify/<name>/`.",
    "finalize": "PII anonymisation (emails, IP addresses), ftfy text fixes, trafilatura table-artifact fixes.",
    "rebalance": "rehydration (upsampling by duplicate-cluster size with per-language weights) and mixing across "
                 "languages toward a target.",
}

LICENCE = """\
* **Source text.** Every document is text extracted from pages in Common Crawl. Use of this data is subject to
  the [Common Crawl Terms of Use](https://commoncrawl.org/terms-of-use); the pages themselves remain under the
  rights of their authors. FineWeb2, whose recipe this run follows, publishes its data under ODC-By 1.0 subject to
  the same terms; choose and state the licence of *this* output accordingly before publishing it.
* **Configurations.** The per-language settings (language-score minimums, filter thresholds, stopwords) are
  derived from FineWeb2's published configurations, Apache-2.0 (Penedo et al., 2025, *FineWeb2: One Pipeline to
  Scale Them All*).
* **Models.** The embedded language-ID model is fastText lid.176 (CC-BY-SA-3.0); GlotLID v3 is Apache-2.0.
  Models are used to label the data and are not part of it.
* **Personal information.** Email and IP addresses are anonymised by the finalize stage when it ran with
  `finalize.pii: true`; other personal information may remain.
"""


def size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
              (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B")]
    for b, name in bounds:
        if n < b:
            return name
    return "100B<n<1T"


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.2f}{unit}"
        n /= 1024
    return f"{n:.2f}PB"


def language_name(label: str) -> str:
    try:
        from babelsieve.langid.language_table import get_language

        return get_language(label).name
    except Exception:  # noqa: BLE001 - unknown or malformed labels (e.g. `und`) have no name
        return "undetermined" if label == "und" else ""


def _fmt(n: Any) -> str:
    return "-" if n is None else f"{int(n):,}"


def dataset_card(stats: dict[str, pl.DataFrame], run: dict[str, Any] | None, output: str) -> str:
    """The dataset card (``README.md``) of a run: Hub front matter, summary, subsets, fields, steps, settings."""
    # redact_secrets again: a _run.json written before redaction existed may still hold credentials.
    config = redact_secrets((run or {}).get("config") or {})
    output = redact_secrets(output)
    langs = stats["languages"]
    doc_stages = [s for s in stats["stages"]["stage"].to_list() if s in set(langs["stage"].to_list())]
    last = doc_stages[-1] if doc_stages else None
    final = langs.filter(pl.col("stage") == last) if last else langs.head(0)
    final = final.filter(pl.col("docs_out") > 0).sort(["docs_out", "lang_script"], descending=[True, False])
    total_docs = int(final["docs_out"].sum()) if final.height else 0
    removed_by_lang = (stats["removal"].group_by("lang_script").agg(pl.col("removed").sum())
                       if stats["removal"].height else pl.DataFrame({"lang_script": [], "removed": []}))
    removed = dict(removed_by_lang.iter_rows())
    front = _front_matter(final, last, total_docs, run)
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += _summary_section(stats, final, last, total_docs, run, config, output)
    lines += _languages_section(final, last, removed)
    lines += ["", "## Data fields", ""]
    lines += [f"* `{name}`: {desc}" for name, desc in FIELDS]
    lines += ["", "## Processing steps", ""]
    lines += _steps_section(stats, config)
    lines += _closing_sections(config)
    return "\n".join(lines)


def _front_matter(final: pl.DataFrame, last: str | None, total_docs: int,
                  run: dict[str, Any] | None) -> dict[str, Any]:
    """The Hugging Face Hub's YAML header: licence, languages, size, one config per subset."""
    codes = sorted({lab.split("_")[0] for lab in final["lang_script"].to_list() if lab != "und"})
    front: dict[str, Any] = {
        "pretty_name": f"babelsieve output {(run or {}).get('config_hash', '')}".strip(),
        "license": "other",
        "license_name": "common-crawl-terms-of-use",
        "license_link": "https://commoncrawl.org/terms-of-use",
        "task_categories": ["text-generation"],
        "language": codes,
        "size_categories": [size_category(total_docs)],
        "configs": [
            {"config_name": lab, "data_files": [{"split": "train", "path": f"{last}/lang_script={lab}/*.parquet"}]}
            for lab in final["lang_script"].to_list()
        ],
    }
    return front


def _summary_section(stats: dict[str, pl.DataFrame], final: pl.DataFrame, last: str | None, total_docs: int,
                     run: dict[str, Any] | None, config: dict[str, Any], output: str) -> list[str]:
    """Title and the summary: documents, subsets, sizes, words, dump, shards."""
    lines: list[str] = []
    lines += [
        "# Dataset card",
        "",
        f"Multilingual web text produced by babelsieve from Common Crawl WARC files, following "
        f"FineWeb2's recipe. Output location: `{output}`; configuration hash `{(run or {}).get('config_hash', '?')}`.",
        "",
        "## Summary",
        "",
        f"* documents: **{total_docs:,}** in **{final.height}** language-script subsets (after stage `{last}`)"
        if last else "* no stage has written documents yet",
        f"* Parquet size: {human_bytes(final['bytes_out'].sum() if final.height else 0)}",
    ]
    if final.height and final["utf8_bytes"].null_count() < final.height:
        lines.append(f"* UTF-8 text: {human_bytes(final['utf8_bytes'].sum())}")
    if final.height and final["words"].null_count() < final.height:
        lines.append(f"* words: {int(final['words'].sum()):,}")
    dumps = sorted({str(v) for v in ((config.get("inputs") or {}).get("dump"),) if v})
    if dumps:
        lines.append(f"* dump: {', '.join(dumps)}")
    n_inputs = stats["tasks"].filter(pl.col("stage") == "extract").height
    n_inputs = stats["tasks"].filter(pl.col("stage") == "extract").height
    return lines + [f"* WARC shards processed: {n_inputs:,}", "", "## Languages and subsets", ""]


def _languages_section(final: pl.DataFrame, last: str | None, removed: dict[str, int]) -> list[str]:
    """One table row per language-script subset."""
    lines: list[str] = []
    lines += [
        "Each subset is the folder `" + (last or "<stage>") + "/lang_script=<subset>/`. Removed documents (with the "
        "name of the step that removed them in `removal_reason`) are under `removed/<stage>/<reason>/`.",
        "",
        "| subset | name | script | documents | words | UTF-8 bytes | Parquet bytes | removed documents |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in final.iter_rows(named=True):
        lab = r["lang_script"]
        script = lab.split("_")[1] if "_" in lab else ""
        lines.append(f"| {lab} | {language_name(lab)} | {script} | {_fmt(r['docs_out'])} | {_fmt(r['words'])} | "
                     f"{human_bytes(r['utf8_bytes']) if r['utf8_bytes'] is not None else '-'} | "
                     f"{human_bytes(r['bytes_out'])} | {_fmt(removed.get(lab, 0))} |")
    return lines


def _steps_section(stats: dict[str, pl.DataFrame], config: dict[str, Any]) -> list[str]:
    """One numbered line per configured stage: tasks, core-hours, documents in and out, removals."""
    lines: list[str] = []
    st = stats["stages"]
    configured = config.get("stages") or []
    step_no = 0
    for group in configured or ["extract"]:
        rows = st.filter((pl.col("stage") == group) | pl.col("stage").str.starts_with(group + "_"))
        step_no += 1
        text = STEP_TEXT.get(group, "")
        if not rows.height:
            lines.append(f"{step_no}. **{group}** — not run yet in this output. {text}")
            continue
        tasks = int(rows["tasks"].sum())
        secs = float(rows["seconds"].sum())
        d_in = rows["docs_in"].drop_nulls()
        d_out = rows.filter(pl.col("docs_out").is_not_null())["docs_out"]
        nums = f"{tasks:,} tasks, {secs / 3600:.3f} core-hours"
        if d_in.len():
            nums += f", documents in {int(d_in[0]):,}"
        if d_out.len():
            nums += f", out {int(d_out[-1]):,}"
        reasons = stats["stage_reasons"].filter(pl.col("stage").is_in(rows["stage"].to_list())
                                                & (pl.col("what") == "removed"))
        if reasons.height:
            nums += "; removed: " + ", ".join(f"{r['reason']} {r['count']:,}" for r in
                                              reasons.group_by("reason").agg(pl.col("count").sum())
                                              .sort("reason").iter_rows(named=True))
        lines.append(f"{step_no}. **{group}** ({nums}). {text}")
    return lines


def _closing_sections(config: dict[str, Any]) -> list[str]:
    """Settings (the saved config), licence, considerations, citation."""
    lines: list[str] = []
    lines += ["", "## Settings", "", "The configuration saved by the run (`_run.json`); rerun with "
              "`babelsieve run CONFIG` to reproduce byte-identical outputs.", "", "```yaml",
              yaml.safe_dump(config, sort_keys=True, allow_unicode=True).rstrip() if config else "# _run.json missing",
              "```", "", "## Licence and terms", "", LICENCE, "## Considerations", "",
              "* Language labels come from an automatic classifier; low-resource languages contain mislabelled "
              "documents, and closely related languages are confused.",
              "* Heuristic filters remove some good text and keep some bad text; thresholds are per language and can "
              "be changed without recomputing the signals.",
              "* Web text contains biased, offensive or false content; nothing here removes it beyond the filters "
              "listed.",
              "", "## Citation", "", "```bibtex",
              "@misc{penedo2025fineweb2,\n  title={FineWeb2: One Pipeline to Scale Them All -- Adapting Pre-Training "
              "Data Processing to Every Language},\n  author={Guilherme Penedo and Hynek Kydl{\\'\\i}{\\v{c}}ek and "
              "Vinko Sabol{\\v{c}}ec and Bettina Messmer and Negar Foroutan and Amir Hossein Kargaran and Colin "
              "Raffel and Martin Jaggi and Leandro Von Werra and Thomas Wolf},\n  year={2025},\n  "
              "eprint={2506.20920},\n  archivePrefix={arXiv}\n}",
              "```", ""]
    return lines

