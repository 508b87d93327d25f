"""Language-ID throughput on one core: babelsieve ``identify`` (batched) vs datatrove ``LanguageFilter``.

Same documents for both: the UDHR dev lines + the texts that trafilatura extracts from the HTML responses of
the sample WARC(s), both from ``--data DIR`` (bench_inputs.py: tests/data by default; the figures in
benchmarks/README.md are on the original files, the whole UDHR dev set and the 414-response sample).
Same model for both: the embedded lid.176.ftz. datatrove 0.10.1's ``FT176LID`` would download
``lid.176.bin`` from dl.fbaipublicfiles.com on first use; we point it at the same lid.176.ftz by setting
its loaded model (``LanguageFilter.model._model = fasttext.FastText._FastText(path)``), so no download
and identical predictions. datatrove is configured as in FineWeb2 (``label_only=True``,
``keep_top_pairs_threshold=0.01``), ours with ``threshold=0.01`` (top_langs).

babelsieve predicts with its compiled fastText predictor (``langid/fasttext_inference.py``, numba; by
default a process switches to it after its first ``COMPILED_AFTER_CHARS`` characters, before that it
uses fastText's binding: both rows are printed); the script checks that its predictions equal those of
babelsieve through fastText's own binding (``BABELSIEVE_LID_INFERENCE=fasttext``) on every document, and
prints the one-time start cost of each (a fresh process: import + model load + first prediction).

Times are CPU seconds of this process (``time.process_time``), best of ``--repeat``; the load average is
printed because other jobs on the machine still slow a pinned process down (shared caches).

Reproduce:
    python benchmarks/bench_langid.py            # pins itself to CPU 0
    python benchmarks/bench_langid.py --model ~/.cache/babelsieve/models/glotlid/model_v3.bin
    python benchmarks/bench_langid.py --repeat 5 --data DIR   (or --udhr PATH --warc PATH)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inputs import add_data_argument, read_jsonl, sample_warcs, udhr_path  # noqa: E402


def load_docs(udhr: Path | None, warcs: list[Path], max_warc_docs: int = 1000) -> list[str]:
    """The UDHR lines of ``udhr`` and the trafilatura texts of the HTML pages of ``warcs``."""
    texts = []
    if udhr is not None:
        texts += [row["text"] for row in read_jsonl(udhr)]
    n = 0
    for warc in warcs:
        import trafilatura
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        with open(warc, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ctype = (rec.http_headers.get("Content-Type") or "") if rec.http_headers else ""
                if "html" not in ctype.lower():
                    continue
                body = rec.reader.read()
                try:
                    txt = trafilatura.extract(body, favor_precision=True)
                except Exception:
                    txt = None
                if txt:
                    texts.append(txt)
                    n += 1
                if n >= max_warc_docs:
                    break
    return texts


MODEL: Path | None = None  # --model: a GlotLID-kind model instead of the embedded lid.176


def new_backend():
    from babelsieve.langid.lid import GlotLIDBackend, Lid176Backend

    return GlotLIDBackend(MODEL) if MODEL else Lid176Backend()


def bench_ours(texts: list[str], batch: int, inference: str = "compiled") -> tuple[float, list]:
    """Our identify() with ``BABELSIEVE_LID_INFERENCE=inference``: ``compiled`` is a worker after its first
    COMPILED_AFTER_CHARS characters, ``fasttext`` the binding path it starts on (see also the start costs)."""
    from babelsieve.langid import identify

    os.environ["BABELSIEVE_LID_INFERENCE"] = inference
    try:
        b = new_backend()
        identify(texts[:10], backend=b)  # load the model outside the timing
        t0 = time.process_time()
        preds = []
        for i in range(0, len(texts), batch):
            preds += identify(texts[i : i + batch], backend=b, threshold=0.01)
        return time.process_time() - t0, preds
    finally:
        del os.environ["BABELSIEVE_LID_INFERENCE"]


def start_cost(inference: str) -> float:
    """CPU seconds of a fresh pinned process for import + model load + one prediction, minus a bare
    interpreter's start."""
    import subprocess
    import sys

    code = "from babelsieve.langid import identify; identify(['bonjour tout le monde'], backend='lid176')"
    if MODEL:
        code = ("from babelsieve.langid.lid import GlotLIDBackend, identify; "
                f"identify(['bonjour tout le monde'], backend=GlotLIDBackend({str(MODEL)!r}))")
    env = dict(os.environ, BABELSIEVE_LID_INFERENCE=inference)

    def cpu(c: str) -> float:
        best = 1e9
        for _ in range(3):
            t = os.times()
            subprocess.run([sys.executable, "-c", c], env=env, check=True)
            u = os.times()
            best = min(best, (u.children_user - t.children_user) + (u.children_system - t.children_system))
        return best

    return cpu(code) - cpu("pass")


