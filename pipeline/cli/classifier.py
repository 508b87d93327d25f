"""``babelsieve classifier train`` and ``babelsieve classifier eval``: fastText quality classifiers.

``train --positive P --negative N --out MODEL.bin`` reads documents (JSONL, ``.jsonl.gz`` or Parquet files,
globs or fsspec URLs, with a ``text`` column; ``--language L`` keeps the rows whose ``lang_script`` (else
``language``) is ``L``), prepares each text exactly as the ``classify`` stage will
(:func:`~babelsieve.pipeline.stages.classify.prepare_texts`), holds out a share of each class (``--holdout``,
shuffled with ``--seed``), trains a supervised fastText model through the binding (one thread: the same
data and seed give the same model) and reports the held-out precision/recall/F1/ROC AUC. Labels:
``__label__hq`` (positive) and ``__label__cc`` (negative, "common crawl"), the DCLM convention.

``eval MODEL --positive P --negative N`` scores both sets with the compiled predictor (the stage's numbers)
and reports precision, recall and F1 at ``--threshold``, and ROC AUC, overall and per language.

See docs/quality-classifiers.md.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from typing import Any

import click
import numpy as np

from babelsieve.pipeline.stages.classify import QualityModel, prepare_texts

POSITIVE, NEGATIVE = "__label__hq", "__label__cc"
# fastText training defaults (supervised), chosen for quality classifiers: word bigrams as DCLM's classifier,
# a smaller dim and bucket count than DCLM's (256, 2M) so a model stays ~130 MB; all are options.
TRAIN_DEFAULTS: dict[str, Any] = {"dim": 64, "wordNgrams": 2, "epoch": 5, "lr": 0.1, "minCount": 1,
                                  "bucket": 500_000, "minn": 0, "maxn": 0, "loss": "softmax"}


def read_documents(location: str, text_column: str = "text", language: str | None = None,
                   storage_options: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Texts and languages (``lang_script``, else ``language``, else ``und``) of JSONL/Parquet files at
    ``location`` (a path, glob or fsspec URL), optionally only those of ``language``."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = fsspec.open_files(location, "rb", **(storage_options or {}))
    if not files:
        raise click.BadParameter(f"no file matches {location}")
    texts: list[str] = []
    langs: list[str] = []
    for of in files:
        name = of.path
        with of as fh:
            data = fh.read()
        if name.endswith(".parquet"):
            import io

            table = pq.read_table(io.BytesIO(data))
            rows = table.to_pylist() if table.num_rows else []
        else:
            if name.endswith(".gz"):
                import gzip

                data = gzip.decompress(data)
            try:
                rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
            except (ValueError, pa.ArrowInvalid) as e:
                raise click.BadParameter(f"{name}: not JSON lines ({e})") from None
        for r in rows:
            if text_column not in r:
                raise click.BadParameter(f"{name}: no {text_column!r} column (use --text-column)")
            lang = r.get("lang_script") or r.get("language") or "und"
            if language and lang != language:
                continue
            texts.append(r[text_column] or "")
            langs.append(lang)
    return texts, langs


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None without both classes."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    i = 0
    while i < len(s):  # average rank of each run of ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(s), np.float64)
    r[order] = ranks
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics(scores: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 of ``score >= threshold`` as the positive prediction, and ROC AUC."""
    pred = scores >= np.float32(threshold)
    tp = int((pred & positive).sum())
    fp = int((pred & ~positive).sum())
    fn = int((~pred & positive).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"positives": int(positive.sum()), "negatives": int((~positive).sum()), "threshold": threshold,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "roc_auc": None if (auc := roc_auc(scores, positive)) is None else round(auc, 4)}


