"""Local engine, 1 -> 2 workers, on a few thousand pages; and the fixed start-up cost of a worker.

Input: the multilingual sample WARC(s) of ``--data DIR`` (bench_inputs.py) split into 8 shards of whole records (as
bench_e2e.py's scaling part), each shard linked ``--copies`` times under different names (default
6: 48 shards, ~2 400 HTML pages; copies are fine, trafilatura's duplicate cache is per task).

* start-up: one fresh process imports the task code and runs two extract tasks on identical
  shards (URL filter + trafilatura + lid.176); the first task's extra time over the second, plus the
  import time, is what every worker process pays once.
* scaling: ``babelsieve run -w 1`` and ``-w 2`` (no pinning), ``--stages`` extract and
  extract+filter, lid.176, runs interleaved (1, 2, 1, 2, ...) so that background load hits both;
  best of ``--repeat``. Reports wall time, CPU seconds of the process tree, per-stage wall time
  from ``_summary.json``, the load average before each run, and peak RSS (VmHWM) of the driver
  and of each worker process (polled from /proc every 0.2 s).
* ceiling: after each 1-worker/2-worker pair, a pure-Python loop run once alone and then twice at
  once: how much 2 processes could gain over 1 on this (shared) machine at that moment.
* ``--datatrove``: datatrove 0.10.1's LocalPipelineExecutor on the same shards (bench_e2e.py's
  pipeline, one task per shard) with 1 and 2 workers, for its per-worker peak RSS and wall time.

Reproduce:  python benchmarks/bench_scaling.py [--data DIR] [--copies 6] [--repeat 3] [--datatrove]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import BIN, DATATROVE_SCRIPT, env, html_ids, split_sample  # noqa: E402
from bench_inputs import add_data_argument  # noqa: E402

STARTUP_SCRIPT = r'''
import sys, time, json, tempfile
t0 = time.perf_counter()
from babelsieve.pipeline.core.tasks import execute_task
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.stages.extract import ExtractStage
t1 = time.perf_counter()
cfg = PipelineConfig.model_validate({"inputs": {"paths": sys.argv[1:3]}, "output": tempfile.mkdtemp(),
                                     "stages": ["extract"], "langid": {"backend": "lid176"}})
cj = cfg.model_dump_json()
times = []
for t in ExtractStage(cfg).plan():
    a = time.perf_counter()
    execute_task(t.to_dict(), cj)
    times.append(time.perf_counter() - a)
print(json.dumps({"imports": t1 - t0, "first": times[0], "second": times[1]}))
'''


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out.extend(kids)
        stack.extend(kids)
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def _status(pid: int) -> tuple[int, str, float, int, int, int]:
    """(VmHWM kB, command line, CPU seconds so far, parent pid, oom_score_adj, private kB) of a live process, or zeros.

    Private (Private_Clean + Private_Dirty of smaps_rollup: pages no other process maps) only for processes with
    oom_score_adj 1000 (datatrove's extractor sandboxes, forked: their RSS counts pages shared with their parent)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/oom_score_adj") as f:
            oom = int(f.read())
        private = 0
        if oom == 1000:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                private = sum(int(line.split()[1]) for line in f
                              if line.startswith(("Private_Clean:", "Private_Dirty:")))
        return hwm, cmd, (int(fields[11]) + int(fields[12])) / _TICK, int(fields[1]), oom, private
    except (OSError, StopIteration, ValueError, IndexError):
        return 0, "", 0.0, 0, 0, 0


def run_monitored(cmd: list[str]) -> dict:
    """Run ``cmd``; wall, CPU of the tree, exit code, peak RSS MB of the driver and of every worker process."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    peaks: dict[int, tuple[int, str, float, int, int, int]] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid in [p.pid, *_descendants(p.pid)]:
                hwm, c, cpu, ppid, oom, priv = _status(pid)
                old = peaks.get(pid, (0, "", 0.0, 0, 0, 0))
                if hwm:
                    peaks[pid] = (max(hwm, old[0]), c or old[1], max(cpu, old[2]), ppid or old[3], max(oom, old[4]),
                                  max(priv, old[5]))
            done.wait(0.2)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    err = p.stderr.read() if p.stderr else b""
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err.decode("utf-8", "replace")[-3000:])
    driver = peaks.pop(p.pid, (0, "", 0.0, 0, 0, 0))
    workers = sorted(((hwm // 1024, cpu) for hwm, c, cpu, *_ in peaks.values() if "resource_tracker" not in c
                      and "semaphore_tracker" not in c and hwm > 40 * 1024), reverse=True)
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "code": code, "load": load,
            "load_after": os.getloadavg()[0],
            "driver_rss": driver[0] // 1024, "driver_cpu": driver[2], "worker_rss": [w[0] for w in workers],
            "worker_cpu": [w[1] for w in workers], "largest_rss": ru.ru_maxrss // 1024,
            "procs": [(pid, ppid, hwm // 1024, cpu, c, oom, priv // 1024)
                      for pid, (hwm, c, cpu, ppid, oom, priv) in peaks.items()],
            "pid": p.pid, "polled_cpu": driver[2] + sum(v[2] for v in peaks.values())}


CALIBRATE = "s = 0\nfor i in range(60_000_000):\n    s += i & 7\n"


def ceiling() -> float:
    """What 2 processes get over 1 on this machine right now: a pure-Python loop run alone, then twice at once."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CALIBRATE], check=True)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-c", CALIBRATE]) for _ in range(2)]
    for q in ps:
        q.wait()
    two = time.perf_counter() - t0
    return 2 * one / two


