"""Quality-classifier scoring on one core: the classify stage's scoring vs datatrove's ``FastTextClassifierFilter``.

Model: DCLM-shaped (supervised, softmax, ``wordNgrams 2``, ``dim 256``, no character n-grams, ``--bucket``
word-bigram buckets: DCLM's own uses fastText's default 2,000,000, i.e. a 2 GB input matrix), trained here
in a fresh process on repository data: the pages of ``tests/data/filter_fixture.jsonl.gz`` (1,690 extracted
web pages, 50+ languages) as ``__label__hq`` against as many junk documents (word salad drawn from the
pages' vocabulary and boilerplate made of their short menu/footer lines) as ``__label__cc``.

Documents scored: the same 1,690 pages, ``--rounds`` times. Same text preparation on both sides:
datatrove's document mode is ``text.strip().replace("\\n", newline_replacement)`` then fastText's
``predict(k=-1)``; we configure ``newline_replacement=" "`` there and ``strip=True, newlines="space"`` here
(:func:`babelsieve.pipeline.stages.classify.prepare_texts`), and check that every score is identical.

* babelsieve: ``prepare_texts`` + ``QualityModel.scores`` (the compiled predictor over a batch, what a
  classify task does between reading and writing Parquet), in batches of ``--batch`` documents;
* datatrove 0.10.1: ``FastTextClassifierFilter(model, keep_labels=("hq", 0.5), newline_replacement=" ")``,
  ``filter(doc)`` per ``Document`` (its model loaded before timing);
* for reference, fastText's binding alone: ``model.predict(text, k=-1)`` per document.

Times are CPU seconds of this process (``time.process_time``), best of ``--repeat``, the process pinned to
one CPU; the load average is printed (other jobs on the machine slow a pinned process down through shared
caches). Start cost (model load) is printed separately.

Reproduce:
    python benchmarks/bench_classify.py                     # bucket 2,000,000 (2 GB model), ~2-4 min
    python benchmarks/bench_classify.py --bucket 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "filter_fixture.jsonl.gz"


def load_pages() -> list[str]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def junk_documents(pages: list[str], rnd: random.Random) -> list[str]:
    """As many junk documents as pages: half word salad (words drawn from all pages), half boilerplate."""
    vocabulary = [w for p in pages for w in p.split()]
    short = [ln.strip() for p in pages for ln in p.split("\n") if 0 < len(ln.split()) <= 5]
    out = [" ".join(rnd.choice(vocabulary) for _ in p.split()) for p in pages[: len(pages) // 2]]
    out += ["\n".join(rnd.choice(short) for _ in range(rnd.randint(5, 30))) for _ in pages[len(pages) // 2:]]
    return out


def train(path: Path, pages: list[str], bucket: int, epoch: int) -> float:
    """Train the DCLM-shaped model into ``path`` in a fresh process; returns the seconds it took."""
    from babelsieve.pipeline.stages.classify import prepare_texts

    rnd = random.Random(0)
    rows = ([f"__label__hq {t}" for t in prepare_texts(pages, strip=True)]
            + [f"__label__cc {t}" for t in prepare_texts(junk_documents(pages, rnd), strip=True)])
    rnd.shuffle(rows)
    data = path.with_suffix(".txt")
    data.write_text("".join(rows), encoding="utf-8")
    args = {"dim": 256, "wordNgrams": 2, "minn": 0, "maxn": 0, "bucket": bucket, "loss": "softmax", "epoch": epoch,
            "lr": 0.1, "minCount": 1, "thread": 1, "seed": 0, "verbose": 0}
    code = ("import fasttext, json, sys\n"
            "m = fasttext.train_supervised(sys.argv[1], **json.loads(sys.argv[3]))\n"
            "m.save_model(sys.argv[2])\n")
    t0 = time.time()
    subprocess.run([sys.executable, "-c", code, str(data), str(path), json.dumps(args)], check=True)
    return time.time() - t0


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bucket", type=int, default=2_000_000, help="word-bigram buckets (DCLM: 2,000,000)")
    ap.add_argument("--epoch", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="times the 1,690 pages are scored per timing")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000, help="documents per compiled call (a task's file: more)")
    ap.add_argument("--cpu", type=int, default=0, help="CPU to pin to (-1: no pinning)")
    ap.add_argument("--model", type=Path, default=None, help="score with this model instead of training one")
    ap.add_argument("--private-matrix", action="store_true",
                    help="BABELSIEVE_CLASSIFY_MATRIX=private: our input matrix copied onto huge pages")
    a = ap.parse_args()
    if a.private_matrix:
        os.environ["BABELSIEVE_CLASSIFY_MATRIX"] = "private"
    if a.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {a.cpu})
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    pages = load_pages()
    docs = pages * a.rounds
    with tempfile.TemporaryDirectory() as tmp:
        # datatrove copies the model into its asset cache (huggingface_hub's): keep that copy in the temporary dir
        os.environ["HF_ASSETS_CACHE"] = str(Path(tmp) / "hf-assets")
        model = a.model
        if model is None:
            model = Path(tmp) / "dclm_shaped.bin"
            secs = train(model, pages, a.bucket, a.epoch)
            print(f"trained {model.name}: dim 256, wordNgrams 2, bucket {a.bucket:,}, "
                  f"{model.stat().st_size / 2**20:,.0f} MiB, {secs:.1f} s")
        print(f"load average at start: {os.getloadavg()[0]:.2f}; {len(docs):,} documents "
              f"({len(pages):,} pages x {a.rounds}), pinned to CPU {a.cpu}; our matrix "
              f"{'private (huge pages)' if a.private_matrix else 'shared (file pages)'}")

        from babelsieve.pipeline.stages.classify import QualityModel, prepare_texts

        t0 = time.process_time()
        ours_model = QualityModel(str(model), "__label__hq")
        ours_model.scores(prepare_texts(pages[:10], strip=True))  # numba: compiled (or loaded from its cache)
        ours_start = time.process_time() - t0

        def ours():
            out = []
            for i in range(0, len(docs), a.batch):
                out.append(ours_model.scores(prepare_texts(docs[i : i + a.batch], strip=True, newlines="space")))
            return np.concatenate(out)

        from datatrove.data import Document
        from datatrove.pipeline.filters import FastTextClassifierFilter

        t0 = time.process_time()
        dt = FastTextClassifierFilter(str(model), keep_labels=("hq", 0.5), newline_replacement=" ")
        _ = dt.model
        dt_start = time.process_time() - t0
        dt_docs = [Document(text=t, id=str(i)) for i, t in enumerate(docs)]

        def datatrove():
            scores = []
            for d in dt_docs:
                dt.filter(d)
                scores.append(d.metadata["__label__hq"])
            return np.asarray(scores)

        def binding():
            m = dt.model
            return [m.predict(t.strip().replace("\n", " "), k=-1) for t in docs]

        t_ours, s_ours = best(ours, a.repeat)
        # datatrove rewrites doc.text (kept spans only): fresh documents for every repeat
        t_dt = []
        for _ in range(a.repeat):
            dt_docs = [Document(text=t, id=str(i)) for i, t in enumerate(docs)]
            t, s_dt = best(datatrove, 1)
            t_dt.append(t)
        t_dt = min(t_dt)
        t_bind, _ = best(binding, a.repeat)
        same = int(np.sum(s_ours.astype(np.float64) == s_dt))
        print(f"scores identical to datatrove's: {same:,}/{len(docs):,}")
        print(f"{'':<34}{'CPU s':>8}{'docs/s/core':>14}")
        for name, t in (("babelsieve (compiled, batched)", t_ours), ("datatrove FastTextClassifierFilter", t_dt),
                        ("fastText binding predict alone", t_bind)):
            print(f"{name:<34}{t:>8.2f}{len(docs) / t:>14,.0f}")
        print(f"ratio babelsieve / datatrove: {t_dt / t_ours:.2f}x (target >= 3x); vs the binding alone: "
              f"{t_bind / t_ours:.2f}x")
        print(f"start cost (CPU s): babelsieve {ours_start:.2f} (load + first batch), datatrove {dt_start:.2f}")
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
