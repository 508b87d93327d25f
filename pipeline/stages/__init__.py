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


_STAGES = "babelsieve.pipeline.stages"
STAGE_ORDER: tuple[StageSpec, ...] = (
    StageSpec("extract", "extract", f"{_STAGES}.extract:ExtractStage", True),
    StageSpec("dedup_signatures", "dedup", f"{_STAGES}.dedup:DedupSignaturesStage", False),
    StageSpec("dedup_buckets", "dedup", f"{_STAGES}.dedup:DedupBucketsStage", False),
    StageSpec("dedup_clusters", "dedup", f"{_STAGES}.dedup:DedupClustersStage", False),
    StageSpec("dedup_annotate", "dedup", f"{_STAGES}.dedup:DedupAnnotateStage", True),
    StageSpec("filter", "filter", f"{_STAGES}.filter:FilterStage", True),
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


def documents_input(config: Any, stage: str) -> str:
    """The task stage whose documents ``stage`` reads: the last enabled document-writing stage before it.

    ``extract`` is the fallback even when a run enables only later groups (it reads an earlier run's output).
    """
    before = [s for s in STAGE_ORDER[: [s.name for s in STAGE_ORDER].index(stage)] if s.writes_documents]
    for spec in reversed(before):
        if spec.group in config.stages:
            return spec.name
    return "extract"
