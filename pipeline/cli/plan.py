"""``babelsieve plan CONFIG --shards N [--workers K] [--from OUTPUT]``: project a full run from a sample run.

Inputs are only *measured* numbers of a finished (or partial) run on a few shards -- the task
manifests' ``seconds``, document counts, output files and their bytes, and the sizes of the
sample's input WARC files. Everything computed from them for N shards is a **projection**, and
the assumptions that turn one into the other are printed with it (:data:`ASSUMPTIONS`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from typing import Any

import click

from babelsieve.pipeline.cli.options import parse_storage_options, storage_option_flag
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import (
    ConfigError,
    DedupConfig,
    TasksConfig,
    env_sets,
    load_config,
    redact_secrets,
    without_redacted,
)
from babelsieve.pipeline.core.documents import WHOLE_FILE_BYTES
from babelsieve.pipeline.core.inputs import storage_options_for

# Dedup memory model (bytes per document). The dedup stage keeps signatures on storage; the
# clustering step holds per-document state only (union-find parent + cluster size + id mapping),
# which the dedup implementation targets at <= 32 bytes per document.
CLUSTER_BYTES_PER_DOC = 32
HASH_BYTES = 8  # 64-bit MinHash values
# s3fs defaults: reads are fetched in blocks, writes above one chunk go multipart.
S3_BLOCK_BYTES = 50 * 2**20
S3_CHUNK_BYTES = 50 * 2**20

ASSUMPTIONS = [
    "Every figure under 'projection' is a linear extrapolation of the sample run's manifests by the factor "
    "full shards / sample shards; the sample's shards are assumed representative of the full input (shard sizes, "
    "HTML share, language mix). Small samples make all of it rough, the language mix especially.",
    "Core-seconds are the tasks' own wall-clock seconds from the manifests x engine_options.cpus_per_task; driver "
    "time, scheduling, retries and worker start-up are not included.",
    "Stages after extract whose tasks are sized by work (dedup_signatures, dedup_annotate, filter, finalize, "
    "rebalance; config `tasks`) get max(documents in / tasks.target_documents, input files / tasks.max_input_files) "
    "tasks at full scale (at least the sample's count): they scale with the shards through the documents, not with "
    "shards x languages. dedup_buckets has one task per hash partition (dedup.partitions); dedup_clusters one task "
    "per group of languages.",
    "Merge levels (dedup_merge, dedup_merge_2; no task in a small sample, so MODELLED, not measured: no core-hours): "
    "every dedup_signatures task at full scale writes a band file to every partition, and a partition with more "
    "than tasks.max_input_files band files is merged in chunks of that many, as dedup's merge_tree does "
    "(merge_levels); dedup_buckets reads the top of that tree.",
    "For other stages: a stage scales its task count by f when each of its tasks reads the output of one task of "
    "a scaling stage "
    "(extract: one task per shard; e.g. one task per extract file), or -- when the manifests do not trace its inputs "
    "-- when it has one task per sample shard; any other stage keeps its measured task count (e.g. hash "
    "partitions, per-language tasks), each task doing f times the work.",
    "Wall time per stage = max(core-seconds / min(parallel slots, tasks), longest task), parallel slots = "
    "floor(K workers / cpus_per_task); stages run one after the other (as the runner does).",
    f"Dedup clustering memory (largest language) = its projected documents x {CLUSTER_BYTES_PER_DOC} bytes/document "
    "(union-find state; the dedup implementation's target), signatures stay on storage; holding the signatures "
    "in memory as well would add num_buckets x hashes_per_bucket x 8 bytes per document.",
    "Largest language = the language with most documents out of extract in the sample, scaled by f.",
    f"S3 requests: per task 1 GET (the worker's manifest check; the driver lists manifests and reads the stage's "
    f"index instead of one request per task) + 1 PUT for its manifest; per Parquet input file of a task 1 GET "
    f"up to {WHOLE_FILE_BYTES >> 20} MiB (the whole file, for all the task's languages of it), else 1 GET of its "
    f"footer + 1 ranged GET per language piece (an upper bound); per other input file "
    f"ceil(bytes / {S3_BLOCK_BYTES >> 20} MiB) GET (s3fs block size); per output file 1 PUT, or multipart "
    f"(2 + ceil(bytes / {S3_CHUNK_BYTES >> 20} MiB) requests) above {S3_CHUNK_BYTES >> 20} MiB; listings (~1 LIST "
    "per 1,000 manifests per stage plan) are not counted.",
    "Input bytes of a stage: the sample's WARC sizes for extract; for other stages the manifest bytes of the files "
    "named as task inputs (a file holding several languages: its bytes x the share of its pieces the task reads), "
    "else the previous documents stage's output bytes.",
]


def _warc_sizes(paths: list[str], storage_options: dict[str, Any] | None) -> tuple[int | None, int]:
    """Total bytes of the sample's input files (None when they cannot be reached), and how many."""
    total = 0
    for p in paths:
        try:
            fs, path = storage.filesystem(p, storage_options_for(p, storage_options or {}))
            total += int(fs.size(path))
        except Exception:  # noqa: BLE001 - a sample input no longer reachable: WARC bytes unmeasured
            return None, len(paths)
    return total, len(paths)


