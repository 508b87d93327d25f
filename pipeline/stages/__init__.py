"""The pipeline's stages, one module each, and the one statement of their order.

A user names *stage groups* in the config (``stages: [extract, dedup, filter, finalize, rebalance]``);
each group runs one or more *task stages* in the order of :data:`STAGE_ORDER`. Stage modules are
imported by name when first used, so a worker only loads the code of the stages it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from babelsieve.pipeline.core.tasks import Stage


@dataclass(frozen=True)
class StageSpec:
    """One task stage: its name, the config group that enables it, and where its class lives."""

    name: str
    group: str
    target: str  # "module:Class"
    writes_documents: bool  # its output is the document table the next stage reads
    placeable: bool = False  # its group may be listed anywhere after extract in `stages:` (the others keep this order)


_STAGES = "babelsieve.pipeline.stages"
STAGE_ORDER: tuple[StageSpec, ...] = (
    StageSpec("extract", "extract", f"{_STAGES}.extract:ExtractStage", True),
    StageSpec("dedup_signatures", "dedup", f"{_STAGES}.dedup:DedupSignaturesStage", False),
    StageSpec("dedup_merge", "dedup", f"{_STAGES}.dedup:DedupMergeStage", False),
    StageSpec("dedup_merge_2", "dedup", f"{_STAGES}.dedup:DedupMerge2Stage", False),
    StageSpec("dedup_buckets", "dedup", f"{_STAGES}.dedup:DedupBucketsStage", False),
    StageSpec("dedup_clusters", "dedup", f"{_STAGES}.dedup:DedupClustersStage", False),
    StageSpec("dedup_annotate", "dedup", f"{_STAGES}.dedup:DedupAnnotateStage", True),
    StageSpec("filter", "filter", f"{_STAGES}.filter:FilterStage", True),
    StageSpec("classify", "classify", f"{_STAGES}.classify:ClassifyStage", True, placeable=True),
    StageSpec("finalize", "finalize", f"{_STAGES}.finalize:FinalizeStage", True),
    StageSpec("rebalance", "rebalance", f"{_STAGES}.rebalance:RebalanceStage", True),
)

STAGE_REGISTRY: dict[str, StageSpec] = {s.name: s for s in STAGE_ORDER}
# config group -> its task stages, in order
STAGE_GROUPS: dict[str, list[str]] = {}
for _spec in STAGE_ORDER:
    STAGE_GROUPS.setdefault(_spec.group, []).append(_spec.name)


def stage_class(name: str) -> type[Stage]:
    """The class of task stage ``name`` (imports its module)."""
    try:
        spec = STAGE_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; known: {sorted(STAGE_REGISTRY)}") from None
    module, cls = spec.target.split(":")
    return getattr(importlib.import_module(module), cls)


def check_stage_list(stages: list[str]) -> list[str]:
    """A config's ``stages:``: known groups, each once, extract first, the fixed groups in pipeline order
    (a placeable group such as ``classify`` may stand anywhere after extract). Raises ValueError."""
    order = list(STAGE_GROUPS)
    unknown = [s for s in stages if s not in STAGE_GROUPS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known, in pipeline order: {order}")
    placeable = {s.group for s in STAGE_ORDER if s.placeable}
    fixed = [s for s in stages if s not in placeable]
    in_order = [s for s in order if s not in placeable]
    if len(set(stages)) != len(stages) or fixed != sorted(fixed, key=order.index) or (
            "extract" in stages and stages[0] != "extract"):
        raise ValueError(f"stages must be listed once each, extract first and {in_order} in this order "
                         f"({sorted(placeable)} anywhere after extract); got {stages}")
    return stages


def documents_input(config: Any, stage: str) -> str:
    """The task stage whose documents ``stage`` reads: the document-writing stage of the group configured
    just before its own (``config.stages`` is the run's order).

    ``extract`` is the fallback even when a run enables only later groups (it reads an earlier run's output).
    """
    order = list(STAGE_GROUPS)
    group = STAGE_REGISTRY[stage].group
    configured = list(config.stages)
    if group in configured:
        before = configured[: configured.index(group)]
    else:
        before = [g for g in configured if order.index(g) < order.index(group)]
    for g in reversed(before):
        writers = [s for s in STAGE_GROUPS[g] if STAGE_REGISTRY[s].writes_documents]
        if writers:
            return writers[-1]
    return "extract"
