"""Classify stage: learned quality scores (fastText classifiers) per language, then decisions.

Input: the kept documents of the configured stage before it (by default ``filter``; the stage goes where
``classify`` stands in ``config.stages``), grouped into tasks by documents and bytes like every stage after
extract (:func:`~babelsieve.pipeline.core.tasks.work_sized_tasks`, ``config.tasks``): a big language is split
into several tasks, long-tail languages share one. A task classifies each of its languages on the
concatenation of that language's inputs (in input order). Each classifier of ``config.classify.classifiers``
that covers the language scores every document: the
probability fastText gives its positive ``label`` (float32, bit-identical to the fastText binding's
``predict(text, k=-1)``: :mod:`babelsieve.langid.fasttext_inference`), on the text prepared as
:func:`prepare_texts` says. It writes, per (task, language):

* kept:    ``<output>/classify/lang_script=<lang>/<task_id>.parquet``: the documents plus one
  ``quality_<name>`` column (float32) per classifier, and ``quality_<name>_bucket`` (int32: how many of
  ``buckets`` are <= the score) when it has buckets; null where a classifier does not cover the language.
  Every task writes every classifier's columns, so all languages share one schema.
* removed: ``<output>/removed/classify/<name>/<task_id>-<lang>.parquet``: documents scoring below the
  classifier's threshold (``thresholds[lang]``, else ``threshold``), with ``removal_reason``
  ``<name>:below_threshold``. A document below several thresholds is removed by the first classifier
  of the list.
* stats:   ``<output>/_stats/classify/<task_id>-<lang>.parquet`` (:data:`STATS_SCHEMA`): per language and
  classifier, a 20-bin score histogram and the documents of each bucket, with how many were kept.

A task's identity holds the sha256 of every model scoring one of its languages, so a replaced model re-scores
exactly the tasks it covers.

Signals, then decisions: the scores are stored, so ``babelsieve refilter OUTPUT -l LANG --set
classify.<name>.threshold=X`` (or ``.buckets=[...]``) re-decides from them without loading the model
(:func:`rethreshold`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import ClassifierConfig, ConfigError
from babelsieve.pipeline.core.documents import QUALITY_PREFIX, REMOVED_EXTRA, PieceReader, language_dir, write_table
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import (
    Stage,
    Task,
    TaskOutput,
    completed_files,
    inputs_by_language,
    task_pieces,
    work_sized_tasks,
)
from babelsieve.pipeline.stages import documents_input

SCORE_BINS = 20  # score histogram: 20 bins of width 0.05 over [0, 1]
LABEL_PREFIX = "__label__"
STATS_SCHEMA = pa.schema([
    pa.field("task_id", pa.string()),
    pa.field("lang_script", pa.string()),
    pa.field("classifier", pa.string()),
    pa.field("what", pa.string()),  # "score" (histogram bin) or "bucket"
    pa.field("bin", pa.int32()),  # histogram bin, or bucket number
    pa.field("lo", pa.float64()),
    pa.field("hi", pa.float64()),
    pa.field("documents", pa.int64()),
    pa.field("kept", pa.int64()),
])


def score_column(name: str) -> str:
    return f"{QUALITY_PREFIX}{name}"


def bucket_column(name: str) -> str:
    return f"{QUALITY_PREFIX}{name}_bucket"


def removal_reason(name: str) -> str:
    return f"{name}:below_threshold"


def prepare_texts(texts: list[str | None], max_chars: int | None = None, lowercase: bool = False,
                  newlines: str = "space", strip: bool = False) -> list[str]:
    """The lines a classifier scores (and ``babelsieve classifier train`` learns from), one per document, each
    ending with ``"\\n"`` (fastText reads one line), made in this order: the first ``max_chars`` characters
    (all when None); ``str.strip()`` with ``strip``; ``str.lower()`` with ``lowercase``; each ``"\\n"`` replaced
    by a space (``newlines="space"``, as DCLM does) or removed (``"remove"``, datatrove's
    ``FastTextClassifierFilter`` default). Nothing else changes: other whitespace (``\\r``, tabs) already
    separates fastText's tokens. A null text is ``""``. datatrove's filter in document mode is
    ``strip=True`` with ``newlines`` as its ``newline_replacement``."""
    sep = " " if newlines == "space" else ""
    out = []
    for t in texts:
        t = t or ""
        if max_chars is not None:
            t = t[:max_chars]
        if strip:
            t = t.strip()
        if lowercase:
            t = t.lower()
        out.append(t.replace("\n", sep) + "\n")
    return out


def prepare_for(texts: list[str | None], c: ClassifierConfig) -> list[str]:
    """:func:`prepare_texts` with a classifier's options."""
    return prepare_texts(texts, c.max_chars, c.lowercase, c.newlines, c.strip)