def _scales_with_shards(stage: str, tasks: Any, producer: dict[str, tuple[str, str]], scaling: dict[str, bool],
                        n_tasks: int, sample_shards: int) -> tuple[bool, str]:
    """(scales, label) for a stage's task count: per shard, per upstream task, or fixed."""
    if stage == "extract":
        return True, "per shard"
    sources = []
    for inputs in tasks["inputs"].to_list():
        sources.append({producer[p] for p in inputs if p in producer})
    if sources and all(sources):
        if all(len(src) == 1 and scaling.get(next(iter(src))[0], False) for src in sources):
            return True, "per upstream task"
        return False, "fixed task count"
    # Inputs not traceable to manifests: one task per sample shard means per shard.
    return (True, "per shard") if n_tasks == sample_shards else (False, "fixed task count")


# Stages whose tasks are sized by work (pipeline/tasks.py: work_sized_tasks): tasks follow documents and files.
WORK_SIZED_STAGES = {"dedup_signatures", "dedup_annotate", "filter", "finalize", "rebalance"}


def _work_sized_tasks(docs_in: float | None, input_files: float, sample_tasks: int, task_cfg: dict[str, Any]) -> int:
    """Tasks of a work-sized stage for ``docs_in`` documents in ``input_files`` files (full scale)."""
    target, cap = int(task_cfg["target_documents"]), int(task_cfg["max_input_files"])
    return max(sample_tasks, math.ceil((docs_in or 0) / target), math.ceil(input_files / cap), 1)


def _put_requests(nbytes: float) -> int:
    return 1 if nbytes <= S3_CHUNK_BYTES else 2 + math.ceil(nbytes / S3_CHUNK_BYTES)


def _task_reads(task_inputs: list[list[str]], file_bytes: dict[str, int], file_pieces: dict[str, int],
                size_scale: float) -> tuple[float, float, bool]:
    """(GET requests, bytes) of the sample's tasks reading their inputs (each input path once per language
    piece it reads), with every file ``size_scale`` times its sample size; False when no input size is known."""
    gets = nbytes = 0.0
    known = False
    for inputs in task_inputs:
        for path, pieces in Counter(inputs).items():
            b = file_bytes.get(path)
            if b is None:
                continue
            known = True
            size = b * size_scale
            nbytes += size * min(1.0, pieces / max(1, file_pieces.get(path, 1)))
            if path.endswith(".parquet"):  # documents.PieceReader: whole small files, else footer + ranges
                gets += 1 if size <= WHOLE_FILE_BYTES else 1 + pieces
            else:
                gets += max(1, math.ceil(size / S3_BLOCK_BYTES))
    return gets, nbytes, known


def _merge_projection(signature_tasks: int, partitions: int, cap: int,
                      band_bytes: float) -> tuple[list[dict[str, Any]], int]:
    """Modelled rows of the merge levels (a sample too small to merge measures none), and the files a
    ``dedup_buckets`` task then reads: every signatures task writes a band file to every partition."""
    from babelsieve.pipeline.stages.dedup import MERGE_STAGES, merge_levels

    levels, bucket_reads = merge_levels(signature_tasks, cap)
    rows = []
    for stage, (nodes, inputs, fanin) in zip(MERGE_STAGES, levels, strict=True):
        n = nodes * partitions
        moved = band_bytes if n else 0.0  # a level concatenates (at most) every band file of the partitions
        rows.append({
            "stage": stage, "tasks": n, "scales_with_shards": True,
            "scaling": f"merge level (modelled): {nodes:,} per partition, up to {fanin:,} files each" if n
            else f"none: <= {cap:,} band files per partition",
            "docs_in": None, "docs_out": None, "core_hours": None, "wall_hours": None,
            "docs_per_second_on_workers": None, "bytes_read": round(moved), "bytes_written": round(moved),
            "s3_get": inputs * partitions + n, "s3_put": 2 * n, "s3_head": 0,
        })
    return rows, bucket_reads


