"""End to end on one core: datatrove 0.10.1 with FineWeb2's settings vs ``babelsieve run``.

Input: the multilingual sample WARC(s) + cc/*.warc.gz of ``--data DIR`` (bench_inputs.py; symlinked
into one folder so both sides read the same files). Each side runs as its own process pinned to CPU 0
(``taskset -c 0`` / one worker), timed from process start to exit (imports, model loading and
writing Parquet included), with its peak RSS (largest process of its tree, from wait4).

* datatrove: WarcReader -> URLFilter -> Trafilatura(favour_precision, timeout 10 s) ->
  LanguageFilter(ft176, label_only, top pairs 0.01; its model pointed at our embedded lid.176.ftz,
  as benchmarks/bench_langid.py does, so nothing is downloaded) -> a step mapping lid.176 codes to
  our iso639-3_Script labels and applying each language's minimum score (language table,
  ``lid176_score``) -> GopherRepetitionFilter -> FineWebQualityFilter -> GopherQualityFilter with
  per-language FineWeb2 thresholds (the language table via babelsieve.filters.settings.language_settings,
  which our filter stage uses too: e.g. no stopword rule for a label without a stopword list such
  as eng_Latn; one filter instance per language, as FineWeb2 runs one pipeline per language) ->
  ParquetWriter. Word tokenizers: datatrove's, ours only where its backend is not installed.
* babelsieve: ``babelsieve run --set stages=[extract,filter] --set langid.backend=lid176 -w 1``
  (extract = URL filter + trafilatura favour precision + lid.176 + per-language minimum score;
  filter = the same three FineWeb2 filters). Dedup is not on either side: FineWeb2 runs MinHash
  as a separate job, see bench_minhash.py. Run twice: default extractor and
  ``extract.extractor=trafilatura_plain`` (plain trafilatura.extract), to show the extraction gain.

Agreement: for every HTML document either side read, kept by both or removed by both.
Scaling: the local engine on shards split from the sample WARC, 1 vs 2 workers (no pinning).
Stages that do not exist yet in this checkout (e.g. filter) are left out on both sides, and the
output says so.

Reproduce:  python benchmarks/bench_e2e.py [--data DIR] [--repeat 3] [--no-scaling] [--core 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inputs import add_data_argument, cc_warcs, sample_warcs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def inputs(data: Path) -> list[Path]:
    """The sample WARC(s) and the Common Crawl excerpts of the data folder."""
    return [*sample_warcs(data), *cc_warcs(data)]


def split_sample(data: Path, dest: Path, n: int) -> list[Path]:
    """The sample WARC(s) of the data folder split into ``n`` shards in one folder (names unique)."""
    sources = sample_warcs(data)
    paths = []
    for i, src in enumerate(sources):
        k = n // len(sources) + (1 if i < n % len(sources) else 0)
        for p in split_warc(src, dest / f"part-{i}", k):
            paths.append(p.rename(dest / f"{i}-{p.name}"))
    return paths


def html_ids(paths: list[Path]) -> set[str]:
    from babelsieve.extraction.html_text import is_html
    from babelsieve.extraction.warc import iter_records, parse_http_response

    ids = set()
    for p in paths:
        with open(p, "rb") as f:
            for rec in iter_records(f, []):
                if rec.type != "response":
                    continue
                http = parse_http_response(rec.block)
                if http and http.status == 200 and is_html(http.headers.get("content-type", "")):
                    ids.add(rec.headers.get("warc-record-id", "").strip().strip("<>"))
    return ids


def available_stages() -> list[str]:
    import importlib.util

    stages = ["extract"]
    if importlib.util.find_spec("babelsieve.pipeline.stages.filter"):
        stages.append("filter")
    return stages


DATATROVE_SCRIPT = r'''
import sys, json
from pathlib import Path
in_dir, out_dir, log_dir, with_filters = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
import fasttext.FastText as ft
ft.eprint = lambda *a, **k: None
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.filters import (URLFilter, LanguageFilter, GopherRepetitionFilter,
                                        FineWebQualityFilter, GopherQualityFilter)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.writers import ParquetWriter
from tldextract import TLDExtract
from babelsieve.langid.models import lid176_path
from babelsieve.langid.language_table import get_language
from babelsieve.filters.settings import language_settings
from babelsieve.langid.lid import map_lid176_label
from babelsieve.langid.script import detect_script

url_filter = URLFilter()
url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)  # no download (offline)
from datatrove.utils.lid import FT176LID
def _model(self):  # our embedded lid.176.ftz instead of downloading lid.176.bin; lazy (the executor deep-copies steps)
    if self._model is None:
        self._model = ft._FastText(str(lid176_path()))
    return self._model
FT176LID.model = property(_model)
lang = LanguageFilter(backend="ft176", label_only=True, keep_top_pairs_threshold=0.01)

class MinLanguageScore(BaseFilter):
    """lid.176 code -> iso639-3_Script label; keep if score >= the language's lid.176 minimum."""
    name = "min language score"
    def filter(self, doc):
        label = map_lid176_label(doc.metadata["language"], detect_script(doc.text)[0])
        doc.metadata["bs_label"] = label
        return doc.metadata["language_score"] >= get_language(label).lid176_score

