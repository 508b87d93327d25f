"""The stage registry is the one statement of the stages and their order."""

from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest

from babelsieve.pipeline.core.config import ConfigError, load_config
from babelsieve.pipeline.core.tasks import Stage
from babelsieve.pipeline.stages import STAGE_GROUPS, STAGE_ORDER, documents_input, stage_class

from support.data import REPO


def test_every_registered_stage_loads_and_is_named_as_registered():
    for spec in STAGE_ORDER:
        cls = stage_class(spec.name)
        assert issubclass(cls, Stage) and cls.name == spec.name


def test_groups_follow_the_pipeline_order():
    assert list(STAGE_GROUPS) == ["extract", "dedup", "filter", "classify", "finalize", "rebalance"]
    assert STAGE_GROUPS["dedup"] == ["dedup_signatures", "dedup_merge", "dedup_merge_2", "dedup_buckets",
                                     "dedup_clusters", "dedup_annotate"]


@pytest.mark.parametrize(("stages", "stage", "reads"), [
    (["extract", "dedup", "filter", "finalize", "rebalance"], "filter", "dedup_annotate"),
    (["extract", "filter", "finalize"], "filter", "extract"),
    (["extract", "dedup", "filter", "finalize"], "finalize", "filter"),
    (["extract", "dedup", "finalize"], "finalize", "dedup_annotate"),
    (["extract", "finalize", "rebalance"], "rebalance", "finalize"),
    (["extract", "dedup", "rebalance"], "rebalance", "dedup_annotate"),
    (["filter"], "filter", "extract"),  # a later stage alone reads an earlier run's extract output
    (["extract", "dedup", "filter", "classify", "finalize"], "finalize", "classify"),
    (["extract", "dedup", "filter", "classify", "finalize"], "classify", "filter"),
    (["extract", "classify", "dedup", "filter"], "dedup_annotate", "classify"),  # classify placed early
    (["extract", "dedup", "filter", "finalize", "classify"], "classify", "finalize"),  # ... or last
])
def test_each_stage_reads_the_last_enabled_document_stage_before_it(stages, stage, reads):
    assert documents_input(SimpleNamespace(stages=stages), stage) == reads


def test_unknown_or_reordered_stages_are_config_errors_naming_the_key():
    with pytest.raises(ConfigError, match="stages.*unknown stage"):
        load_config(sets=["stages=[extract,dedupe]"])
    for bad in ("[filter,extract]", "[extract,extract]", "[extract,finalize,filter]", "[classify,extract]"):
        with pytest.raises(ConfigError, match="stages.*once each, extract first"):
            load_config(sets=[f"stages={bad}"])
    assert load_config(sets=["stages=[extract,classify,dedup]"]).stages == ["extract", "classify", "dedup"]


def test_the_airflow_dag_lists_the_registered_stages():
    """The DAG imports nothing from babelsieve, so it keeps a copy of the stage list: it must match."""
    tree = ast.parse((REPO / "deploy" / "airflow" / "babelsieve_dag.py").read_text(encoding="utf-8"))
    stages = next(ast.literal_eval(n.value) for n in tree.body
                  if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "STAGES" for t in n.targets))
    assert stages == list(STAGE_GROUPS)