def evaluate(model: QualityModel, pos: list[str], neg: list[str], pos_langs: list[str], neg_langs: list[str],
             threshold: float, **prep: Any) -> dict[str, Any]:
    """Overall and per-language :func:`metrics` of ``model`` on prepared positive and negative texts."""
    scores = model.scores(prepare_texts(pos + neg, **prep))
    positive = np.array([True] * len(pos) + [False] * len(neg))
    langs = np.array(pos_langs + neg_langs, dtype=object)
    out = {"all": metrics(scores, positive, threshold)}
    for lang in sorted(set(langs.tolist())):
        m = langs == lang
        out[lang] = metrics(scores[m], positive[m], threshold)
    return out


def _print_metrics(result: dict[str, Any]) -> None:
    click.echo(f"{'language':<14} {'pos':>7} {'neg':>7} {'precision':>9} {'recall':>7} {'f1':>7} {'roc_auc':>8}")
    for lang, m in result.items():
        auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}"
        click.echo(f"{lang:<14} {m['positives']:>7} {m['negatives']:>7} {m['precision']:>9.4f} {m['recall']:>7.4f} "
                   f"{m['f1']:>7.4f} {auc:>8}")


def _prep_options(f):
    f = click.option("--max-chars", type=click.IntRange(min=1), default=None,
                     help="Use only the first N characters (as the classifier's max_chars).")(f)
    f = click.option("--lowercase", is_flag=True, help="Lower-case texts (as the classifier's lowercase).")(f)
    f = click.option("--newlines", type=click.Choice(["space", "remove"]), default="space", show_default=True,
                     help="Line breaks become spaces or are removed (as the classifier's newlines).")(f)
    f = click.option("--strip", is_flag=True, help="str.strip() texts first (as the classifier's strip).")(f)
    f = click.option("--text-column", default="text", show_default=True, help="Column holding the text.")(f)
    f = click.option("--language", "-l", default=None,
                     help="Only rows whose lang_script (else language) is this, e.g. deu_Latn.")(f)
    return f


@click.group("classifier")
def classifier_group() -> None:
    """Train and evaluate fastText quality classifiers for the classify stage."""


@classifier_group.command("train")
@click.option("--positive", "-p", required=True, help="High-quality documents: JSONL/Parquet path, glob or URL.")
@click.option("--negative", "-n", required=True, help="Other documents (e.g. a random crawl sample).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Model file to write (.bin).")
@_prep_options
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.1, show_default=True,
              help="Share of each class held out for evaluation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Shuffle and fastText seed.")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="Down-sample the larger class to the smaller one's size (before the held-out split).")
