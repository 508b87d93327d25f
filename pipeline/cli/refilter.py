"""``babelsieve refilter OUTPUT --language xxx_Scrp --set key=value``: re-threshold one language.

Reads that language's filter-stage outputs (kept documents under ``filter/lang_script=<lang>/`` and
removed ones under ``removed/filter/**`` listed in the filter manifests), re-decides from the stored
``sig_*`` columns with the run's settings plus the ``--set`` overrides, and rewrites that language's
kept/removed files and ``_stats/filter`` files. Nothing is extracted or re-tokenized, except when
``--set stopwords=[...]`` changes the stopword list: then only ``sig_stopword_count`` is recomputed
(word tokenizer + set intersection).

The filter manifests are updated (same config hash) so later stages (finalize) see the new files,
and an audit record of each refilter is appended to ``_refilter/<lang>.jsonl``. Later stages'
outputs for that language are *not* recomputed here; the next ``babelsieve run`` into this output
redoes exactly those (their inputs' recorded sha256 changed). New files are written before any old
one is deleted (see :func:`refilter`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import click
import pyarrow as pa

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import ConfigError, PipelineConfig, parse_assignment, without_redacted
from babelsieve.pipeline.core.documents import read_table, write_table
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.output_lock import OutputLock, OutputLockedError
from babelsieve.pipeline.core.tasks import manifest_from_storage, manifest_to_storage, manifest_url


def _parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
    try:
        return dict(parse_assignment(s) for s in sets)
    except ConfigError as e:
        raise click.BadParameter(str(e), param_hint="--set") from None


def _load_config(output: str, storage_options: dict[str, Any]):
    url = RunLayout(output).run_marker
    if not storage.exists(url, storage_options):
        raise click.ClickException(f"{output} has no _run.json: not a babelsieve output directory")
    cfg = without_redacted(storage.read_json(url, storage_options)["config"])  # credentials: storage_options
    cfg["output"] = output
    cfg["storage_options"] = {**(cfg.get("storage_options") or {}), **storage_options}
    return PipelineConfig.model_validate(cfg)


def refilter(
    output: str, language: str, overrides: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Re-decide one language from stored signals; returns a summary (docs, removed per reason).

    Holds the output's lock (:mod:`.output_lock`) while it rewrites: a run or another refilter of the
    same output meanwhile is refused, never interleaved with it."""
    opts = storage_options or {}
    lock = OutputLock.acquire(_load_config(output, opts), command="refilter")
    try:
        return _refilter_locked(output, language, overrides, opts)
    finally:
        lock.release()