def _label_name(label: str) -> str:
    return label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else label


class QualityModel:
    """A fastText classifier's probability for one label: compiled (:mod:`~babelsieve.langid.fasttext_inference`)
    where the model allows, else fastText's binding (e.g. ``ns`` loss); the same float32 numbers either way."""

    def __init__(self, path: str, label: str):
        from babelsieve.langid.fasttext_inference import UnsupportedModel, load_fasttext_arrays

        self.path = path
        self.arrays = None
        self.binding = None
        # BABELSIEVE_CLASSIFY_MATRIX=private: a per-process copy of a dense model's input matrix on huge pages
        # (faster on large models, as much memory per worker as the binding), instead of the file's pages
        # shared by all workers of the machine
        private = os.environ.get("BABELSIEVE_CLASSIFY_MATRIX", "shared").lower() == "private"
        try:
            self.arrays = load_fasttext_arrays(path, private_matrix=private)
            labels = list(self.arrays.labels)
        except UnsupportedModel:
            import fasttext

            self.binding = fasttext.load_model(str(path))
            labels = [_label_name(x) for x in self.binding.get_labels()]
        self.labels = labels
        name = _label_name(label)
        if name not in labels:
            raise KeyError(f"{label!r} is not a label of {path} (its labels: "
                           f"{', '.join(LABEL_PREFIX + x for x in labels[:20])})")
        self.label_id = labels.index(name)

    def scores(self, lines: list[str]) -> np.ndarray:
        """float32 probability of the label per line (``predict(line, k=-1)``; 0 when fastText leaves the label
        out, e.g. an empty line or a hierarchical-softmax branch below its pruning bound)."""
        out = np.zeros(len(lines), np.float32)
        if not lines:
            return out
        if self.arrays is not None:
            from babelsieve.langid.fasttext_inference import predict_lines

            try:
                counts, ids, probs = predict_lines(self.arrays, lines, -1, 0.0)
            except Exception as e:  # noqa: BLE001 - e.g. numba cannot compile here: the binding gives the same numbers
                import logging

                import fasttext

                logging.getLogger(__name__).warning("compiled fastText predictor failed (%s: %s); using fastText's "
                                                    "binding for %s", type(e).__name__, e, self.path)
                self.arrays, self.binding = None, fasttext.load_model(str(self.path))
                return self.scores(lines)
            hit = (ids == self.label_id) & (np.arange(ids.shape[1])[None, :] < counts[:, None])
            rows, cols = np.nonzero(hit)
            out[rows] = probs[rows, cols]
            return out
        want = LABEL_PREFIX + self.labels[self.label_id]
        labels, probs = self.binding.f.multilinePredict(lines, -1, 0.0, "replace")
        for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
            for lab, p in zip(ls, ps, strict=True):
                if lab == want:
                    out[i] = np.float32(p)
        return out


_MODELS: dict[tuple[str, str, str], QualityModel] = {}  # per process: (location, sha256, label) -> model


def load_classifier(c: ClassifierConfig, sha256: str | None = None, key: str = "classify.classifiers") -> QualityModel:
    """The classifier's model, fetched/verified (:func:`~babelsieve.langid.models.fetch_model`) and loaded once
    per process. ``sha256``: the digest the plan saw (a model replaced since is refused). Problems raise
    :class:`ConfigError` naming the config key."""
    from babelsieve.langid.models import ChecksumMismatchError, ModelUnavailableError, fetch_model

    want = sha256 or c.sha256
    cache_key = (c.model, (want or "").lower(), c.label)
    if cache_key in _MODELS:
        return _MODELS[cache_key]
    try:
        path, digest = fetch_model(c.model, want)
    except (ModelUnavailableError, ChecksumMismatchError) as e:
        raise ConfigError(f"{key}.model: {e}") from None
    try:
        model = QualityModel(str(path), c.label)
    except KeyError as e:
        raise ConfigError(f"{key}.label: {e.args[0]}") from None
    except (ValueError, RuntimeError, OSError) as e:
        raise ConfigError(f"{key}.model: {c.model} is not a usable fastText model ({e})") from None
    _MODELS[(c.model, digest, c.label)] = _MODELS[cache_key] = model
    return model