import datatrove.utils.word_tokenizers as dt_wt
from babelsieve.langid.word_tokenizers import load_word_tokenizer as our_tokenizer
_dt_load, _toks = dt_wt.load_word_tokenizer, {}
def load_word_tokenizer(language):
    """datatrove's tokenizer; ours (same choice as our filter stage) where its backend is not installed."""
    if language not in _toks:
        try:
            _toks[language] = _dt_load(language)
        except ImportError:
            _toks[language] = our_tokenizer(language)
    return _toks[language]
dt_wt.load_word_tokenizer = load_word_tokenizer

class TopLangs(BaseFilter):
    """Per-document top_language_* keys as one JSON column (FineWeb2's top_langs), so Parquet has one schema."""
    name = "top_langs"
    def filter(self, doc):
        top = {k: doc.metadata.pop(k) for k in [k for k in doc.metadata if k.startswith("top_language_")]}
        doc.metadata["top_langs"] = json.dumps(top, sort_keys=True)
        return True

class PerLanguage(BaseFilter):
    """One filter instance per language with that language's FineWeb2 thresholds."""
    def __init__(self, make):
        super().__init__()
        self.make, self.instances = make, {}
    def filter(self, doc):
        label = doc.metadata["bs_label"]
        f = self.instances.get(label)
        if f is None:
            f = self.instances[label] = self.make(label, language_settings(label))
        return f.filter(doc)

def rep(label, c):
    return GopherRepetitionFilter(language=label, dup_para_frac=c.dup_para_frac, dup_line_char_frac=c.dup_line_char_frac,
                                  dup_para_char_frac=c.dup_para_char_frac, dup_line_frac=c.dup_line_frac,
                                  top_n_grams=tuple(c.top_n_grams), dup_n_grams=tuple(c.dup_n_grams))
def fwq(label, c):
    return FineWebQualityFilter(language=label, short_line_thr=c.short_line_thr, char_duplicates_ratio=c.char_duplicates_ratio,
                                line_punct_thr=c.line_punct_thr, line_punct_exclude_zero=c.line_punct_exclude_zero,
                                new_line_ratio=c.new_line_ratio)
def gq(label, c):
    return GopherQualityFilter(language=label, min_doc_words=c.min_doc_words, max_doc_words=c.max_doc_words,
                               min_avg_word_length=c.min_avg_word_length, max_avg_word_length=c.max_avg_word_length,
                               max_symbol_word_ratio=c.max_symbol_word_ratio, max_bullet_lines_ratio=c.max_bullet_lines_ratio,
                               max_ellipsis_lines_ratio=c.max_ellipsis_lines_ratio,
                               max_non_alpha_words_ratio=c.max_non_alpha_words_ratio,
                               stop_words=list(c.stopwords), min_stop_words=c.min_stop_words)

pipeline = [WarcReader(in_dir, glob_pattern="*.warc.gz"), url_filter,
            Trafilatura(favour_precision=True, timeout=10.0), lang, MinLanguageScore()]
if with_filters:
    pipeline += [type(n, (PerLanguage,), {"name": n})(f) for n, f in (("gopher_rep", rep), ("fineweb_qual", fwq), ("gopher_qual", gq))]
