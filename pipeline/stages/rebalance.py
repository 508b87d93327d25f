"""Cross-language rebalancing: rehydration, then a target language mixture.

Stage ``rebalance`` (group ``rebalance``): the input documents files (the output of the last
configured stage among finalize, filter, dedup, extract) grouped into tasks by work
(:func:`~babelsieve.pipeline.tasks.work_sized_tasks`); one output file per (task, language).

Every document gets an *expected* number of copies ``c = w(minhash_cluster_size) * r(language)``:

* ``w`` is the rehydration weight (``rebalance.rehydration``): ``none`` -> 1; ``fineweb2`` ->
  FineWeb2's published weights for ``max_reps`` 5 or 10 (languages without an entry: 1);
  ``computed`` -> FineWeb2's method (:mod:`babelsieve.dedup.rehydration`) applied to this run's own
  removal rates by cluster size (documents before the filter stage vs after it).
* ``r`` is the language's sampling rate toward the target mixture, computed on the driver from the
  rehydrated sizes ``n_l`` (documents, or text bytes with ``budget_unit: bytes``):
  ``temperature_alpha``: target share ``∝ n_l ** alpha`` with the same total; ``budgets``: target
  ``budgets[l]`` (languages without a budget keep ``r = 1``); neither: ``r = 1``.

The realised count is ``floor(c) + (u < frac(c))`` with ``u`` a 64-bit hash of (seed, document id,
url) scaled to [0, 1): deterministic per document and independent of task order or sharding.
Copies are written consecutively to ``rebalance/lang_script=X/<task>.parquet`` (no file when a task
keeps no copy), with the final columns (FineWeb2's plus ``lang_script``; ``sig_*`` only with
``finalize.keep_signals``).
Bytes are estimated from the Parquet footer (uncompressed size of the ``text`` column).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from babelsieve.dedup.rehydration import expand, published_weights, weight_for, weights_from_distribution
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import InputPiece, PieceReader, final_columns, language_dir, write_table
from babelsieve.pipeline.core.tasks import (
    Stage,
    Task,
    TaskOutput,
    completed_files,
    inputs_by_language,
    task_pieces,
    work_sized_tasks,
)
from babelsieve.pipeline.stages import documents_input


def uniform_hash(seed: int, ids: list[str], urls: list[str]) -> np.ndarray:
    """Per-document u in [0, 1) from (seed, id, url)."""
    h = np.fromiter(
        (xxhash.xxh64_intdigest(f"{i}\x00{u}".encode(), seed) for i, u in zip(ids, urls, strict=True)),
        dtype=np.uint64,
        count=len(ids),
    )
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def copies(expected: np.ndarray, u: np.ndarray) -> np.ndarray:
    base = np.floor(expected)
    return (base + (u < (expected - base))).astype(np.int64)


def temperature_rates(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    """r_l so that r_l * n_l ∝ n_l ** alpha and sum(r_l * n_l) = sum(n_l)."""
    total = sum(sizes.values())
    z = sum(n**alpha for n in sizes.values() if n > 0)
    return {lang: (total * n**alpha / z) / n if n > 0 else 0.0 for lang, n in sizes.items()}


def budget_rates(sizes: dict[str, float], budgets: dict[str, int]) -> dict[str, float]:
    return {lang: (budgets[lang] / n if n > 0 else 0.0) if lang in budgets else 1.0 for lang, n in sizes.items()}


def distribution_from_counts(
    before: dict[int, int], after: dict[int, int], min_docs: int = 100
) -> dict[str, Any] | None:
    """A FineWeb2-style distribution record from document counts by cluster size, before and after
    filtering. Sizes are listed from 1 while each has >= ``min_docs`` documents before filtering; the
    rest are pooled into the tail."""
    if not before:
        return None
    tot_b, tot_a = sum(before.values()), sum(after.values())
    sizes, rates, counts = [], [], []
    s = 1
    while before.get(s, 0) >= min_docs:
        sizes.append(s)
        rates.append(100.0 * (1 - after.get(s, 0) / before[s]))
        counts.append(after.get(s, 0))
        s += 1
    tail_b = sum(v for k, v in before.items() if k >= s)
    tail_a = sum(v for k, v in after.items() if k >= s)
    if not sizes:
        return None
    return {
        "cluster_sizes": sizes,
        "cluster_removal_rates": rates,
        "cluster_post_filtering_doc_counts": counts,
        "tail_threshold": s,
        "tail_removal_rate": 100.0 * (1 - tail_a / tail_b) if tail_b else rates[-1],
        "tail_post_filtering_doc_counts": tail_a,
        "global_removal_rate": 100.0 * (1 - tot_a / tot_b),
    }


def _text_bytes(entry: dict[str, Any], storage_options) -> int:
    """Uncompressed bytes of the ``text`` column of an input entry (its language's row groups only)."""
    fs, path = storage.filesystem(entry["path"], storage_options)
    with fs.open(path, "rb") as f:
        md = pq.ParquetFile(f).metadata
    i = md.schema.to_arrow_schema().get_field_index("text")
    first, count = entry.get("row_groups") or (0, md.num_row_groups)
    return sum(md.row_group(g).column(i).total_uncompressed_size for g in range(first, first + count))


class RebalanceStage(Stage):
    name = "rebalance"

    # -- driver side -------------------------------------------------------------------------
    def _cluster_sizes(self, entry: dict[str, Any]) -> np.ndarray:
        rgs = entry.get("row_groups")
        piece = InputPiece(entry["path"], tuple(rgs) if rgs is not None else None, entry.get("file_bytes"))
        t = PieceReader([piece], self.storage_options, columns=["minhash_cluster_size"]).read(piece)
        return np.nan_to_num(t.column(0).to_numpy(zero_copy_only=False).astype(float), nan=1.0).astype(np.int64)

    def _computed_weights(self) -> dict[str, dict[str, int]]:
        cfg = self.config
        if "filter" not in cfg.stages or "dedup" not in cfg.stages:
            raise ValueError("rebalance.rehydration=computed needs the dedup and filter stages in `stages`")
        out = {}
        for stage_name, key in (("dedup_annotate", "before"), ("filter", "after")):
            for f in completed_files(cfg, stage_name, kind="documents"):
                cnt = out.setdefault(f["lang_script"], {"before": defaultdict(int), "after": defaultdict(int)})[key]
                vals, n = np.unique(self._cluster_sizes(f), return_counts=True)
                for v, c in zip(vals.tolist(), n.tolist(), strict=True):  # np.unique: one count per value
                    cnt[v] += c
        weights = {}
        for lang, d in sorted(out.items()):
            dist = distribution_from_counts(dict(d["before"]), dict(d["after"]))
            if dist is not None:
                w, _ = weights_from_distribution(dist, cfg.rebalance.max_reps)
                weights[lang] = {str(k): v for k, v in w.items()}
        return weights

    def weights(self) -> dict[str, dict[str, int]]:
        mode = self.config.rebalance.rehydration
        if mode == "none":
            return {}
        if mode == "fineweb2":
            return published_weights(self.config.rebalance.max_reps)
        return self._computed_weights()

    def plan(self) -> list[Task]:
        rc = self.config.rebalance
        inputs = completed_files(self.config, documents_input(self.config, self.name), kind="documents")
        files = sorted(inputs, key=lambda f: f["path"])
        weights = self.weights()
        docs: dict[str, float] = defaultdict(float)
        rehydrated: dict[str, float] = defaultdict(float)
        nbytes: dict[str, float] = defaultdict(float)
        for f in files:
            lang = f["lang_script"]
            w = weight_for(expand(weights.get(lang, {})), self._cluster_sizes(f))
            docs[lang] += len(w)
            rehydrated[lang] += float(w.sum())
            if rc.budget_unit == "bytes":
                nbytes[lang] += _text_bytes(f, self.storage_options) * (float(w.sum()) / max(len(w), 1))
        sizes = dict(nbytes) if rc.budget_unit == "bytes" else dict(rehydrated)
        if rc.budgets:
            rates = budget_rates(sizes, rc.budgets)
        elif rc.temperature_alpha is not None:
            rates = temperature_rates(sizes, rc.temperature_alpha)
        else:
            rates = {lang: 1.0 for lang in sizes}
        summary = {
            lang: {"documents": int(docs[lang]), "rehydrated_documents": int(rehydrated[lang]), "rate": rates[lang],
                   "expected_documents": rehydrated[lang] * rates[lang]}
            for lang in sorted(sizes)
        }
        langs = sorted({f["lang_script"] for f in files})
        return work_sized_tasks(self.name, files, self.config, params={
            "rates": {lang: rates[lang] for lang in langs},
            "weights": {lang: weights.get(lang, {}) for lang in langs},
        }, first_params={"languages": summary})

    # -- worker side -------------------------------------------------------------------------
    def run(self, task: Task) -> TaskOutput:
        files: list[dict[str, Any]] = []
        before = rehydrated = after = 0
        reader = PieceReader(task_pieces(task), self.storage_options)
        for lang, pieces in inputs_by_language(task):
            table = reader.concat(pieces)
            sizes = np.nan_to_num(
                table.column("minhash_cluster_size").to_numpy(zero_copy_only=False).astype(float), nan=1.0
            ).astype(np.int64)
            w = weight_for(expand(task.params["weights"].get(lang, {})), sizes)
            u = uniform_hash(self.config.rebalance.seed, table.column("id").to_pylist(),
                             table.column("url").to_pylist())
            n = copies(w * float(task.params["rates"][lang]), u)
            out = final_columns(table.take(pa.array(np.repeat(np.arange(table.num_rows), n))),
                                keep_signals=self.config.finalize.keep_signals)
            if out.num_rows:  # a language sampled down to nothing: no (empty) file
                url = language_dir(self.layout.stage_dir("rebalance"), lang) + f"/{task.task_id}.parquet"
                files.append({**write_table(url, out, self.storage_options), "kind": "documents",
                              "lang_script": lang})
            before += table.num_rows
            rehydrated += int(w.sum())
            after += int(n.sum())
        return TaskOutput(
            files=files,
            stats={"languages": sorted({lang for lang, _ in inputs_by_language(task)}), "before": before,
                   "after_rehydration": rehydrated, "after": after,
                   "per_language": task.params.get("languages", {})},
        )