def _refilter_locked(output: str, language: str, overrides: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """:func:`refilter` once the output's lock is held."""
    from babelsieve.filters.apply import stats_rows, stats_table
    from babelsieve.filters.decisions import decide_arrays
    from babelsieve.filters.signals import get_tokenizer, stopword_counts
    from babelsieve.pipeline.stages.filter import filter_settings_for, stats_url, write_decided

    config = _load_config(output, opts)
    merged = {**(config.filter.overrides.get(language) or {}), **overrides}
    config.filter.overrides = {**config.filter.overrides, language: merged}
    settings, _ = filter_settings_for(config, language)
    base = RunLayout(output).manifests_dir("filter")
    manifests = [manifest_from_storage(output, storage.read_json(u, opts))
                 for u in storage.list_files(base, ".json", opts)]
    # a filter task may hold several languages (work-sized tasks): only this language's files are rewritten
    manifests = [m for m in manifests if language in ((m.get("params") or {}).get("lang_scripts")
                                                      or [(m.get("params") or {}).get("lang_script")])]
    if not manifests:
        raise click.ClickException(f"no filter-stage output for {language} in {output}")
    totals: dict[str, int] = {}
    n_docs = 0
    # Write, then retire: every new file is first written below a staging directory; only when all
    # of them are written are they renamed into place, task by task, each task's manifest updated
    # and its files that are no longer listed deleted. A failure while writing (disk full, a file
    # size limit) leaves the previous files and manifests untouched, so a retry starts clean.
    staging = storage.join(RunLayout(output).refilter_dir(), f"staging-{uuid.uuid4().hex}")
    staged: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    try:
        for m in manifests:
            task_id = m["task_id"]
            parts = []
            mine = [f for f in m["files"] if f.get("lang_script") in (language, None)]
            others = [f for f in m["files"] if f.get("lang_script") not in (language, None)]
            for f in mine:
                if f.get("kind") in ("documents", "removed"):
                    parts.append(read_table(f["path"], opts))
            table = pa.concat_tables([p.drop_columns(["removal_reason"]) if "removal_reason" in p.column_names else p
                                      for p in parts], promote_options="default")
            # keep the original document order: sort by the input row order is lost; sort by id for determinism
            table = table.sort_by([("id", "ascending")]) if table.num_rows else table
            if "stopwords" in overrides:
                words = get_tokenizer(language)([t or "" for t in table.column("text").to_pylist()])
                table = table.set_column(table.column_names.index("sig_stopword_count"), "sig_stopword_count",
                                         pa.array(stopword_counts(words, settings.stopwords)))
            reasons = decide_arrays(table, settings).tolist()
            files = write_decided(storage.join(staging, "filter"), staging, task_id, language, table, reasons, opts)
            has_sizes = "minhash_cluster_size" in table.column_names
            sizes = table.column("minhash_cluster_size").to_pylist() if has_sizes else None
            entry = write_table(stats_url(staging, task_id, language),
                                stats_table(stats_rows(task_id, language, reasons, sizes)), opts)
            files.append({**entry, "kind": "stats", "lang_script": language})
            removed: dict[str, int] = {}
            for r in reasons:
                if r is not None:
                    removed[r] = removed.get(r, 0) + 1
                    totals[r] = totals.get(r, 0) + 1
            n_docs += len(reasons)
            old_stats = m.get("stats", {})
            # the task's totals: its other languages' counts stay, this language's are replaced
            other_removed: dict[str, int] = dict(old_stats.get("removed") or {})
            for f in mine:
                if f.get("kind") == "removed" and f.get("reason") in other_removed:
                    other_removed[f["reason"]] -= int(f.get("rows") or 0)
            for r, k in removed.items():
                other_removed[r] = other_removed.get(r, 0) + k
            languages = {**(old_stats.get("languages") or {}), language: len(reasons) - sum(removed.values())}
            m["stats"] = {**old_stats, "docs_out": sum(languages.values()),
                          "removed": {r: k for r, k in sorted(other_removed.items()) if k > 0},
                          "languages": languages, "refiltered": overrides}
            staged.append((m, others + files))
        for m, files in staged:
            _commit(output, config, m, files, staging, opts)
    finally:
        storage.remove(staging, opts)
    summary = {"language": language, "overrides": overrides, "docs": n_docs, "kept": n_docs - sum(totals.values()),
               "removed": dict(sorted(totals.items())), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    audit = storage.join(RunLayout(output).refilter_dir(), f"{language}.jsonl")
    old = storage.read_bytes(audit, opts).decode() if storage.exists(audit, opts) else ""
    storage.publish_bytes(audit, (old + json.dumps(summary) + "\n").encode(), opts)
    return summary


def _commit(output: str, config: Any, manifest: dict[str, Any], staged: list[dict[str, Any]], staging: str,
            opts: dict[str, Any], stage: str = "filter") -> None:
    """Rename one task's staged files into place, publish its manifest, delete its files no longer listed."""
    files = []
    for f in staged:
        if not f["path"].startswith(staging.rstrip("/") + "/"):  # another language's file of the task: kept
            files.append(f)
            continue
        final = storage.join(output, f["path"][len(staging.rstrip("/")) + 1:])
        fs, src = storage.filesystem(f["path"], opts)
        _, dst = storage.filesystem(final, opts)
        fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(src, dst)
        files.append({**f, "path": final})
    old, manifest["files"] = manifest["files"], files
    storage.publish_json(manifest_url(config, stage, manifest["task_id"]), manifest_to_storage(output, manifest),
                         opts)
    root = output.rstrip("/") + "/"
    kept = {f["path"] for f in files}
    for f in old:
        if f["path"].startswith(root) and f["path"] not in kept:  # never outside this output (a v1 manifest)
            storage.remove(f["path"], opts, recursive=False)


@click.command("refilter")
@click.argument("output")
@click.option("--language", "-l", required=True, help="language-script label, e.g. rus_Cyrl")
@click.option("--set", "sets", multiple=True, help="threshold override key=value (e.g. dup_line_frac=0.5, or "
              "classify.<name>.threshold=0.3 / classify.<name>.buckets=[0.2,0.5]); repeatable")
def refilter_command(output: str, language: str, sets: tuple[str, ...]) -> None:
    """Re-threshold LANGUAGE in OUTPUT from stored signal columns (no extraction, no re-tokenizing); with
    ``classify.*`` keys, from the stored ``quality_*`` scores (no model is loaded)."""
    from babelsieve.filters.settings import SETTING_NAMES

    overrides = _parse_sets(sets)
    classify = {k: v for k, v in overrides.items() if k.startswith("classify.")}
    if classify:
        if len(classify) != len(overrides):
            raise click.BadParameter("classify.* and filter settings are re-decided by separate runs: give one kind",
                                     param_hint="--set")
        _reclassify(output, language, classify)
        return
    bad = sorted(set(overrides) - SETTING_NAMES)
    if bad:
        raise click.BadParameter(
            f"unknown setting(s) {bad}; known: {', '.join(sorted(SETTING_NAMES))}", param_hint="--set"
        )
    try:
        summary = refilter(output, language, overrides)
    except (ValueError, KeyError, OutputLockedError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(
            f"{output}: could not write the refiltered files ({e}). The previous files and manifests are "
            "unchanged; free space (or raise the limit) and run the same command again.") from None
    click.echo(f"{language}: {summary['kept']} kept of {summary['docs']} documents")
    for r, k in summary["removed"].items():
        click.echo(f"  {r}: {k}")
    click.echo("Later stages (finalize, rebalance) were not rerun for this language: the next `babelsieve run` "
               "into this output redoes them.")


def _reclassify(output: str, language: str, overrides: dict[str, Any]) -> None:
    """``refilter --set classify.<name>.threshold=X``: :func:`babelsieve.pipeline.stages.classify.rethreshold`."""
    from pydantic import ValidationError


    try:
        summary = rethreshold(output, language, overrides)
    except (ValueError, KeyError, OutputLockedError, ValidationError) as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(
            f"{output}: could not write the re-decided files ({e}). The previous files and manifests are "
            "unchanged; free space (or raise the limit) and run the same command again.") from None
    click.echo(f"{language}: {summary['kept']} kept of {summary['docs']} documents (classify, scores not recomputed)")
    for r, k in summary["removed"].items():
        click.echo(f"  {r}: {k}")
    click.echo("Later stages (finalize, rebalance) were not rerun for this language: the next `babelsieve run` "
               "into this output redoes them.")


# ------------------------------------------------------------------- re-decide the classify stage


def parse_overrides(overrides: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """``{"classify.<name>.threshold": x, "classify.<name>.buckets": [...]}`` -> ``{name: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "classify" or parts[2] not in ("threshold", "buckets"):
            raise ValueError(f"{key}: expected classify.<name>.threshold or classify.<name>.buckets")
        if parts[1] not in names:
            raise ValueError(f"{key}: no classifier named {parts[1]!r} in this run (classifiers: {names})")
        out.setdefault(parts[1], {})[parts[2]] = value
    return out


def rethreshold(output: str, language: str, overrides: dict[str, Any],
                storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-decide one language's classify outputs from the stored ``quality_*`` columns with new thresholds
    or buckets (``{"classify.<name>.threshold": 0.3}``); no model is read. Same protocol as
    :func:`refilter`: the output's lock, every new file staged first, then each
    task's files moved into place and its manifest rewritten, an audit line in ``_refilter/<lang>.jsonl``."""
    from babelsieve.pipeline.stages import classify as cls

    opts = storage_options or {}
    config = _load_config(output, opts)
    classifiers = [c.model_copy(deep=True) for c in config.classify.classifiers]
    by_name = parse_overrides(overrides, [c.name for c in classifiers])
    for c in classifiers:
        if c.name in by_name and not c.applies_to(language):
            raise ValueError(f"classifier {c.name!r} does not score {language} (its languages: {c.languages})")
        for key, value in by_name.get(c.name, {}).items():
            if key == "threshold":
                c.thresholds = {**c.thresholds, language: value}  # validated by the model's field validator
            else:
                c.buckets = list(value or [])
    lock = OutputLock.acquire(config, command="refilter")
    try:
        base = RunLayout(output).manifests_dir("classify")
        manifests = [manifest_from_storage(output, storage.read_json(u, opts))
                     for u in storage.list_files(base, ".json", opts)]
        # a classify task may hold several languages (work-sized tasks): only this language's rows are re-decided
        # and only its files rewritten; the task's other languages keep their files byte for byte
        manifests = [m for m in manifests if language in _task_languages(m)]
        if not manifests:
            raise ValueError(f"no classify-stage output for {language} in {output}")
        staging = storage.join(RunLayout(output).refilter_dir(), f"staging-{uuid.uuid4().hex}")
        staged = []
        totals: dict[str, int] = {}
        n_docs = 0
        try:
            for m in manifests:
                mine = [f for f in m["files"] if f.get("lang_script") == language]
                others = [f for f in m["files"] if f.get("lang_script") != language]
                parts = [read_table(f["path"], opts) for f in mine if f.get("kind") in ("documents", "removed")]
                if not parts:  # the language's inputs of this task had no rows: nothing to re-decide
                    continue
                parts = [p.drop_columns([cls.REMOVED_EXTRA.name]) if cls.REMOVED_EXTRA.name in p.column_names else p
                         for p in parts]
                table = pa.concat_tables(parts, promote_options="default")
                table = table.sort_by([("id", "ascending")]) if table.num_rows else table
                for c in classifiers:
                    table = cls.add_buckets(table, c)
                reasons = cls.decide(table, classifiers, language)
                files = cls.write_decided(storage.join(staging, "classify"), staging, m["task_id"], language, table,
                                          reasons, classifiers, opts)
                removed = cls.language_stats(table.num_rows, reasons)
                for r, k in removed.items():
                    totals[r] = totals.get(r, 0) + k
                n_docs += table.num_rows
                m["stats"] = {**m.get("stats", {}), **_restated(m, language, table.num_rows, removed),
                              "refiltered": overrides}
                order = {lang: i for i, lang in enumerate(dict.fromkeys(_task_languages(m)))}
                # the task's files stay grouped by language in the task's order (a stable sort)
                staged.append((m, sorted(others + files, key=lambda f: order.get(f.get("lang_script"), len(order)))))
            for m, files in staged:
                _commit(output, config, m, files, staging, opts, stage="classify")
        finally:
            storage.remove(staging, opts)
    finally:
        lock.release()
    summary = {"language": language, "overrides": overrides, "docs": n_docs, "kept": n_docs - sum(totals.values()),
               "removed": dict(sorted(totals.items())), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    audit = storage.join(RunLayout(output).refilter_dir(), f"{language}.jsonl")
    old = storage.read_bytes(audit, opts).decode() if storage.exists(audit, opts) else ""
    storage.publish_bytes(audit, (old + json.dumps(summary) + "\n").encode(), opts)
    return summary


def _task_languages(manifest: dict[str, Any]) -> list[str]:
    """The languages a classify task read: ``lang_scripts`` of a work-sized task (aligned with its inputs),
    ``lang_script`` of a one-file task of earlier versions, else the languages of its file entries."""
    params = manifest.get("params") or {}
    if params.get("lang_scripts"):
        return list(params["lang_scripts"])
    if params.get("lang_script"):
        return [params["lang_script"]]
    return [f["lang_script"] for f in manifest.get("files", []) if f.get("lang_script")]


def _restated(manifest: dict[str, Any], language: str, n: int, removed: dict[str, int]) -> dict[str, Any]:
    """A classify task's manifest statistics with ``language``'s part replaced by ``n`` documents and
    ``removed`` (per reason); its other languages' parts are taken from their file entries as recorded."""
    from babelsieve.pipeline.stages.classify import combine_stats

    per_language: dict[str, tuple[int, dict[str, int]]] = {}
    for f in manifest.get("files", []):
        lang = f.get("lang_script")
        if lang is None or lang == language or f.get("kind") not in ("documents", "removed"):
            continue
        docs, rem = per_language.setdefault(lang, (0, {}))
        rows = int(f.get("rows") or 0)
        if f.get("kind") == "removed":
            rem[f["reason"]] = rem.get(f["reason"], 0) + rows
        per_language[lang] = (docs + rows, rem)
    # a language of the task without any row has no file entry: it stays, with 0 documents
    for lang in (manifest.get("stats") or {}).get("languages") or {}:
        per_language.setdefault(lang, (0, {}))
    per_language[language] = (n, removed)
    return combine_stats({lang: (docs, dict(sorted(rem.items()))) for lang, (docs, rem) in per_language.items()})
