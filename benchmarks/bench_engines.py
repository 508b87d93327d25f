"""Engines on this machine: extract throughput with 1 and 2 workers, and per-task overhead.

For each engine (local process pool, a local Ray, a local Spark, a single-machine Slurm):

* start-up: creating the engine's runtime (Ray: ``ray.init``; Spark: JVM + SparkContext);
* throughput: the extract stage on N real WARC shards (the sample WARC of ``--data DIR``, see
  bench_inputs.py, or the WARC given, split into shards of whole records), lid.176 language ID on,
  URL filter off (its block-list load is a fixed ~5-20 s per worker process that would swamp a small
  sample); documents/s and
  parallel efficiency = (docs/s with 2 workers) / (2 x docs/s with 1 worker);
* per-task overhead: K tiny tasks (one page each); overhead = wall time x workers / K minus
  the same task's time in-process.

Ray and Spark reuse their worker processes within a session, so a warm-up pass runs first
(a full pass over the shards, so that every worker has imported everything and loaded lid.176),
as happens once per worker in a long run; the local engine starts a new
process pool for every stage, so its figures include that start-up (this is what a stage costs).
Outputs are checked byte-identical across engines.

Slurm: "workers" is ``engine_options.slurm.max_concurrent`` (array tasks running at once) and
every array task is a new process (Python start-up, imports, lid.176 load), as on a real
cluster: there is no warm-up, and the per-task overhead shown is what one array index costs
when it runs a single task (an index that runs a slice of several tasks pays it once). With
``SLURM_CONF`` unset the benchmark starts ``deploy/slurm/local-cluster.sh`` and stops it after.

Reproduce:  python benchmarks/bench_engines.py [--data DIR] [--shards 8] [--repeat 3] [--tiny 40]
                                               [--engines local,slurm] [WARC]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_inputs import BUNDLED_SAMPLE, add_data_argument, sample_warcs  # noqa: E402


def split(src: Path, dest: Path, n: int, repeat: int) -> list[Path]:
    """``n`` shards of whole records, the set copied ``repeat`` times (distinct file names)."""
    from babelsieve.extraction.warc import split_warc

    base = split_warc(src, dest / "r0", n)
    out = list(base)
    for r in range(1, repeat):
        (dest / f"r{r}").mkdir(parents=True, exist_ok=True)
        for p in base:
            q = dest / f"r{r}" / p.name
            shutil.copyfile(p, q)
            out.append(q)
    return out


def tiny_warcs(dest: Path, k: int) -> list[Path]:
    """K one-page WARCs (the first HTML response of the sample, with its warcinfo)."""
    from babelsieve.extraction.warc import gzip_members

    members = gzip_members(BUNDLED_SAMPLE.read_bytes())
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(k):
        p = dest / f"tiny-{i:03d}.warc.gz"
        p.write_bytes(members[0] + members[1] + members[2])  # warcinfo + request + response
        out.append(p)
    return out


def config(inputs, output, engine, workers):
    from babelsieve.pipeline.core.config import load_config

    sets = ["langid.backend=lid176", "extract.url_filter=false", f"engine_options.workers={workers}"]
    if engine == "slurm":
        sets.append(f"engine_options.slurm.max_concurrent={workers}")
    cfg = load_config(None, inputs=[str(p) for p in inputs], output=output, engine=engine, sets=sets)
    cfg.stages = ["extract"]
    return cfg


def plan(cfg):
    from babelsieve.pipeline.stages.extract import ExtractStage

    return ExtractStage(cfg).plan()


def fingerprint(out: str) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(out).rglob("*.parquet")) if "_" not in p.parts[len(Path(out).parts)]}


def make_engine(name, cfg):
    from babelsieve.pipeline.engines import get_engine

    cfg.engine = name
    return get_engine(cfg)


def start_slurm(work: Path) -> Path | None:
    """A local Slurm when none is configured (SLURM_CONF unset); its folder, to stop it after."""
    if os.environ.get("SLURM_CONF"):
        return None
    import subprocess

    d = work / "slurm"
    env = {**os.environ, "BABELSIEVE_SLURM_DIR": str(d)}
    subprocess.run([str(REPO / "deploy" / "slurm" / "local-cluster.sh"), "start"], env=env, check=True)
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    return d


def stop_slurm(d: Path | None) -> None:
    if d is not None:
        import subprocess

        subprocess.run([str(REPO / "deploy" / "slurm" / "local-cluster.sh"), "stop"],
                       env={**os.environ, "BABELSIEVE_SLURM_DIR": str(d)}, check=False)


def timed_run(engine, cfg):
    tasks = plan(cfg)
    docs = []
    t0 = time.perf_counter()
    engine.config = cfg
    results = engine.run_tasks(tasks, lambda r: docs.append(r.get("stats", {}).get("docs_in", 0)))
    wall = time.perf_counter() - t0
    assert all(r["status"] == "done" for r in results), [r.get("error") for r in results if r["status"] != "done"]
    return wall, sum(docs), len(tasks)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("warc", nargs="?", help="a WARC to split (default: the first sample WARC of --data)")
    add_data_argument(ap)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="copies of the shard set (more work per run)")
    ap.add_argument("--tiny", type=int, default=40)
    ap.add_argument("--engines", default="local,ray,spark")
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    warc = Path(args.warc) if args.warc else sample_warcs(args.data)[0]
    shards = split(warc, work / "shards", args.shards, args.repeat)
    tiny = tiny_warcs(work / "tiny", args.tiny)

    # In-process cost of one tiny task (warm), the baseline for the overhead figure.
    from babelsieve.pipeline.core.tasks import execute_task

    c = config(tiny[:1], str(work / "inproc-warm"), "local", 1)
    execute_task(plan(c)[0].to_dict(), c.model_dump_json())
    t0 = time.perf_counter()
    for i in range(5):
        c = config(tiny[:1], str(work / f"inproc-{i}"), "local", 1)
        execute_task(plan(c)[0].to_dict(), c.model_dump_json())
    inproc = (time.perf_counter() - t0) / 5

    rows = []
    prints: dict[str, dict[str, str]] = {}
    slurm_dir = start_slurm(work) if "slurm" in args.engines.split(",") else None
    try:
        run_engines(args, work, shards, tiny, inproc, rows, prints)
    finally:
        stop_slurm(slurm_dir)
    report(args, inproc, rows, prints)
    shutil.rmtree(work, ignore_errors=True)


def run_engines(args, work, shards, tiny, inproc, rows, prints) -> None:
    for name in args.engines.split(","):
        per_workers = {}
        for workers in (1, 2):
            cfg = config(shards, str(work / f"{name}-w{workers}-warm"), name, workers)
            t0 = time.perf_counter()
            engine = make_engine(name, cfg)
            if name == "ray":
                engine._connect()
            elif name == "spark":
                engine._context()
            startup = time.perf_counter() - t0
            try:
                # warm every long-lived worker (imports, lid.176 load): one full pass; Slurm has none
                if name not in ("local", "slurm"):
                    timed_run(engine, config(shards, str(work / f"{name}-w{workers}-warmup"), name, workers))
                out = str(work / f"{name}-w{workers}")
                wall, docs, ntasks = timed_run(engine, config(shards, out, name, workers))
                prints[f"{name}-w{workers}"] = fingerprint(out)
                twall, _, k = timed_run(engine, config(tiny, str(work / f"{name}-w{workers}-tiny"), name, workers))
            finally:
                engine.close()
            per_workers[workers] = docs / wall
            rows.append({"engine": name, "workers": workers, "startup_s": startup, "tasks": ntasks, "docs": docs,
                         "wall_s": wall, "docs_per_s": docs / wall,
                         "task_overhead_ms": max(0.0, (twall * workers / k - inproc) * 1000)})
        rows[-1]["efficiency"] = per_workers[2] / (2 * per_workers[1])


def report(args, inproc, rows, prints) -> None:
    ref = next(iter(prints.values()))
    identical = all(p == ref for p in prints.values())
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (at the end); "
          f"input {Path(args.warc).name} "
          f"in {args.shards} shards x {args.repeat} copies; tiny-task baseline in-process {inproc * 1000:.0f} ms")
    head = f"{'engine':<7}{'workers':>8}{'start-up s':>12}{'tasks':>7}{'docs':>7}{'wall s':>9}{'docs/s':>9}" \
           f"{'efficiency':>12}{'overhead ms/task':>18}"
    print(head)
    print("-" * len(head))
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if "efficiency" in r else ""
        print(f"{r['engine']:<7}{r['workers']:>8}{r['startup_s']:>12.1f}{r['tasks']:>7}{r['docs']:>7}{r['wall_s']:>9.1f}"
              f"{r['docs_per_s']:>9.1f}{eff:>12}{r['task_overhead_ms']:>18.0f}")
    print(f"outputs byte-identical across engines and worker counts: {identical}")


if __name__ == "__main__":
    main()