def startup(shard: Path, work: Path, repeat: int) -> dict:
    script = work / "startup.py"
    script.write_text(STARTUP_SCRIPT)
    a, b = work / "startup-a.warc.gz", work / "startup-b.warc.gz"
    for link in (a, b):
        if not link.exists():
            link.symlink_to(shard)
    best = None
    for _ in range(repeat):
        load = os.getloadavg()[0]
        r = subprocess.run([sys.executable, str(script), str(a), str(b)], capture_output=True, text=True, env=env())
        if r.returncode != 0:
            sys.stderr.write(r.stderr[-2000:])
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        d["fixed"] = d["imports"] + d["first"] - d["second"]
        d["load"] = load
        if best is None or d["fixed"] < best["fixed"]:
            best = d
    return best or {}


def ours(shards_glob: str, out: Path, workers: int, stages: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(BIN / "babelsieve"), "run", "-i", shards_glob, "-o", str(out), "-w", str(workers), "--no-progress",
           "--set", f"stages=[{','.join(stages)}]", "--set", "langid.backend=lid176"]
    r = run_monitored(cmd)
    r["stages"] = {}
    if r["code"] == 0:
        for st in json.loads((out / "_summary.json").read_text()).get("stages", []):
            r["stages"][st["stage"]] = float(st["seconds"])
    shutil.rmtree(out, ignore_errors=True)
    return r