pipeline += [TopLangs(), ParquetWriter(out_dir)]
LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=log_dir).run()
'''  # noqa: E501 - the text of the generated datatrove script (bench_scaling edits it): kept as is


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, int]:
    """(wall s, CPU s of the process tree, peak RSS MB of its largest process, exit status)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = p.stderr.read() if p.stderr else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err.decode("utf-8", "replace")[-3000:])
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss // 1024, code


def datatrove_step_seconds(logs: Path) -> dict[str, float]:
    """Total time per pipeline step from datatrove's stats file."""
    out: dict[str, float] = {}
    for f in (logs / "stats").glob("*.json"):
        for step in json.loads(f.read_text()):
            name = step.get("name", "?")
            out[name] = out.get(name, 0.0) + float((step.get("time_stats") or {}).get("total", 0.0))
    return out


def our_stage_seconds(out: Path) -> dict[str, float]:
    """Sum of task seconds per stage from the run's manifests."""
    res: dict[str, float] = {}
    for f in (out / "_manifests").rglob("*.json"):
        m = json.loads(f.read_text())
        res[m.get("stage", f.parent.name)] = res.get(m.get("stage", f.parent.name), 0.0) + float(m.get("seconds", 0.0))
    return res


def kept_ids(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    ids = set()
    for f in out.rglob("*.parquet"):
        ids.update(str(x).strip().strip("<>") for x in pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return ids


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and core >= 0 else []


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
             TOKENIZERS_PARALLELISM="false")
    return e


def side_datatrove(work: Path, in_dir: Path, core: int, with_filters: bool):
    out, logs = work / "dt-out", work / "dt-logs"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    script = work / "dt_pipeline.py"
    script.write_text(DATATROVE_SCRIPT)
    r = run_timed([*pinned(core), sys.executable, str(script), str(in_dir), str(out), str(logs),
                   "1" if with_filters else "0"], env())
    return (*r, datatrove_step_seconds(logs)), kept_ids(out)


def side_ours(work: Path, in_dir: Path, core: int, stages: list[str], extractor: str):
    out = work / f"bs-out-{extractor}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*pinned(core), str(BIN / "babelsieve"), "run", "-i", str(in_dir / "*.warc.gz"), "-o", str(out), "-w", "1",
           "--no-progress", "--set", f"stages=[{','.join(stages)}]", "--set", "langid.backend=lid176",
           "--set", f"extract.extractor={extractor}"]
    r = run_timed(cmd, env())
    return (*r, our_stage_seconds(out)), kept_ids(out / stages[-1])


def split_warc(src: Path, dest: Path, n: int) -> list[Path]:
    """Split a .warc.gz into n shards of whole gzip members (the warcinfo record in each)."""
    from babelsieve.extraction.warc import gzip_members

    members = gzip_members(src.read_bytes())
    head, rest = members[0], members[1:]
    dest.mkdir(parents=True, exist_ok=True)
    # keep each request/response/metadata group together: cut on response boundaries
    groups, cur = [], []
    for m in rest:
        cur.append(m)
        if b"WARC-Type: response" in zlib.decompress(m, 31)[:400]:
            groups.append(cur)
            cur = []
    if cur:
        groups.append(cur)
    paths = []
    for i in range(n):
        p = dest / f"shard-{i:02d}.warc.gz"
        p.write_bytes(head + b"".join(b"".join(g) for g in groups[i::n]))
        paths.append(p)
    return paths


def scaling(work: Path, data: Path, stages: list[str], repeat: int) -> list[tuple[int, float, dict[str, float]]]:
    """(workers, best process wall s, best wall s per stage from the run summary)."""
    shards = split_sample(data, work / "shards", 8)
    res = []
    for workers in (1, 2):
        walls, per_stage = [], {}
        for _ in range(repeat):
            out = work / f"scale-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(BIN / "babelsieve"), "run", "-i", str(shards[0].parent / "*.warc.gz"), "-o", str(out), "-w",
                   str(workers), "--no-progress", "--set", f"stages=[{','.join(stages)}]",
                   "--set", "langid.backend=lid176"]
            walls.append(run_timed(cmd, env())[0])
            summary = json.loads((out / "_summary.json").read_text())
            for st in summary.get("stages", []):
                per_stage[st["stage"]] = min(per_stage.get(st["stage"], 1e9), float(st["seconds"]))
        res.append((workers, min(walls), per_stage))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per side; the best is reported")
    ap.add_argument("--core", type=int, default=0, help="CPU to pin each side to (-1: no pinning)")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-plain", action="store_true", help="skip the extract.extractor=trafilatura_plain run")
    ap.add_argument("--scaling-only", action="store_true")
    add_data_argument(ap)
    args = ap.parse_args()

    stages = available_stages()
    with_filters = "filter" in stages
    print(f"stages compared: {' + '.join(stages)}"
          + ("" if with_filters else "  (filter stage not in this checkout: datatrove side without its 3 filters)")
          + "; dedup on neither side (FineWeb2 runs it as a separate job)")
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    in_dir = work / "in"
    in_dir.mkdir()
    for p in inputs(args.data):
        (in_dir / p.name).symlink_to(p)
    docs = len(html_ids(inputs(args.data)))
    print(f"input: {', '.join(p.name for p in inputs(args.data))}: {docs} HTML documents (HTTP 200); "
          f"one process per side pinned to CPU {args.core}; best of {args.repeat}")

    runs: dict[str, list] = {"datatrove": [], "babelsieve": [], "babelsieve (plain trafilatura)": []}
    kept: dict[str, set[str]] = {}
    for _ in range(0 if args.scaling_only else args.repeat):
        r, kept["datatrove"] = side_datatrove(work, in_dir, args.core, with_filters)
        runs["datatrove"].append(r)
        r, kept["babelsieve"] = side_ours(work, in_dir, args.core, stages, "trafilatura")
        runs["babelsieve"].append(r)
        if not args.no_plain:
            r, kept["plain"] = side_ours(work, in_dir, args.core, stages, "trafilatura_plain")
            runs["babelsieve (plain trafilatura)"].append(r)

    print(f"\n{'side':34s}{'docs/s':>8s}{'wall s':>9s}{'CPU s':>8s}{'docs/CPU-s':>11s}{'peak RSS MB':>12s}"
          f"{'kept':>6s}")
    best = {}
    for name, rs in runs.items():
        if not rs:
            continue
        if any(r[3] != 0 for r in rs):
            print(f"{name:34s} FAILED (exit {[r[3] for r in rs]})")
            continue
        wall = min(r[0] for r in rs)
        cpu = min(r[1] for r in rs)
        rss = max(r[2] for r in rs)
        best[name] = (wall, cpu)
        k = kept["datatrove" if name == "datatrove" else ("babelsieve" if name == "babelsieve" else "plain")]
        print(f"{name:34s}{docs / wall:8.1f}{wall:9.1f}{cpu:8.1f}{docs / cpu:11.1f}{rss:12d}{len(k):6d}"
              f"   (wall runs: {', '.join(f'{r[0]:.1f}' for r in rs)})")
    if "datatrove" in best and "babelsieve" in best:
        print(f"ratio babelsieve / datatrove: {best['datatrove'][0] / best['babelsieve'][0]:.2f}x docs/s (wall), "
              f"{best['datatrove'][1] / best['babelsieve'][1]:.2f}x docs per CPU-second")
    # per stage: datatrove steps grouped like our stages (reader..min-score = extract; the 3 filters = filter)
    def dt_group(steps: dict[str, float]) -> dict[str, float]:
        g = {"extract": 0.0, "filter": 0.0}
        for name, sec in steps.items():
            g["filter" if any(k in name for k in ("gopher_rep", "fineweb_qual", "gopher_qual")) else "extract"] += sec
        g.pop("writer", None)
        return g

    print(f"\n{'stage':10s}{'babelsieve docs/s':>18s}{'datatrove docs/s':>18s}{'ratio':>7s}"
          f"   (stage seconds inside the run, best of {args.repeat})")
    for stage in stages:
        ours_s = min((r[4].get(stage, 0.0) for r in runs["babelsieve"] if r[3] == 0), default=0.0)
        dt_s = min((dt_group(r[4]).get(stage, 0.0) for r in runs["datatrove"] if r[3] == 0), default=0.0)
        plain_s = min((r[4].get(stage, 0.0) for r in runs["babelsieve (plain trafilatura)"] if r[3] == 0), default=0.0)
        if ours_s and dt_s:
            extra = f"   plain trafilatura: {docs / plain_s:.1f} docs/s" if plain_s else ""
            print(f"{stage:10s}{docs / ours_s:18.1f}{docs / dt_s:18.1f}{dt_s / ours_s:7.2f}{extra}")
    for r in runs["datatrove"][:1]:
        if r[3] == 0:
            print("datatrove step seconds: " + ", ".join(f"{k.strip()} {v:.1f}" for k, v in r[4].items()))
    universe = html_ids(inputs(args.data))
    for name in ("babelsieve", "plain"):
        if name in kept and "datatrove" in kept:
            a, b = kept[name], kept["datatrove"]
            agree = sum((i in a) == (i in b) for i in universe)
            print(f"kept/removed agreement {name} vs datatrove: {agree}/{len(universe)} = {agree / len(universe):.2%} "
                  f"(kept only by us: {len((a - b) & universe)}, only by datatrove: {len((b - a) & universe)})")

    if not args.no_scaling:
        (_, t1, s1), (_, t2, s2) = scaling(work, args.data, stages, args.repeat)
        print(f"\nscaling, local engine on the sample WARC split into 8 shards ({' + '.join(stages)}, no pinning, "
              f"nproc {os.cpu_count()}, best of {args.repeat}):")
        print(f"  whole run (process start to exit): 1 worker {t1:.1f} s, 2 workers {t2:.1f} s -> {t1 / t2:.2f}x")
        for st in s1:
            if st in s2 and s2[st]:
                print(f"  {st} stage wall time: 1 worker {s1[st]:.1f} s, 2 workers {s2[st]:.1f} s "
                      f"-> {s1[st] / s2[st]:.2f}x")
        load = os.getloadavg()[0]
        print(f"  (load average now {load:.1f}: other work on the machine takes cores from the 2-worker run)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