def project(sample_output: str, shards: int, workers: int, config: Any | None = None,
            storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measured figures of ``sample_output`` and their projection to ``shards`` shards on ``workers`` workers."""
    import polars as pl

    from babelsieve.pipeline.report.stats import collect_run_stats, read_run_info

    if shards < 1 or workers < 1:
        raise ValueError("--shards and --workers must be at least 1")
    run = read_run_info(sample_output, storage_options)
    stats = collect_run_stats(sample_output, storage_options, scan_parquet=False)
    tasks, files, st = stats["tasks"], stats["files"], stats["stages"]
    sample_shards = tasks.filter(pl.col("stage") == "extract").height
    if sample_shards == 0:
        raise ValueError(
            f"{sample_output} has no completed extract tasks to measure. Make a sample run first, e.g.\n"
            f"  babelsieve run CONFIG --shards 0:4 --output {sample_output}")
    saved = (run or {}).get("config") or {}
    cfg_dict = config.model_dump(mode="json") if config is not None else saved
    cpus = float(((cfg_dict.get("engine_options") or {}).get("cpus_per_task")) or 1.0)
    # the config's own defaults fill what a sample's saved config lacks
    dedup = {**DedupConfig().model_dump(), **(cfg_dict.get("dedup") or {})}
    task_cfg = {**TasksConfig().model_dump(), **(cfg_dict.get("tasks") or {})}
    sig_bytes_per_doc = int(dedup["num_buckets"]) * int(dedup["hashes_per_bucket"]) * HASH_BYTES
    f = shards / sample_shards
    slots = max(1, int(workers // cpus))
    partitions, merge_cap = int(dedup["partitions"]), int(task_cfg["max_input_files"])
    merge_reads: int | None = None  # files a dedup_buckets task reads at full scale, once modelled
    warnings = []
    if config is not None and run and run.get("config_hash") != config.content_hash():
        warnings.append(f"the sample run's config hash {run.get('config_hash')} differs from CONFIG's "
                        f"{config.content_hash()}: its measurements may not transfer to this config")

    # the files table has a row per language of a file that holds several: a file's bytes are their sum
    by_path = files.group_by("path", maintain_order=True).agg(pl.col("bytes").sum(), pl.len().alias("pieces"))
    file_bytes = dict(zip(by_path["path"].to_list(), by_path["bytes"].to_list(), strict=True))
    file_pieces = dict(zip(by_path["path"].to_list(), by_path["pieces"].to_list(), strict=True))
    extract_inputs = [p for lst in tasks.filter(pl.col("stage") == "extract")["inputs"].to_list() for p in lst]
    warc_bytes, n_warc = _warc_sizes(extract_inputs, without_redacted(saved.get("storage_options") or {})
                                     or storage_options)

    # Which task produced each file: a stage whose every task reads the output of one task of a
    # scaling stage scales with the shards too (one task per upstream file or task).
    producer = dict(zip(files["path"].to_list(),
                        zip(files["stage"].to_list(), files["task_id"].to_list(), strict=True), strict=True))
    scaling: dict[str, bool] = {}
    if sample_shards == 1:
        warnings.append("a 1-shard sample cannot tell stages with one task per upstream file from stages with a "
                        "fixed task count (hash partitions): sample at least 2 shards")
    measured, projected = [], []
    prev_doc_bytes: int | None = None
    for r in st.iter_rows(named=True):
        s = r["stage"]
        t = tasks.filter(pl.col("stage") == s)
        fs_ = files.filter(pl.col("stage") == s)
        task_inputs = t["inputs"].to_list()
        inputs = [p for lst in task_inputs for p in lst]
        known = False
        if s != "extract":
            _, read_bytes, known = _task_reads(task_inputs, file_bytes, file_pieces, 1.0)
        if s == "extract":
            in_bytes, in_note = warc_bytes, ("WARC sizes" if warc_bytes is not None else "unreachable")
            in_sizes = [warc_bytes / max(1, n_warc)] * len(inputs) if warc_bytes is not None else []
        elif known:
            in_bytes, in_note, in_sizes = int(read_bytes), "manifest files", []
        else:
            in_bytes, in_note = prev_doc_bytes, "previous stage's documents"
            in_sizes = [prev_doc_bytes] if prev_doc_bytes else []
        core_s = float(r["seconds"]) * cpus
        m = {
            "stage": s, "tasks": r["tasks"], "core_seconds": round(core_s, 3),
            "max_task_seconds": r["max_task_seconds"],
            "docs_in": r["docs_in"], "docs_out": r["docs_out"], "bytes_in": in_bytes, "bytes_in_source": in_note,
            "bytes_out": r["bytes_out"], "files_out": r["files"],
            "docs_per_core_second": (r["docs_in"] / core_s) if core_s > 0 and r["docs_in"] else None,
        }
        measured.append(m)

        # a sample made by a version with work-sized tasks has the `tasks` config section
        work_sized = s in WORK_SIZED_STAGES and "tasks" in cfg_dict
        if work_sized:  # grouped by work: count from the full scale's documents and files
            per_shard, how = True, "per work (documents, files): scales with shards"
            tasks_full = _work_sized_tasks(r["docs_in"] * f if r["docs_in"] is not None else None,
                                           len(inputs) * f, r["tasks"], task_cfg)
        elif s == "dedup_buckets" and "tasks" in cfg_dict:  # at full scale every hash partition has band files
            per_shard, how = False, "one task per hash partition"
            tasks_full = max(r["tasks"], partitions)
        else:
            per_shard, how = _scales_with_shards(s, t, producer, scaling, r["tasks"], sample_shards)
            tasks_full = round(r["tasks"] * f) if per_shard else r["tasks"]
        scaling[s] = per_shard
        core_full = core_s * f
        # a fixed-count stage's tasks each do f times the work, shared by more tasks where there are more at scale
        longest = float(r["max_task_seconds"] or 0.0) * (1.0 if per_shard else f * r["tasks"] / max(1, tasks_full))
        wall = max(core_full / max(1, min(slots, tasks_full)), longest) if tasks_full else 0.0
        # S3 requests: scale the sample's request counts by f (per-file sizes scale for fixed-task stages).
        size_scale = 1.0 if per_shard else f
        count_scale = f if per_shard else 1.0
        if known:
            gets = _task_reads(task_inputs, file_bytes, file_pieces, size_scale)[0] * count_scale
        else:
            gets = sum(math.ceil((b * size_scale) / S3_BLOCK_BYTES) or 1 for b in in_sizes) * count_scale
        if s == "dedup_buckets" and merge_reads is not None:  # it reads the top of each partition's merge tree
            gets = merge_reads * tasks_full
        out_bytes = fs_.group_by("path").agg(pl.col("bytes").sum())["bytes"].to_list()  # a PUT per file
        puts = sum(_put_requests((b or 0) * size_scale) for b in out_bytes) * count_scale
        puts += tasks_full  # manifests
        gets += tasks_full  # the worker's manifest check (one GET; 404 on a first run)
        heads = 0
        projected.append({
            "stage": s, "tasks": tasks_full, "scaling": how, "scales_with_shards": bool(per_shard),
            "docs_in": round(r["docs_in"] * f) if r["docs_in"] is not None else None,
            "docs_out": round(r["docs_out"] * f) if r["docs_out"] is not None else None,
            "core_hours": core_full / 3600, "wall_hours": wall / 3600,
            "docs_per_second_on_workers": ((r["docs_in"] * f) / wall) if wall > 0 and r["docs_in"] else None,
            "bytes_read": round(in_bytes * f) if in_bytes is not None else None,
            "bytes_written": round((r["bytes_out"] or 0) * f),
            "s3_get": round(gets), "s3_put": round(puts), "s3_head": round(heads),
        })
        if r["documents_bytes"]:
            prev_doc_bytes = r["documents_bytes"]
        if s == "dedup_signatures" and "tasks" in cfg_dict:
            band_bytes = sum(b or 0 for b in fs_.filter(pl.col("kind") == "bands")["bytes"].to_list()) * f
            rows, merge_reads = _merge_projection(tasks_full, partitions, merge_cap, band_bytes)
            projected += rows

    # Dedup clustering memory for the largest language.
    langs = stats["languages"].filter(pl.col("stage") == "extract").sort(["docs_out", "lang_script"],
                                                                       descending=[True, False])
    largest = langs.row(0, named=True) if langs.height else None
    mem: dict[str, Any] = {"bytes_per_doc_clustering": CLUSTER_BYTES_PER_DOC,
                           "signature_bytes_per_doc": sig_bytes_per_doc}
    if largest:
        n_full = largest["docs_out"] * f
        mem.update({
            "largest_language": largest["lang_script"], "largest_language_docs_sample": largest["docs_out"],
            "largest_language_docs": round(n_full),
            "clustering_bytes": round(n_full * CLUSTER_BYTES_PER_DOC),
            "clustering_plus_signatures_bytes": round(n_full * (CLUSTER_BYTES_PER_DOC + sig_bytes_per_doc)),
            "all_signatures_bytes": round(sum(langs["docs_out"].to_list()) * f * sig_bytes_per_doc),
        })
    if largest and largest["lang_script"] == "und":
        warnings.append("the sample's largest 'language' is und (language ID off or failing): the dedup memory "
                        "projection treats those documents as one language")
    sig = st.filter(pl.col("stage") == "dedup_signatures")
    if sig.height and sig["docs_in"][0]:
        mem["measured_signature_stage_bytes_per_doc"] = sig["bytes_out"][0] / sig["docs_in"][0]

    configured = list(cfg_dict.get("stages") or [])
    ran = set(st["stage"].to_list())
    unmeasured = [g for g in configured if g not in ran and not any(s.startswith(g + "_") for s in ran)]
    total = {
        "core_hours": sum(p["core_hours"] or 0.0 for p in projected),
        "wall_hours": sum(p["wall_hours"] or 0.0 for p in projected),
        "bytes_read": sum(p["bytes_read"] or 0 for p in projected),
        "bytes_written": sum(p["bytes_written"] for p in projected),
        "s3_requests": sum(p["s3_get"] + p["s3_put"] + p["s3_head"] for p in projected),
    }
    return {
        "sample_output": sample_output, "sample_shards": sample_shards,
        "sample_config_hash": (run or {}).get("config_hash"),
        "sample_warc_bytes": warc_bytes, "shards": shards, "workers": workers, "cpus_per_task": cpus,
        "parallel_slots": slots, "scale_factor": f, "measured": measured, "projection": projected,
        "projection_total": total, "dedup_memory_projection": mem, "unmeasured_stages": unmeasured,
        "warnings": warnings, "assumptions": ASSUMPTIONS,
    }


def _h(n: float | None) -> str:
    from babelsieve.pipeline.report.card import human_bytes

    return "-" if n is None else human_bytes(n)


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def print_plan(p: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    m = Table(title=f"MEASURED on the sample: {p['sample_output']} ({p['sample_shards']} shards, "
                    f"WARC {_h(p['sample_warc_bytes'])})")
    for c in ("stage", "tasks", "core-s", "longest task s", "docs in", "docs out", "docs/core-s", "bytes in",
              "bytes out", "files out"):
        m.add_column(c, justify="left" if c == "stage" else "right")
    for r in p["measured"]:
        m.add_row(r["stage"], _n(r["tasks"]), _n(r["core_seconds"], 1), _n(r["max_task_seconds"], 1),
                  _n(r["docs_in"]), _n(r["docs_out"]), _n(r["docs_per_core_second"], 2), _h(r["bytes_in"]),
                  _h(r["bytes_out"]), _n(r["files_out"]))
    console.print(m)
    t = Table(title=f"PROJECTION for {p['shards']:,} shards on {p['workers']:,} workers "
                    f"(x{p['scale_factor']:,.1f} the sample; {p['parallel_slots']:,} parallel task slots)")
    for c in ("stage", "tasks", "scaling", "docs in", "docs out", "core-hours", "wall hours", "docs/s (all workers)",
              "read", "written", "S3 GET", "S3 PUT", "S3 HEAD"):
        t.add_column(c, justify="left" if c in ("stage", "scaling") else "right")
    for r in p["projection"]:
        t.add_row(r["stage"], _n(r["tasks"]), r["scaling"], _n(r["docs_in"]), _n(r["docs_out"]),
                  _n(r["core_hours"], 2), _n(r["wall_hours"], 2), _n(r["docs_per_second_on_workers"], 1),
                  _h(r["bytes_read"]), _h(r["bytes_written"]), _n(r["s3_get"]), _n(r["s3_put"]), _n(r["s3_head"]))
    tot = p["projection_total"]
    t.add_row("[bold]total", "", "", "", "", _n(tot["core_hours"], 2), _n(tot["wall_hours"], 2), "",
              _h(tot["bytes_read"]), _h(tot["bytes_written"]), "", "", "")
    console.print(t)
    mem = p["dedup_memory_projection"]
    if mem.get("largest_language"):
        console.print(
            f"PROJECTION dedup clustering memory, largest language [bold]{mem['largest_language']}[/] "
            f"({mem['largest_language_docs_sample']:,} docs in the sample -> {mem['largest_language_docs']:,}): "
            f"[bold]{_h(mem['clustering_bytes'])}[/] at {mem['bytes_per_doc_clustering']} B/doc; "
            f"{_h(mem['clustering_plus_signatures_bytes'])} if its signatures "
            f"({mem['signature_bytes_per_doc']} B/doc) "
            f"were held in memory too. All signatures on storage: {_h(mem['all_signatures_bytes'])}.")
    if "measured_signature_stage_bytes_per_doc" in mem:
        console.print("MEASURED dedup_signatures output (signatures + band files): "
                      f"{mem['measured_signature_stage_bytes_per_doc']:,.1f} bytes/doc")
    console.print(f"PROJECTION S3 requests in total: {tot['s3_requests']:,}")
    scaling = [r["stage"] for r in p["projection"] if r.get("scales_with_shards")]
    fixed = [r["stage"] for r in p["projection"] if not r.get("scales_with_shards")]
    console.print(f"Task counts that scale with the shards: {', '.join(scaling) or '-'}; "
                  f"fixed (hash partitions, language groups): {', '.join(fixed) or '-'}")
    if p["unmeasured_stages"]:
        console.print(f"[yellow]not measured[/] (not run in the sample, so not projected): "
                      f"{', '.join(p['unmeasured_stages'])}")
    for w in p["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    console.print("[bold]Assumptions[/]")
    for a in p["assumptions"]:
        console.print(f"  - {a}")


@click.command("plan")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--shards", "-n", type=int, required=True,
              help="WARC shards in the full job (e.g. 90000 for a snapshot).")
@click.option("--workers", "-w", type=int, default=None,
              help="Worker cores of the full job (default: engine_options.workers of CONFIG, else this machine's).")
@click.option("--from", "from_output", metavar="OUTPUT", default=None,
              help="Output of a finished sample run to measure (default: CONFIG's output).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override CONFIG keys, as for `run`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
@storage_option_flag
def plan_command(config: str | None, shards: int, workers: int | None, from_output: str | None,
                 sets: tuple[str, ...], as_json: bool, storage_option: tuple[str, ...]) -> None:
    """Project a full run (time, core-hours, dedup memory, S3 traffic) from a sample run's manifests.

    \b
    Make a sample run on a few shards of the real input first, then project:
      babelsieve run configs/fineweb2.yaml --shards 0:8 --output ./sample
      babelsieve plan configs/fineweb2.yaml --shards 90000 --workers 2000 --from ./sample
    Measured numbers and projections are labelled as such; the assumptions are printed.
    """
    from rich.console import Console

    from babelsieve.pipeline.report.stats import resolve_storage_options

    err = Console(stderr=True)
    cfg = None
    if config or sets:
        try:
            cfg = load_config(config, sets=list(sets) + env_sets())
        except ConfigError as e:
            err.print(f"[red]error:[/] {e}", soft_wrap=True)
            sys.exit(2)
    sample = from_output or (cfg.output if cfg else None)
    if not sample:
        err.print("[red]error:[/] give CONFIG or --from OUTPUT (the sample run to measure)")
        sys.exit(2)
    k = workers or (cfg.engine_options.workers if cfg else None) or os.cpu_count() or 1
    opts = resolve_storage_options(sample, parse_storage_options(storage_option))
    try:
        p = redact_secrets(project(sample, shards, k, cfg, opts))
    except (ValueError, FileNotFoundError) as e:
        err.print(f"[red]error:[/] {redact_secrets(str(e))}", soft_wrap=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(p, indent=1, sort_keys=True))
    else:
        print_plan(p, Console(width=200))