def datatrove(in_dir: Path, work: Path, workers: int, tasks: int, with_filters: bool) -> dict:
    script = work / "dt_scaling.py"
    # The script calls the executor at module level. datatrove's pool (start_method "forkserver", its default)
    # re-runs the main script in every worker process (multiprocess.spawn.prepare -> _fixup_main_from_path, with
    # the driver's argv), so each worker built the pipeline and called run() again, whose ctx.Pool() raised
    # "An attempt has been made to start a new process before the current process has finished its bootstrapping
    # phase": the worker died before taking a task and the pool replaced it, forever. Guard the run() call, as the
    # multiprocessing docs require; the rest of the script (the patches: lid.176 path, word tokenizers) still runs
    # in every worker, so workers do the same work as the single-process run.
    call = "LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1,"
    assert DATATROVE_SCRIPT.count(call) == 1
    script.write_text(DATATROVE_SCRIPT.replace(call, 'if __name__ == "__main__":\n'
                                                     '    LocalPipelineExecutor(pipeline=pipeline, '
                                                     'tasks=int(sys.argv[5]), workers=int(sys.argv[6]),'))
    out, logs = work / "dt-out", work / "dt-logs"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    r = run_monitored([sys.executable, str(script), str(in_dir), str(out), str(logs), "1" if with_filters else "0",
                       str(tasks), str(workers)])
    # Processes: the executor's multiprocess.Manager() (forked from the driver, same command line; with 1 worker
    # too), a forkserver and resource trackers; pool workers are children of the forkserver (with 1 worker the tasks
    # run in the driver). The Trafilatura step runs the extraction in a sandbox process (ExtractorSandbox,
    # multiprocessing.Process with the default start method, fork), one per task, child of the process running the
    # task; it sets its oom_score_adj to 1000. Its VmHWM counts the pages it inherited from its parent (shared
    # copy-on-write) as well as its own.
    procs, drv = r["procs"], r["pid"]
    fs = {pid for pid, ppid, _, _, c, *_ in procs if ppid == drv and "multiprocess.forkserver" in c}
    pool = sorted(((m, cpu, pid) for pid, ppid, m, cpu, *_ in procs if ppid in fs), reverse=True)
    runners = {drv} | {pid for _, _, pid in pool}
    sandbox = [(pid, ppid, m, cpu, priv) for pid, ppid, m, cpu, _, oom, priv in procs
               if ppid in runners and oom == 1000]
    r["worker_rss"], r["worker_cpu"] = [m for m, _, _ in pool], [cpu for _, cpu, _ in pool]
    r["sandbox"] = {pid: sorted(((m, cpu, priv) for _, ppid, m, cpu, priv in sandbox if ppid == pid), reverse=True)
                    for pid in [drv, *(pid for _, _, pid in pool)]}
    sb = {pid for pid, *_ in sandbox}
    r["manager_rss"] = [m for pid, ppid, m, _, c, *_ in procs if ppid == drv and pid not in sb and pid not in fs
                        and "resource_tracker" not in c]
    r["cpu"] = r["polled_cpu"]  # forkserver children are not reaped by the driver: wait4 misses them
    r["tasks_done"] = len(list((logs / "completions").glob("*"))) if (logs / "completions").is_dir() else 0
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    return r


def fmt_rss(r: dict) -> str:
    w = r["worker_rss"]
    return f"driver {r['driver_rss']} MB, workers {'/'.join(str(x) for x in w) or '-'} MB"


def fmt_cpu(r: dict) -> str:
    """CPU seconds of the driver and of each worker (polled, so up to 0.2 s short), and CPU/wall."""
    w = "/".join(f"{x:.1f}" for x in r["worker_cpu"]) or "-"
    return f"CPU s: driver {r['driver_cpu']:.1f}, workers {w}; cores busy on average {r['cpu'] / r['wall']:.2f}"


