"""Build configs/languages/languages.json, the language table, from the reference data.

Inputs (not shipped; clone the repos at the commits below):
  * FineWeb-2 per-language configs ``configs/*.yml`` (1929 files) and
    ``fineweb2-language-distribution.csv`` (names, sizes), huggingface/fineweb-2 @ d0defb2, Apache-2.0
  * GlotLID v3 label list ``languages-v3.md``, cisnlp/GlotLID @ d63cc2f, Apache-2.0
  * the lid.176 label list, read from the model shipped in langid/data/lid.176.ftz
  * datatrove 0.10.1's tokenizer_assignment.csv (through babelsieve.langid.word_tokenizers)

Build-time only dependencies: ``pip install pyyaml langcodes iso639-lang`` (runtime needs none of them).

    python configs/build_language_table.py --fineweb2 PATH/TO/fineweb-2 --glotlid PATH/TO/GlotLID

The FineWeb2 values are copied exactly (the filters must take identical decisions to datatrove
configured from the same yml). Labels of GlotLID with no FineWeb2 config get no entry of their own:
the loader falls back to ``script_defaults`` (per-script medians of the FineWeb2 configs, or the
median over all configs for scripts FineWeb2 has no config for).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
OUT = HERE / "languages" / "languages.json"

FINEWEB2_COMMIT = "d0defb2"
GLOTLID_COMMIT = "d63cc2f"

NUM_KEYS = [
    "language_score",
    "dup_line_frac",
    "line_punct_thr",
    "new_line_ratio",
    "min_avg_word_length",
    "max_avg_word_length",
    "max_non_alpha_words_ratio",
]
INT_KEYS = {"min_avg_word_length", "max_avg_word_length"}

# lid.176 codes whose meaning differs from ISO, or that lid.176 splits further (languages-notes 3.2)
LID176_OVERRIDES = {"als": "gsw", "bh": "bho", "no": "nob", "ms": "zsm", "ku": "kmr", "sh": "hbs"}
# "hbs" (Serbo-Croatian) is resolved at prediction time from the script: Cyrl -> srp, else hrv
# (hrv_Latn is the largest of srp_Latn/hrv_Latn/bos_Latn in FineWeb2).

# Minimum lid.176 probability to accept a document (lid.176 scores are not GlotLID scores).
# 0.5 by default; lower for languages that lid.176 gets right with low confidence because a close
# neighbour shares the probability mass (measured on the UDHR dev set, see langid/README.md).
LID176_DEFAULT_MIN = 0.5
LID176_MIN_EXCEPTIONS: dict[str, float] = {}


def median(values, integer=False):
    m = statistics.median(values)
    return int(round(m)) if integer else round(float(m), 3)


def read_glotlid_labels(path: Path) -> list[str]:
    labels = re.findall(r"^\|\s*\d+\s*\|\s*([a-z]{3}_[A-Z][a-z]{3})\s*\|", path.read_text(encoding="utf-8"), re.M)
    assert len(labels) == len(set(labels)) == 2102, len(labels)
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fineweb2", required=True, help="FineWeb-2 checkout (configs/*.yml, the language CSV)")
    ap.add_argument("--glotlid", required=True, help="GlotLID checkout (languages-v3.md)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    fw2 = Path(args.fineweb2)

    from babelsieve.langid.word_tokenizers import tokenizer_name

    glotlid = read_glotlid_labels(Path(args.glotlid) / "languages-v3.md")
    glot_set = set(glotlid)

    # names and sizes from the distribution table
    names: dict[str, str] = {}
    size: dict[str, int] = defaultdict(int)
    with open(fw2 / "fineweb2-language-distribution.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            sub = row["subset"]
            if sub.endswith("_removed"):
                continue
            names.setdefault(sub, row["name"])
            size[sub] += int(row["utf8_bytes"] or 0)

    languages: dict[str, dict] = {}
    for p in sorted((fw2 / "configs").glob("*.yml")):
        label = p.stem
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
        assert set(cfg) == {*NUM_KEYS, "dup_n_grams", "top_n_grams", "stopwords"}, (label, cfg.keys())
        assert label in glot_set, label
        entry = {"name": names.get(label, label.split("_")[0]), "script": label.split("_")[1]}
        for k in NUM_KEYS:
            entry[k] = cfg[k]
        entry["dup_n_grams"] = [list(x) for x in cfg["dup_n_grams"]]
        entry["top_n_grams"] = [list(x) for x in cfg["top_n_grams"]]
        entry["stopwords"] = list(cfg["stopwords"])
        entry["tokenizer"] = tokenizer_name(label)
        languages[label] = entry
    assert len(languages) == 1929, len(languages)

    # per-script defaults: medians of that script's configs; "_global" = median over all configs
    def defaults(entries: list[dict]) -> dict:
        d = {k: median([e[k] for e in entries], k in INT_KEYS) for k in NUM_KEYS}
        for key in ("dup_n_grams", "top_n_grams"):
            ns = [n for n, _ in entries[0][key]]
            d[key] = [[n, median([dict(e[key])[n] for e in entries])] for n in ns]
        d["stopwords"] = []  # no stopword list: the stopword check must be skipped
        d["n_configs"] = len(entries)
        return d

    by_script: dict[str, list[dict]] = defaultdict(list)
    for e in languages.values():
        by_script[e["script"]].append(e)
    script_defaults = {s: defaults(es) for s, es in sorted(by_script.items())}
    script_defaults["_global"] = defaults(list(languages.values()))

    # GlotLID labels without a FineWeb2 config: names only
    from iso639 import Lang

    def iso_name(code: str) -> str:
        try:
            return Lang(code).name
        except Exception:
            return {"und": "Undetermined", "zxx": "No linguistic content"}.get(code, code)

    glotlid_only = {lab: names.get(lab) or iso_name(lab.split("_")[0]) for lab in glotlid if lab not in languages}

    # ---- lid.176 -> iso639-3 codes
    import fasttext
    import langcodes

    model = HERE.parent / "langid" / "data" / "lid.176.ftz"
    lid_codes = [lab.removeprefix("__label__") for lab in fasttext.load_model(str(model)).get_labels()]
    glot_codes: dict[str, list[str]] = defaultdict(list)
    for lab in glotlid:
        glot_codes[lab.split("_")[0]].append(lab)

    def label_size(lab: str) -> int:
        return size.get(lab, 0)

    lid176: dict[str, str] = {}
    for c in lid_codes:
        if c in LID176_OVERRIDES:
            lid176[c] = LID176_OVERRIDES[c]
            continue
        a3 = langcodes.Language.get(c).to_alpha3()
        if a3 not in glot_codes:
            inds = [x.pt3 for x in Lang(a3).individuals() if x.pt3 in glot_codes]
            assert inds, (c, a3)
            a3 = max(inds, key=lambda code: max(label_size(lab) for lab in glot_codes[code]))
        lid176[c] = a3
    # the primary (largest) GlotLID label of every code, used when the text's script is not one of the code's
    primary = {}
    for code in sorted(set(lid176.values()) | {"srp", "hrv"}):
        if code == "hbs":
            continue
        labs = glot_codes[code]
        primary[code] = max(labs, key=lambda lab: (label_size(lab), lab.endswith("_Latn")))

    table = {
        "provenance": {
            "generated_by": "configs/build_language_table.py",
            "fineweb2": {
                "source": "https://github.com/huggingface/fineweb-2"
                          " (configs/*.yml, fineweb2-language-distribution.csv)",
                "commit": FINEWEB2_COMMIT,
                "license": "Apache-2.0",
                "n_configs": len(languages),
                "note": "filter thresholds, language_score and stopwords copied exactly from configs/{label}.yml",
            },
            "glotlid": {
                "source": "https://github.com/cisnlp/GlotLID (languages-v3.md)",
                "commit": GLOTLID_COMMIT,
                "license": "Apache-2.0",
                "n_labels": len(glotlid),
            },
            "lid176": {
                "source": "fastText lid.176.ftz (https://fasttext.cc/docs/en/language-identification.html)",
                "license": "CC-BY-SA-3.0",
                "mapping": "overrides + langcodes alpha3 + dominant individual of macrolanguages by FineWeb2 size",
            },
            "tokenizers": "datatrove 0.10.1 assets/tokenizer_assignment.csv (Apache-2.0) with offline substitutes",
        },
        "script_defaults": script_defaults,
        "lid176": {
            "codes": lid176,
            "primary_label": primary,
            "min_score_default": LID176_DEFAULT_MIN,
            "min_score_exceptions": LID176_MIN_EXCEPTIONS,
        },
        "glotlid_only": glotlid_only,
        "languages": languages,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n",
                   encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(languages)} configs, "
          f"{len(glotlid_only)} GlotLID-only labels")


if __name__ == "__main__":
    main()
