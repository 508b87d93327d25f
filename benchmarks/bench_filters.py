"""Filter-stage throughput per core: babelsieve signals + decisions vs datatrove's three FineWeb2 filters.

Same documents (the fidelity fixture, tests/data/filter_fixture.jsonl.gz: real web pages + UDHR
texts + variants), same FineWeb2 settings per language (datatrove configured as
fineweb-2-pipeline.py with FineWeb-2's configs/*.yml; ours from the language table), one process
pinned to one core, CPU time of the process (time.process_time; the machine may be shared).

Figures per language and in total:

* **end to end, steady state**: text in, decision out, tokenizers already loaded. Both sides
  tokenize each document once with the same tokenizer backend (datatrove caches the words between
  its three filters with ``lru_cache``, cleared before each timed pass; our per-process run cache of
  spaCy tokens, see langid/word_tokenizers.py, is emptied before each timed pass too, so a pass
  only profits from runs repeated inside it). ``--scale K`` repeats each language's documents K
  times in one pass (bigger batches; repeats then hit our run cache: a favourable case for us,
  reported separately).
* **filter logic**: words given (pre-tokenized, datatrove's ``split_into_words`` patched to a
  lookup), i.e. what the filter implementations themselves cost.
* **including load** (``--with-load``): one fresh process per side (imports, tokenizer loading,
  one pass over all languages), CPU time of that process.

Before timing, both sides run once (warm-up) and decisions are compared (they must be identical).
The best of ``--repeat`` passes is reported.

Reproduce:  HF_HUB_OFFLINE=1 python benchmarks/bench_filters.py [--langs deu_Latn,...] [--repeat 3] [--core 0]
                [--scale 4] [--with-load] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inputs import TEST_DATA, add_data_argument, fineweb2_config_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# --data DIR (default tests/data): the fidelity fixture and the archive of FineWeb-2's per-language configs
# (or --fineweb2-configs DIR, FineWeb-2's own configs/ folder).
FIXTURE = TEST_DATA / "filter_fixture.jsonl.gz"
FW2 = TEST_DATA / "fineweb2-configs.json.gz"
DEFAULT_LANGS = "deu_Latn,spa_Latn,rus_Cyrl,arb_Arab,cmn_Hani,hin_Deva,tha_Thai,jpn_Jpan"


def datatrove_filters(label: str):
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    cfg = yaml.safe_load(fineweb2_config_text(FW2, label))
    return [
        GopherRepetitionFilter(language=label, dup_para_frac=0, dup_line_char_frac=0, dup_para_char_frac=0,
                               dup_line_frac=cfg["dup_line_frac"], top_n_grams=cfg["top_n_grams"],
                               dup_n_grams=cfg["dup_n_grams"]),
        FineWebQualityFilter(language=label, short_line_thr=999, char_duplicates_ratio=0.1,
                             line_punct_thr=cfg["line_punct_thr"], new_line_ratio=cfg["new_line_ratio"]),
        GopherQualityFilter(language=label, max_avg_word_length=cfg["max_avg_word_length"],
                            min_avg_word_length=cfg["min_avg_word_length"], stop_words=cfg["stopwords"],
                            max_non_alpha_words_ratio=cfg["max_non_alpha_words_ratio"], min_stop_words=2),
    ]


def run_datatrove(filters, texts):
    from datatrove.data import Document

    out = []
    for i, t in enumerate(texts):
        reason = None
        for f in filters:
            try:
                res = f.filter(Document(text=t, id=str(i)))
            except ZeroDivisionError:
                reason = "error"
                break
            if isinstance(res, tuple) and not res[0]:
                reason = res[1]
                break
            if res is False:
                reason = "false"
                break
        out.append(reason)
    return out


def run_ours(label, texts, settings, words=None):
    from babelsieve.filters.decisions import decide_arrays
    from babelsieve.filters.signals import compute_signal_arrays

    sig = compute_signal_arrays(texts, label, stopwords=settings.stopwords, words=words)
    return [None if r is None else r.split(":", 1)[1] for r in decide_arrays(sig, settings)]


def clear_our_caches(label):
    from babelsieve.langid.word_tokenizers import load_word_tokenizer

    chunks = getattr(load_word_tokenizer(label), "_chunks", None)
    if chunks is not None:
        chunks._cache.clear()


def best(fn, repeat):
    times, res = [], None
    for _ in range(repeat):
        t0 = time.process_time()  # CPU time of this (single-threaded, pinned) process: robust to other load
        res = fn()
        times.append(time.process_time() - t0)
    return min(times), res


def main() -> None:
    global FW2, FIXTURE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--langs", default=DEFAULT_LANGS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="repeat each language's documents K times per pass")
    ap.add_argument("--with-load", action="store_true", help="also: one fresh process per side, load included")
    ap.add_argument("--child", choices=["ours", "datatrove"], help=argparse.SUPPRESS)
    add_data_argument(ap)
    ap.add_argument("--fineweb2-configs", type=Path,
                    help="FineWeb-2's configs/ folder (default: DATA/fineweb2-configs.json.gz)")
    args = ap.parse_args()
    FIXTURE = args.data / "filter_fixture.jsonl.gz"
    FW2 = args.fineweb2_configs or args.data / "fineweb2-configs.json.gz"
    if args.child:
        return child(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    from datatrove.pipeline.filters import fineweb_quality_filter, gopher_quality_filter, gopher_repetition_filter
    from datatrove.utils import text as dt_text

    from babelsieve.filters.settings import language_settings
    from babelsieve.filters.signals import get_tokenizer

    by = load_fixture(set(args.langs.split(",")))
    rows = []
    totals = defaultdict(float)
    n_total = 0
    for label in args.langs.split(","):
        texts = by[label] * args.scale
        if not texts:
            print(f"{label}: no documents in the fixture", file=sys.stderr)
            continue
        settings = language_settings(label)
        filters = datatrove_filters(label)
        # warm-up (tokenizer loading, spaCy caches), and the reference decisions
        ref = run_datatrove(filters, texts)
        assert run_ours(label, texts, settings) == ref, f"{label}: decisions differ"
        # each timed callable binds this language's values as defaults (best() calls it right away anyway)
        t_dt, _ = best(lambda filters=filters, texts=texts:
                       (dt_text.split_into_parts.cache_clear(), run_datatrove(filters, texts))[1], args.repeat)
        t_ours, _ = best(lambda label=label, texts=texts, settings=settings:
                         (clear_our_caches(label), run_ours(label, texts, settings))[1], args.repeat)
        # filter logic only: the same words for both
        words = get_tokenizer(label)(texts)
        lookup = dict(zip(texts, words, strict=True))

        def pre(text, language=None, *, lookup=lookup):
            return lookup[text]

        saved = [(m, m.split_into_words)
                 for m in (fineweb_quality_filter, gopher_quality_filter, gopher_repetition_filter)]
        for m, _ in saved:
            m.split_into_words = pre
        try:
            t_dt_logic, _ = best(lambda filters=filters, texts=texts: run_datatrove(filters, texts), args.repeat)
        finally:
            for m, fn in saved:
                m.split_into_words = fn
        t_ours_logic, _ = best(lambda label=label, texts=texts, settings=settings, words=words:
                               run_ours(label, texts, settings, words=words), args.repeat)
        t_tok, _ = best(lambda label=label, texts=texts:
                        (clear_our_caches(label), get_tokenizer(label)(texts))[1], args.repeat)
        n = len(texts)
        n_total += n
        for k, v in (("dt", t_dt), ("ours", t_ours), ("dt_logic", t_dt_logic), ("ours_logic", t_ours_logic),
                     ("tok", t_tok)):
            totals[k] += v
        rows.append((label, n, sum(map(len, texts)), t_tok, t_dt, t_ours, t_dt_logic, t_ours_logic))

    print(f"\nfilter stage, docs/s on one core (core {args.core}), best of {args.repeat}; "
          f"fixture {FIXTURE.name} x{args.scale}")
    hdr = (f"{'language':10s} {'docs':>5s} {'MB':>5s} | {'tokenize':>8s} | {'datatrove':>9s} {'ours':>8s} "
           f"{'ratio':>6s} | {'dt logic':>9s} {'our logic':>9s} {'ratio':>6s}")
    print(hdr)
    print("-" * len(hdr))
    for label, n, chars, tt, a, b, c, d in rows:
        print(f"{label:10s} {n:5d} {chars / 1e6:5.2f} | {n / tt:8.0f} | {n / a:9.0f} {n / b:8.0f} {a / b:5.1f}x"
              f" | {n / c:9.0f} {n / d:9.0f} {c / d:5.1f}x")
    print("-" * len(hdr))
    t = totals
    print(f"{'all':10s} {n_total:5d} {'':5s} | {n_total / t['tok']:8.0f} | {n_total / t['dt']:9.0f} "
          f"{n_total / t['ours']:8.0f} "
          f"{t['dt'] / t['ours']:5.1f}x | {n_total / t['dt_logic']:9.0f} {n_total / t['ours_logic']:9.0f} "
          f"{t['dt_logic'] / t['ours_logic']:5.1f}x")
    print("\ndecisions identical on every benchmarked document (asserted).")
    print("end to end includes word tokenization (same backend both sides; our run cache emptied before each pass);")
    print("'tokenize' = our tokenizer alone; 'logic' = words given.")
    if args.with_load:
        with_load(args)


def load_fixture(langs):
    by = defaultdict(list)
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["lang_script"] in langs:
                by[d["lang_script"]].append(d["text"])
    return by


def child(args) -> None:
    """One side, fresh process: imports, tokenizer loading and one pass over every language."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    langs = args.langs.split(",")
    by = load_fixture(set(langs))
    n = 0
    if args.child == "ours":
        from babelsieve.filters.settings import language_settings

        for label in langs:
            n += len(run_ours(label, by[label] * args.scale, language_settings(label)))
    else:
        for label in langs:
            n += len(run_datatrove(datatrove_filters(label), by[label] * args.scale))
    print(n)


def with_load(args) -> None:
    import subprocess

    res = {}
    for side in ("datatrove", "ours"):
        times = []
        for _ in range(2):
            before = os.times()
            out = subprocess.run(
                ["taskset", "-c", str(args.core), sys.executable, __file__, "--child", side, "--langs", args.langs,
                 "--scale", str(args.scale), "--data", str(args.data), "--fineweb2-configs", str(FW2)],
                capture_output=True, text=True, check=True,
            )
            after = os.times()
            times.append((after.children_user - before.children_user)
                         + (after.children_system - before.children_system))
        res[side] = (min(times), int(out.stdout.strip().splitlines()[-1]))
    (t_dt, n), (t_ours, _) = res["datatrove"], res["ours"]
    print(f"\nincluding load (fresh process per side: imports + tokenizer loading + one pass, CPU s, best of 2; "
          f"{n} docs)")
    print(f"datatrove {t_dt:7.1f} s {n / t_dt:7.1f} docs/s | ours {t_ours:7.1f} s {n / t_ours:7.1f} docs/s "
          f"| ratio {t_dt / t_ours:.2f}x")


if __name__ == "__main__":
    main()