def bench_fasttext_core(texts: list[str]) -> float:
    """CPU seconds of the fastText inference alone (one multilinePredict call, C++), as both sides run it:
    the floor for either side, since both must run it on the same text."""
    from babelsieve.langid.lid import get_backend, prepare_text

    f = (new_backend() if MODEL else get_backend("lid176")).model.f
    lines = [prepare_text(t) + "\n" for t in texts]
    t0 = time.process_time()
    f.multilinePredict(lines, -1, 0.01, "strict")
    return time.process_time() - t0


def bench_datatrove(texts: list[str]) -> tuple[float, list]:
    import fasttext.FastText as ft
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter

    from babelsieve.langid.models import lid176_path

    ft.eprint = lambda *a, **k: None
    lf = LanguageFilter(backend="glotlid" if MODEL else "ft176", label_only=True, keep_top_pairs_threshold=0.01)
    lf.model._model = ft._FastText(str(MODEL or lid176_path()))  # instead of downloading lid.176.bin / GlotLID
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    lf.filter(Document(text="warm up", id="w"))
    t0 = time.process_time()
    for d in docs:
        lf.filter(d)
    secs = time.process_time() - t0
    return secs, [(d.metadata["language"], d.metadata["language_score"]) for d in docs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--udhr", type=Path, help="UDHR dev lines (default: from --data)")
    ap.add_argument("--warc", type=Path, action="append", help="WARC(s) of pages (default: the sample of --data)")
    add_data_argument(ap)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--cpu", type=int, default=0, help="core to pin to (-1: no pinning)")
    ap.add_argument("--model", type=Path, help="a GlotLID-kind fastText model (GlotLID backend on both sides) "
                    "instead of the embedded lid.176")
    args = ap.parse_args()
    global MODEL
    MODEL = args.model
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    print("load average:", open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "n/a")
    from babelsieve.langid.lid import COMPILED_AFTER_CHARS

    print(f"start cost (fresh process: import, model load, first prediction; CPU s): compiled predictor "
          f"{start_cost('compiled'):.2f}, fastText binding {start_cost('fasttext'):.2f}; by default a process "
          f"uses the binding for its first {COMPILED_AFTER_CHARS:,} characters, then the compiled predictor")
    udhr = load_docs(args.udhr or udhr_path(args.data), [])
    web = load_docs(None, args.warc or sample_warcs(args.data))
    for name, texts in (("UDHR lines", udhr), ("WARC pages (trafilatura)", web), ("all", udhr + web)):
        if texts:
            print(f"== {name}")
            run(texts, args)


def run(texts: list[str], args) -> None:
    chars = sum(len(t) for t in texts)
    print(f"documents: {len(texts)} ({chars / 1e6:.2f} M chars, mean {chars / len(texts):.0f} chars/doc); "
          f"pinned to CPU {args.cpu}")

    ours, theirs, core, binding = [], [], [], []
    for _ in range(args.repeat):
        s, preds = bench_ours(texts, args.batch)
        ours.append(s)
        s, dt = bench_datatrove(texts)
        theirs.append(s)
        core.append(bench_fasttext_core(texts))
        s, preds_binding = bench_ours(texts, args.batch, inference="fasttext")
        binding.append(s)
    o, t, c, b = min(ours), min(theirs), min(core), min(binding)

    # agreement: same top-1 lid.176 probability (texts <= MAX_CHARS: identical input)
    from babelsieve.langid.lid import MAX_CHARS

    same = [abs(p.score - sc) < 1e-5 for p, (lab, sc), txt in zip(preds, dt, texts, strict=True)
            if len(txt) <= MAX_CHARS and p.label != "zxx_Zzzz" and not p.label.startswith("und_")]
    print(f"{'':<34}{'docs/s/core':>12}{'CPU s (best of ' + str(args.repeat) + ')':>18}")
    print(f"{'babelsieve, compiled predictor':<34}{len(texts) / o:12.0f}{o:18.3f}")
    print(f"{'datatrove LanguageFilter ' + ('glotlid' if MODEL else 'ft176'):<34}{len(texts) / t:12.0f}{t:18.3f}")
    print(f"{'babelsieve via fastText binding':<34}{len(texts) / b:12.0f}{b:18.3f}"
          "   (BABELSIEVE_LID_INFERENCE=fasttext)")
    print(f"{'fastText binding alone':<34}{len(texts) / c:12.0f}{c:18.3f}   (one multilinePredict call: the "
          f"ceiling with the binding, {t / c:.2f}x)")
    print(f"ratio babelsieve / datatrove: {t / o:.2f}x   (runs: ours {statistics.mean(ours):.3f}s mean, "
          f"datatrove {statistics.mean(theirs):.3f}s mean)")
    print(f"top-1 score identical to datatrove on {sum(same)}/{len(same)} comparable documents "
          "(the rest: lid.176 labels that map to one GlotLID label are added up)")
    identical = sum(p == q for p, q in zip(preds, preds_binding, strict=True))
    print(f"compiled predictor == binding: {identical}/{len(preds)} "
          "predictions identical (label, score, top_langs)")


if __name__ == "__main__":
    main()