def resolve_models(config) -> dict[str, str]:
    """Fetch, verify and load every classifier once (the driver, at plan time): ``{name: sha256}``.
    A missing or corrupt model, a file that is not a fastText model or a label the model lacks is a
    :class:`ConfigError` naming ``classify.classifiers[i].model`` / ``.label``, before any task runs."""
    out = {}
    for i, c in enumerate(config.classify.classifiers):
        from babelsieve.langid.models import fetch_model

        key = f"classify.classifiers[{i}]"
        try:
            _, digest = fetch_model(c.model, c.sha256)
        except Exception as e:  # noqa: BLE001 - re-raised as a config error naming the key
            raise ConfigError(f"{key}.model: {e}") from None
        load_classifier(c, digest, key)
        out[c.name] = digest
    return out


def add_buckets(table: pa.Table, c: ClassifierConfig) -> pa.Table:
    """Set (or drop) ``quality_<name>_bucket`` from the stored score column and ``c.buckets``."""
    col = bucket_column(c.name)
    if col in table.column_names:
        table = table.drop_columns([col])
    if not c.buckets:
        return table
    score = table.column(score_column(c.name))
    valid = np.asarray(score.is_valid().to_numpy(zero_copy_only=False), bool)
    s = np.nan_to_num(score.to_numpy(zero_copy_only=False).astype(np.float64), nan=0.0)
    # cut points compared in float32, as the scores are stored: a score equal to a cut point is in the upper bucket
    b = np.searchsorted(np.asarray(c.buckets, np.float32), s.astype(np.float32), side="right").astype(np.int32)
    arr = pa.array(b, type=pa.int32(), mask=~valid)
    at = table.column_names.index(score_column(c.name)) + 1
    return table.add_column(at, col, arr)


def decide(table: pa.Table, classifiers: list[ClassifierConfig], lang: str) -> list[str | None]:
    """Removal reason per document (None: kept): the first classifier whose threshold the score is below."""
    reasons: list[str | None] = [None] * table.num_rows
    undecided = np.ones(table.num_rows, bool)
    for c in classifiers:
        thr = c.threshold_for(lang)
        if thr is None or not c.applies_to(lang) or score_column(c.name) not in table.column_names:
            continue
        score = table.column(score_column(c.name))
        s = np.nan_to_num(score.to_numpy(zero_copy_only=False).astype(np.float64), nan=np.inf)
        below = undecided & (s.astype(np.float32) < np.float32(thr))
        for i in np.nonzero(below)[0].tolist():
            reasons[i] = removal_reason(c.name)
        undecided &= ~below
    return reasons


