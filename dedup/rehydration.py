"""Rehydration: upsampling weights by MinHash cluster size (FineWeb2's method).

FineWeb2 keeps one document per duplicate cluster and records ``minhash_cluster_size``. The
filtering rate of documents *by cluster size* tells how good each cluster size is: sizes whose
removal rate is at or above the language's global removal rate get weight 1, the size with the
lowest removal rate gets ``max_reps``, sizes in between are linearly interpolated; the result is
smoothed with a 5-wide moving average (edges keep their raw value), rounded, and written as a step
function ``{first cluster size of a run: weight}`` (FineWeb2's ``up_to_NN_reps.json`` shape).

Sources of weights:

* FineWeb2's published files (``configs/rehydration/up_to_05_reps.json`` and
  ``up_to_10_reps.json``, Apache-2.0, from huggingface/fineweb-2 ``misc/rehydration/weights``);
* computed from distribution files (``{lang}.json`` with ``cluster_sizes``,
  ``cluster_removal_rates``, ``cluster_post_filtering_doc_counts``, ``tail_threshold``,
  ``tail_removal_rate``, ``tail_post_filtering_doc_counts``, ``global_removal_rate``) -- FineWeb2's
  published ``distributions/`` or the same statistics of one of our runs.

``babelsieve rehydrate weights DIR --max-reps N --out FILE.json`` computes the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np


def compute_repetitions(
    sizes: np.ndarray, rates: np.ndarray, doc_counts: np.ndarray, global_rate: float, max_reps: int, window: int = 5
) -> tuple[dict[int, int], int]:
    """FineWeb2's computation (misc/rehydration/README.md), re-implemented.

    Returns ({first size of each run of equal weights: weight}, resulting document count).
    """
    sizes = np.asarray(sizes)
    rates = np.asarray(rates, dtype=float)
    doc_counts = np.asarray(doc_counts)
    above_global = rates >= global_rate
    min_rate = np.min(rates)
    reps = np.ones_like(rates, dtype=float)
    below = ~above_global
    if np.any(below):
        reps[below] = 1 + (max_reps - 1) * ((rates[below] - global_rate) / (min_rate - global_rate))
    kernel = np.ones(window) / window
    smoothed = np.convolve(reps, kernel, mode="same")
    half = window // 2
    smoothed[:half] = reps[:half]
    smoothed[-half:] = reps[-half:]
    repetitions = np.round(smoothed).astype(int)
    out: dict[int, int] = {}
    total = 0
    current, start = repetitions[0], sizes[0]
    for i in range(len(sizes)):
        total += int(doc_counts[i]) * int(repetitions[i])
        if i == len(sizes) - 1 or repetitions[i + 1] != current:
            out[int(start)] = int(current)
            if i < len(sizes) - 1:
                start, current = sizes[i + 1], repetitions[i + 1]
    return out, total


def weights_from_distribution(dist: Mapping[str, Any], max_reps: int) -> tuple[dict[int, int], int]:
    """Weights for one language from its distribution record (FineWeb2's JSON layout)."""
    sizes = np.array(list(dist["cluster_sizes"]) + [dist["tail_threshold"]])
    rates = np.array(list(dist["cluster_removal_rates"]) + [dist["tail_removal_rate"]])
    counts = np.array(list(dist["cluster_post_filtering_doc_counts"]) + [dist["tail_post_filtering_doc_counts"]])
    return compute_repetitions(sizes, rates, counts, dist["global_removal_rate"], max_reps)


def weights_from_dir(directory: str | Path, max_reps: int) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """{lang: {size(str): weight}} and {lang: resulting doc count} for every ``*.json`` in a dir."""
    weights: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    files = sorted(Path(directory).glob("*.json"))
    if not files:
        raise ValueError(f"no distribution files (*.json) in {directory}")
    for f in files:
        try:
            dist = json.loads(f.read_text(encoding="utf-8"))
            w, total = weights_from_distribution(dist, max_reps)
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{f}: not a rehydration distribution file ({type(e).__name__}: {e})") from e
        weights[f.stem] = {str(k): v for k, v in w.items()}
        totals[f.stem] = total
    return weights, totals


def published_weights(max_reps: int) -> dict[str, dict[str, int]]:
    """FineWeb2's published weights shipped in configs/rehydration (max_reps 5 or 10)."""
    name = f"up_to_{max_reps:02d}_reps.json"
    path = resources.files("babelsieve.configs").joinpath("rehydration", name)
    if not path.is_file():
        raise ValueError(f"no published FineWeb2 weights for max_reps={max_reps} (shipped: 5, 10)")
    return json.loads(path.read_text(encoding="utf-8"))


def expand(weights: Mapping[Any, int]) -> np.ndarray:
    """Step function -> lookup table ``t`` with ``t[size]`` the weight (as FineWeb2's Rehydrater):
    sizes past the last step take the last weight; size 0 maps to 1."""
    steps = {int(k): int(v) for k, v in weights.items()}
    top = max(steps) if steps else 1
    t = np.ones(top + 1, dtype=np.int64)
    cur = 1
    for i in range(1, top + 1):
        cur = steps.get(i, cur)
        t[i] = cur
    return t


def weight_for(table: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.int64)
    return table[np.clip(sizes, 0, len(table) - 1)]