def runs_text(rs: list[dict]) -> str:
    return ", ".join(f"{r['wall']:.1f} s (load {r['load']:.1f} -> {r['load_after']:.1f})"
                     if r["code"] == 0 else "failed"
                     for r in rs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=6, help="links per shard (8 shards each)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", default="extract,extract+filter", help="comma-separated stage lists joined by +")
    ap.add_argument("--datatrove", action="store_true", help="also datatrove's LocalPipelineExecutor, 1 and 2 workers")
    ap.add_argument("--no-startup", action="store_true")
    add_data_argument(ap)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    base = split_sample(args.data, work / "base", 8)
    in_dir = work / "in"
    in_dir.mkdir()
    for c in range(args.copies):
        for s in base:
            (in_dir / f"c{c:02d}-{s.name}").symlink_to(s)
    n_shards = len(base) * args.copies
    docs = len(html_ids(base)) * args.copies
    print(f"input: the sample WARC(s) of {args.data} split into {len(base)} shards x {args.copies} copies "
          f"= {n_shards} shards, "
          f"{docs} HTML documents (HTTP 200); nproc {os.cpu_count()}; best of {args.repeat}")

    if not args.no_startup:
        s = startup(base[0], work, args.repeat)
        if s:
            print(f"\nworker start-up (fresh process, extract, best of {args.repeat}, load {s['load']:.1f}): "
                  f"imports {s['imports']:.2f} s, first task {s['first']:.2f} s, same task again {s['second']:.2f} s "
                  f"-> fixed cost {s['fixed']:.2f} s per worker process")

    for mode in args.modes.split(","):
        stages = mode.split("+")
        runs: dict[int, list[dict]] = {1: [], 2: []}
        ceilings = []
        for _ in range(args.repeat):
            for w in (1, 2):
                runs[w].append(ours(str(in_dir / "*.warc.gz"), work / f"out-{w}", w, stages))
            ceilings.append(ceiling())
        print(f"\nbabelsieve local engine, stages {' + '.join(stages)}:")
        best = {}
        for w in (1, 2):
            ok = [r for r in runs[w] if r["code"] == 0]
            if not ok:
                print(f"  {w} worker(s): FAILED")
                continue
            b = min(ok, key=lambda r: r["wall"])
            best[w] = b
            per_stage = ", ".join(f"{k} {min(r['stages'].get(k, 1e9) for r in ok):.1f} s" for k in b["stages"])
            print(f"  {w} worker(s): best wall {b['wall']:.1f} s ({docs / b['wall']:.1f} docs/s), "
                  f"CPU {b['cpu']:.1f} s, "
                  f"stages: {per_stage}; peak RSS {fmt_rss(b)}")
            print(f"      {fmt_cpu(b)}")
            print(f"      runs: {runs_text(runs[w])}")
        if 1 in best and 2 in best:
            ratio = best[1]["wall"] / best[2]["wall"]
            def stage_best(w: int, k: str, runs: dict[int, list[dict]] = runs) -> float:
                return min(r["stages"][k] for r in runs[w] if r["code"] == 0)

            st = " ".join(f"{k} {stage_best(1, k) / stage_best(2, k):.2f}x;"
                          for k in best[1]["stages"] if k in best[2]["stages"])
            print(f"  1 -> 2 workers: whole run {ratio:.2f}x; per stage: {st}")
            print(f"  ceiling measured beside these runs (a CPU-bound loop, 2 processes vs 1): "
                  f"{', '.join(f'{c:.2f}x' for c in ceilings)}")

        if args.datatrove:
            dt: dict[int, list[dict]] = {1: [], 2: []}
            for _ in range(args.repeat):
                for w in (1, 2):
                    dt[w].append(datatrove(in_dir, work, w, n_shards, "filter" in stages))
            print(f"  datatrove LocalPipelineExecutor, same shards ({n_shards} tasks), "
                  f"{'with' if 'filter' in stages else 'without'} the 3 filters:")
            dbest = {}
            for w in (1, 2):
                ok = [r for r in dt[w] if r["code"] == 0]
                if not ok:
                    print(f"    {w} worker(s): FAILED")
                    continue
                b = dbest[w] = min(ok, key=lambda r: r["wall"])
                print(f"    {w} worker(s): best wall {b['wall']:.1f} s ({docs / b['wall']:.1f} docs/s), "
                      f"CPU {b['cpu']:.1f} s "
                      f"(polled), {b['tasks_done']} tasks completed; runs: {runs_text(dt[w])}")
                print(f"      peak RSS: driver {b['driver_rss']} MB, "
                      f"pool workers {'/'.join(map(str, b['worker_rss'])) or '-'} MB "
                      f"(with 1 worker the tasks run in the driver), Manager process "
                      f"{'/'.join(map(str, b['manager_rss'])) or '-'} MB")
                for pid, sbs in b["sandbox"].items():
                    if sbs:
                        who = "driver" if pid == b["pid"] else "pool worker"
                        print(f"      extractor sandboxes of the {who} {pid} ({len(sbs)}): "
                              f"peak RSS max {sbs[0][0]} MB, "
                              f"min {sbs[-1][0]} MB; peak private (not shared with the parent) max "
                              f"{max(x for *_, x in sbs)} MB; CPU s {sum(c for _, c, _ in sbs):.1f}")
                print(f"      {fmt_cpu(b)}")
            if 1 in dbest and 2 in dbest:
                print(f"    1 -> 2 workers: {dbest[1]['wall'] / dbest[2]['wall']:.2f}x")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