@click.option("--dim", type=int, default=TRAIN_DEFAULTS["dim"], show_default=True)
@click.option("--word-ngrams", type=int, default=TRAIN_DEFAULTS["wordNgrams"], show_default=True)
@click.option("--epoch", type=int, default=TRAIN_DEFAULTS["epoch"], show_default=True)
@click.option("--lr", type=float, default=TRAIN_DEFAULTS["lr"], show_default=True)
@click.option("--min-count", type=int, default=TRAIN_DEFAULTS["minCount"], show_default=True)
@click.option("--bucket", type=int, default=TRAIN_DEFAULTS["bucket"], show_default=True)
@click.option("--loss", type=click.Choice(["softmax", "ova", "hs"]), default="softmax", show_default=True)
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Threshold of the held-out report.")
def train_command(positive: str, negative: str, out: str, max_chars: int | None, lowercase: bool, newlines: str,
                  strip: bool, text_column: str, language: str | None, holdout: float, seed: int, balance: bool,
                  dim: int, word_ngrams: int, epoch: int, lr: float, min_count: int, bucket: int, loss: str,
                  threshold: float) -> None:
    """Train a fastText quality classifier (__label__hq vs __label__cc) and report held-out metrics."""
    prep = {"max_chars": max_chars, "lowercase": lowercase, "newlines": newlines, "strip": strip}
    pos, pos_l = read_documents(positive, text_column, language)
    neg, neg_l = read_documents(negative, text_column, language)
    if not pos or not neg:
        raise click.ClickException(f"need documents of both classes (positive: {len(pos)}, negative: {len(neg)})")
    rnd = random.Random(seed)
    pos_rows = list(zip(pos, pos_l, strict=True))
    neg_rows = list(zip(neg, neg_l, strict=True))
    rnd.shuffle(pos_rows)
    rnd.shuffle(neg_rows)
    if balance:
        n = min(len(pos_rows), len(neg_rows))
        pos_rows, neg_rows = pos_rows[:n], neg_rows[:n]
    n_pos_ho, n_neg_ho = int(len(pos_rows) * holdout), int(len(neg_rows) * holdout)
    train = [(POSITIVE, t) for t, _ in pos_rows[n_pos_ho:]] + [(NEGATIVE, t) for t, _ in neg_rows[n_neg_ho:]]
    rnd.shuffle(train)
    params = {**TRAIN_DEFAULTS, "dim": dim, "wordNgrams": word_ngrams, "epoch": epoch, "lr": lr,
              "minCount": min_count, "bucket": bucket, "loss": loss, "thread": 1, "seed": seed, "verbose": 0}
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            for label, line in zip((lab for lab, _ in train), prepare_texts([t for _, t in train], **prep),
                                   strict=True):
                f.write(f"{label} {line}")
        # training runs in a fresh interpreter: fastText's trainer has been seen to produce NaN weights in a
        # process that already ran other numeric code
        code = ("import fasttext, json, sys\n"
                "m = fasttext.train_supervised(sys.argv[1], **json.loads(sys.argv[3]))\n"
                "m.save_model(sys.argv[2])\n")
        tmp_model = os.path.join(tmp, "model.bin")
        r = subprocess.run([sys.executable, "-c", code, train_file, tmp_model, json.dumps(params)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise click.ClickException(f"fastText training failed: {r.stderr.strip()[-2000:]}")
        os.replace(tmp_model, out)
    summary: dict[str, Any] = {"positive": positive, "negative": negative, "language": language,
                               "train_positive": len(pos_rows) - n_pos_ho, "train_negative": len(neg_rows) - n_neg_ho,
                               "fasttext": params, "text_preparation": prep,
                               "labels": {"positive": POSITIVE, "negative": NEGATIVE}}
    if n_pos_ho and n_neg_ho:
        model = QualityModel(out, POSITIVE)
        ho_pos, ho_neg = pos_rows[:n_pos_ho], neg_rows[:n_neg_ho]
        summary["heldout"] = evaluate(model, [t for t, _ in ho_pos], [t for t, _ in ho_neg],
                                      [lang for _, lang in ho_pos], [lang for _, lang in ho_neg], threshold, **prep)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    click.echo(f"wrote {out} ({summary['train_positive']} positive, {summary['train_negative']} negative "
               f"training documents; details in {out}.json)")
    if "heldout" in summary:
        click.echo(f"held-out ({n_pos_ho} positive, {n_neg_ho} negative), threshold {threshold}:")
        _print_metrics(summary["heldout"])


@classifier_group.command("eval")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--positive", "-p", required=True, help="Documents that should score high.")
@click.option("--negative", "-n", required=True, help="Documents that should score low.")
@_prep_options
@click.option("--label", default=POSITIVE, show_default=True, help="The positive label of the model.")
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(model: str, positive: str, negative: str, max_chars: int | None, lowercase: bool, newlines: str,
                 strip: bool, text_column: str, language: str | None, label: str, threshold: float,
                 as_json: bool) -> None:
    """Precision, recall and F1 at THRESHOLD, and ROC AUC, of MODEL overall and per language."""
    prep = {"max_chars": max_chars, "lowercase": lowercase, "newlines": newlines, "strip": strip}
    try:
        m = QualityModel(model, label)
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="--label") from None
    except (ValueError, RuntimeError) as e:
        raise click.ClickException(f"{model}: not a usable fastText model ({e})") from None
    pos, pos_l = read_documents(positive, text_column, language)
    neg, neg_l = read_documents(negative, text_column, language)
    result = evaluate(m, pos, neg, pos_l, neg_l, threshold, **prep)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        _print_metrics(result)
