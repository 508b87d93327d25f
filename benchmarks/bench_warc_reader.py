"""WARC reader throughput: records + HTTP parsing of every response, this checkout vs a git ref.

    taskset -c 0 .venv/bin/python benchmarks/bench_warc_reader.py [WARC ...] --ref 918aeb9 --repeat 9

Times ``iter_records`` over the whole file plus ``parse_http_response`` of every response record
(with ``max_body_bytes`` = the default ``extract.max_html_bytes`` where the reader has it), from
bytes already in memory (no disk in the figure). With ``--ref`` the reader of that commit
(``extraction/warc.py`` from ``git show``) is timed too, interleaved run by run with this
checkout's, so machine load hits both alike; the best of ``--repeat`` runs is reported (CPU time
of this process, which one pinned core makes equal to wall time when the core is not shared).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WARCS = [REPO / "pipeline" / "data" / "sample.warc.gz"]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def read_all(mod: ModuleType, data: bytes) -> tuple[int, int]:
    """(records, responses) of one pass: every record, every response's HTTP parsing."""
    bounded = "max_body_bytes" in inspect.signature(mod.parse_http_response).parameters
    n = responses = 0
    for rec in mod.iter_records(io.BytesIO(data), []):
        n += 1
        if rec.type == "response":
            responses += 1
            try:
                mod.parse_http_response(rec.block, 5_000_000) if bounded else mod.parse_http_response(rec.block)
            except Exception:  # noqa: BLE001 - a skipped record costs the same either way
                pass
    return n, responses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("warcs", nargs="*", type=Path)
    ap.add_argument("--ref", help="git ref whose extraction/warc.py is timed beside this checkout's")
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    readers = {"this checkout": _load(REPO / "pipeline" / "warc.py", "warc_head")}
    if a.ref:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{a.ref}:extraction/warc.py"], capture_output=True,
                             text=True, check=True).stdout
        tmp = Path(tempfile.mkdtemp()) / "warc_ref.py"
        tmp.write_text(src)
        readers = {f"ref {a.ref}": _load(tmp, "warc_ref"), **readers}
    for warc in a.warcs or DEFAULT_WARCS:
        data = warc.read_bytes()
        best = {k: float("inf") for k in readers}
        counts = {}
        for _ in range(a.repeat):
            for name, mod in readers.items():  # interleaved: load changes hit both
                t0 = time.process_time()
                counts[name] = read_all(mod, data)
                best[name] = min(best[name], time.process_time() - t0)
        print(f"{warc.name}: {len(data) / 1e6:.1f} MB compressed, best of {a.repeat} (CPU s)")
        for name in readers:
            n, resp = counts[name]
            print(f"  {name:>24}: {best[name]:.3f} s  {len(data) / 1e6 / best[name]:6.1f} MB/s  "
                  f"{resp / best[name]:7.0f} responses/s  ({n} records, {resp} responses)")
        if len(readers) == 2:
            ref, head = best.values()
            print(f"  change: {100 * (head - ref) / ref:+.1f} % ({(head - ref) * 1000:+.1f} ms per file)")


if __name__ == "__main__":
    main()