def stats_table(task_id: str, lang: str, table: pa.Table, reasons: list[str | None],
                classifiers: list[ClassifierConfig]) -> pa.Table:
    """:data:`STATS_SCHEMA` rows of one task: score histogram and buckets of each classifier covering ``lang``."""
    kept = np.array([r is None for r in reasons], bool)
    rows: list[dict[str, Any]] = []
    for c in classifiers:
        if not c.applies_to(lang):
            continue
        s = table.column(score_column(c.name)).to_numpy(zero_copy_only=False).astype(np.float64)
        bins = np.minimum((s * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
        for b in range(SCORE_BINS):
            m = bins == b
            if m.any():
                rows.append({"task_id": task_id, "lang_script": lang, "classifier": c.name, "what": "score", "bin": b,
                             "lo": b / SCORE_BINS, "hi": (b + 1) / SCORE_BINS, "documents": int(m.sum()),
                             "kept": int((m & kept).sum())})
        if c.buckets:
            bk = table.column(bucket_column(c.name)).to_numpy(zero_copy_only=False)
            edges = [0.0, *c.buckets, 1.0]
            for b in range(len(c.buckets) + 1):
                m = bk == b
                rows.append({"task_id": task_id, "lang_script": lang, "classifier": c.name, "what": "bucket",
                             "bin": b, "lo": edges[b], "hi": edges[b + 1], "documents": int(m.sum()),
                             "kept": int((m & kept).sum())})
    return pa.Table.from_pylist(rows, schema=STATS_SCHEMA)


def removed_url(out_base: str, name: str, task_id: str, lang: str) -> str:
    """Removed documents of one (task, language) by classifier ``name``: a task may hold several languages."""
    return storage.join(RunLayout(out_base).removed_dir("classify", name), f"{task_id}-{lang}.parquet")


def stats_url(out_base: str, task_id: str, lang: str) -> str:
    """The statistics file of one language of a classify task."""
    return storage.join(RunLayout(out_base).stats_dir("classify"), f"{task_id}-{lang}.parquet")


def write_decided(stage_out: str, out_base: str, task_id: str, lang: str, table: pa.Table,
                  reasons: list[str | None], classifiers: list[ClassifierConfig],
                  storage_options: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Write one (task, language)'s kept documents, removed ones (per classifier) and statistics; manifest
    entries (a part without rows gets no file)."""
    files = []
    if REMOVED_EXTRA.name in table.column_names:
        table = table.drop_columns([REMOVED_EXTRA.name])
    kept = table.filter(pa.array([r is None for r in reasons], type=pa.bool_()))
    if kept.num_rows:
        entry = write_table(language_dir(stage_out, lang) + f"/{task_id}.parquet", kept, storage_options)
        files.append({**entry, "kind": "documents", "lang_script": lang})
    with_reason = table.append_column(REMOVED_EXTRA, pa.array(reasons, type=pa.string()))
    for c in classifiers:
        reason = removal_reason(c.name)
        if reason not in reasons:
            continue
        part = with_reason.filter(pa.array([r == reason for r in reasons], type=pa.bool_()))
        files.append({**write_table(removed_url(out_base, c.name, task_id, lang), part, storage_options),
                      "kind": "removed", "lang_script": lang, "reason": reason})
    st = stats_table(task_id, lang, table, reasons, classifiers)
    if st.num_rows:
        entry = write_table(stats_url(out_base, task_id, lang), st, storage_options)
        files.append({**entry, "kind": "stats", "lang_script": lang})
    return files


def language_stats(n: int, reasons: list[str | None]) -> dict[str, int]:
    """Removals per reason of one (task, language), sorted by reason."""
    removed: dict[str, int] = {}
    for r in reasons:
        if r is not None:
            removed[r] = removed.get(r, 0) + 1
    return dict(sorted(removed.items()))


def combine_stats(per_language: dict[str, tuple[int, dict[str, int]]]) -> dict[str, Any]:
    """A task's manifest statistics from ``{lang: (documents, removed per reason)}``: documents in and out,
    removals per reason and kept documents per language (languages sorted)."""
    removed: dict[str, int] = {}
    languages: dict[str, int] = {}
    n_in = 0
    for lang in sorted(per_language):
        n, rem = per_language[lang]
        n_in += n
        languages[lang] = n - sum(rem.values())
        for r, k in rem.items():
            removed[r] = removed.get(r, 0) + k
    return {"docs_in": n_in, "docs_out": sum(languages.values()), "removed": dict(sorted(removed.items())),
            "languages": languages}


class ClassifyStage(Stage):
    name = "classify"

    def plan(self) -> list[Task]:
        files = completed_files(self.config, documents_input(self.config, self.name), kind="documents")
        # the model files' sha256 are part of each task's identity: a replaced model re-scores the tasks
        # holding a language it covers (and only those)
        digests = resolve_models(self.config) if files else {}
        tasks = []
        for t in work_sized_tasks(self.name, files, self.config):
            langs = set(t.params["lang_scripts"])
            models = {c.name: digests[c.name] for c in self.config.classify.classifiers
                      if any(c.applies_to(lang) for lang in sorted(langs))}
            tasks.append(Task(t.stage, t.task_id, t.inputs, {**t.params, "models": models}, t.input_digest))
        return tasks

    def run(self, task: Task) -> TaskOutput:
        files: list[dict[str, Any]] = []
        per_language: dict[str, tuple[int, dict[str, int]]] = {}
        reader = PieceReader(task_pieces(task), self.storage_options)
        for lang, pieces in inputs_by_language(task):
            got, n, removed = self._run_language(task, lang, reader.concat(pieces))
            files += got
            per_language[lang] = (n, removed)
        return TaskOutput(files=files, stats=combine_stats(per_language))

    def _run_language(self, task: Task, lang: str, table: pa.Table) -> tuple[list[dict[str, Any]], int,
                                                                             dict[str, int]]:
        """Score and decide one language's inputs of the task (concatenated in input order): files written,
        documents, removals per reason."""
        classifiers = self.config.classify.classifiers
        texts = table.column("text").to_pylist()
        for i, c in enumerate(classifiers):
            col = score_column(c.name)
            if c.applies_to(lang):
                model = load_classifier(c, task.params["models"][c.name], f"classify.classifiers[{i}]")
                arr = pa.array(model.scores(prepare_for(texts, c)), type=pa.float32())
            else:
                arr = pa.nulls(table.num_rows, pa.float32())
            if col in table.column_names:
                table = table.set_column(table.column_names.index(col), col, arr)
            else:
                table = table.append_column(col, arr)
            table = add_buckets(table, c)
        reasons = decide(table, classifiers, lang)
        files = write_decided(self.layout.stage_dir("classify"), self.config.output, task.task_id, lang, table,
                              reasons, classifiers, self.storage_options)
        return files, table.num_rows, language_stats(table.num_rows, reasons)
