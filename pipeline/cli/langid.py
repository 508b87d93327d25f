"""click commands: ``languages list|show``, ``models pull``, ``langid eval|detect``.

The main CLI (pipeline/cli/main.py) registers the groups ``languages``, ``models`` and ``langid``;
they also run standalone: ``python -m babelsieve.pipeline.cli.langid languages show rus_Cyrl``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

import click

__all__ = ["languages", "models", "langid", "evaluate", "cli"]


# ---------------------------------------------------------------- languages
@click.group(help="The language table (FineWeb2 configs + GlotLID labels).")
def languages():
    pass


@languages.command("list", help="List language-script labels: label, name, script, has config, tokenizer.")
@click.option("--script", "script_", default=None, help="Only this ISO 15924 script, e.g. Cyrl.")
@click.option("--with-config/--all", "with_config", default=False, help="Only labels with a FineWeb2 config.")
@click.option("--tokenizer", default=None, help="Only labels whose tokenizer name contains this, e.g. spacy:xx.")
@click.option("--grep", default=None, help="Substring of label or name (case-insensitive).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def languages_list(script_, with_config, tokenizer, grep, as_json):
    from babelsieve.langid.language_table import get_language, list_languages

    n = 0
    if not as_json:
        click.echo(f"{'label':<10} {'name':<32} {'script':<6} {'config':<6} tokenizer")
    for lab in list_languages(with_config_only=with_config):
        if script_ and not lab.endswith("_" + script_):
            continue
        e = get_language(lab)
        if tokenizer and tokenizer not in e.tokenizer:
            continue
        if grep and grep.lower() not in lab.lower() and grep.lower() not in e.name.lower():
            continue
        n += 1
        if as_json:
            click.echo(json.dumps({"label": lab, "name": e.name, "script": e.script,
                                   "has_fineweb2_config": e.has_fineweb2_config, "tokenizer": e.tokenizer},
                                  ensure_ascii=False))
        else:
            click.echo(
                f"{lab:<10} {e.name[:32]:<32} {e.script:<6} "
                f"{'yes' if e.has_fineweb2_config else 'no':<6} {e.tokenizer}"
            )
    if not as_json:
        click.echo(f"{n} labels", err=True)


@languages.command("show", help="All settings of one label (unknown labels: defaults of their script).")
@click.argument("label")
def languages_show(label):
    from babelsieve.langid.language_table import get_language

    try:
        e = get_language(label)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="LABEL") from err
    click.echo(json.dumps(e.to_dict(), ensure_ascii=False, indent=1))


# ---------------------------------------------------------------- models
@click.group(help="Language-ID model files (GlotLID v3 cache; lid.176 is embedded).")
def models():
    pass


@models.command("pull", help="Fetch a model into the cache (HF hub by default, or --url: any fsspec URL).")
@click.argument("name", type=click.Choice(["glotlid"]))
@click.option("--url", default=None, help="fsspec URL of model_v3.bin (file://, s3://, https://, hf://).")
@click.option("--cache", default=None, help="Cache dir (default $BABELSIEVE_CACHE or ~/.cache/babelsieve).")
@click.option("--sha256", default=None, help="Expected sha256 of the file.")
@click.option("--force", is_flag=True, help="Replace a cached model.")
def models_pull(name, url, cache, sha256, force):
    from babelsieve.langid.models import ChecksumMismatchError, ModelUnavailableError, pull_glotlid

    try:
        path = pull_glotlid(url=url, cache=cache, sha256=sha256, force=force)
    except (ModelUnavailableError, ChecksumMismatchError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    rec = json.loads(path.with_name(path.name + ".json").read_text())
    click.echo(f"{name}: {path} sha256={rec['sha256']} ({rec['size'] / 1e6:.1f} MB, from {rec['source']})")


@models.command("status", help="Which language-ID backend is used by default, and where the models are.")
@click.option("--cache", default=None)
def models_status(cache):
    from babelsieve.langid.models import find_glotlid, glotlid_path, lid176_path

    g = find_glotlid(cache)
    click.echo(f"glotlid: {g if g else 'not pulled (' + str(glotlid_path(cache)) + ')'}")
    click.echo(f"lid176:  {lid176_path()} (embedded)")
    click.echo(f"default backend: {'glotlid' if g else 'lid176'}")


# ---------------------------------------------------------------- langid
@click.group(help="Language identification.")
def langid():
    pass


def evaluate(records: list[dict], backend=None, batch_size: int = 1024) -> dict:
    """Per-label precision/recall/F1 and macro-F1 over the gold labels (predictions of labels
    absent from the gold set count as false positives of nothing, i.e. as misses only)."""
    from babelsieve.langid.lid import identify

    texts = [r["text"] for r in records]
    gold = [r["label"] for r in records]
    t0 = time.perf_counter()
    preds = []
    for i in range(0, len(texts), batch_size):
        preds.extend(p.label for p in identify(texts[i : i + batch_size], backend=backend))
    secs = time.perf_counter() - t0
    tp, fp, fn = Counter(), Counter(), Counter()
    confusions: dict[str, Counter] = {}
    for g, p in zip(gold, preds, strict=True):  # identify() returns one prediction per text
        if g == p:
            tp[g] += 1
        else:
            fp[p] += 1
            fn[g] += 1
            confusions.setdefault(g, Counter())[p] += 1
    per = {}
    for lab in sorted(set(gold)):
        prec = tp[lab] / (tp[lab] + fp[lab]) if tp[lab] + fp[lab] else 0.0
        rec = tp[lab] / (tp[lab] + fn[lab]) if tp[lab] + fn[lab] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": tp[lab] + fn[lab],
                    "confused_with": dict(confusions.get(lab, Counter()).most_common(3))}
    macro = sum(v["f1"] for v in per.values()) / len(per) if per else 0.0
    acc = sum(tp.values()) / len(gold) if gold else 0.0
    from babelsieve.langid.lid import get_backend

    b = get_backend(backend)
    supported = b.supported_labels()
    sup = [v["f1"] for lab, v in per.items() if lab in supported]
    for lab, v in per.items():
        v["supported"] = lab in supported
    return {"n": len(gold), "accuracy": acc, "macro_f1": macro, "per_label": per, "seconds": secs,
            "backend": b.name, "n_labels_supported": len(sup),
            "macro_f1_supported": sum(sup) / len(sup) if sup else 0.0}


@langid.command("eval", help="Evaluate on a JSONL file with fields text,label: per-label P/R/F1 and macro-F1.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--backend", type=click.Choice(["glotlid", "lid176"]), default=None,
              help="Default: GlotLID if pulled, else lid.176.")
@click.option("--worst", default=15, show_default=True, help="How many of the worst labels to print.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Write all figures as JSON.")
@click.option("--all", "show_all", is_flag=True, help="Print every label, not only the worst.")
def langid_eval(file, backend, worst, json_out, show_all):
    records = []
    with open(file, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                records.append({"text": r["text"], "label": r["label"]})
            except (ValueError, KeyError) as e:
                raise click.ClickException(f"{file}:{ln}: not a JSON object with 'text' and 'label' ({e})") from e
    if not records:
        raise click.ClickException(f"{file}: no records")
    res = evaluate(records, backend=backend)
    per = res["per_label"]
    rows = sorted(per.items(), key=lambda kv: (not kv[1]["supported"], kv[1]["f1"], kv[0]))
    if not show_all:
        rows = rows[:worst]
    click.echo("worst labels first; labels the backend cannot output at all are listed last (marked *)")
    click.echo(f"{'label':<10} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}  confused with")
    for lab, v in rows:
        conf = ", ".join(f"{k}:{c}" for k, c in v["confused_with"].items())
        mark = " " if v["supported"] else "*"
        click.echo(
            f"{lab + mark:<10} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f} {v['support']:5d}  {conf}"
        )
    click.echo(
        f"backend={res['backend']} records={res['n']} labels={len(per)} accuracy={res['accuracy']:.4f} "
        f"macro-F1={res['macro_f1']:.4f} ({res['n'] / max(res['seconds'], 1e-9):.0f} docs/s)"
    )
    click.echo(
        f"on the {res['n_labels_supported']} labels the backend can output: macro-F1={res['macro_f1_supported']:.4f}"
    )
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(res, f, ensure_ascii=False, indent=1)


@langid.command("detect", help="Identify the language of each line of FILE (or stdin).")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--backend", type=click.Choice(["glotlid", "lid176"]), default=None)
def langid_detect(file, backend):
    from babelsieve.langid.lid import identify

    lines = [line.rstrip("\n") for line in file]
    for p in identify(lines, backend=backend):  # one prediction per line, in order
        top = {k: round(v, 4) for k, v in p.top_langs.items()}
        click.echo(json.dumps({"label": p.label, "score": round(p.score, 4), "top_langs": top}, ensure_ascii=False))


@click.group(help="babelsieve language tools (standalone entry point of babelsieve.langid).")
def cli():
    pass


cli.add_command(languages)
cli.add_command(models)
cli.add_command(langid)

if __name__ == "__main__":
    cli()
