"""RunLayout is the one place the paths of an output are spelled."""

from __future__ import annotations

import re

from babelsieve.pipeline.core.layout import RunLayout

from support.data import REPO

RESERVED = ("_manifests", "_index", "_run.json", "_summary.json", "_lock.json", "_logs", "_stats", "_refilter",
            "_faults")


def test_paths_below_a_local_root_and_a_url():
    local, s3 = RunLayout("out/"), RunLayout("s3://bucket/run")
    assert local.manifest("filter", "rus_Cyrl-00001") == "out/_manifests/filter/rus_Cyrl-00001.json"
    assert s3.run_marker == "s3://bucket/run/_run.json" and s3.lock == "s3://bucket/run/_lock.json"
    assert s3.removed_dir("filter", "gopher_rep", "top_2_gram") == "s3://bucket/run/removed/filter/gopher_rep/top_2_gram"
    assert s3.stats_dir("filter") == "s3://bucket/run/_stats/filter"
    assert s3.work_dir("dedup", "bands") == "s3://bucket/run/dedup_work/bands"
    assert s3.card == "s3://bucket/run/README.md"


def test_no_other_module_spells_the_reserved_names():
    """A second spelling of an output path is how a copied output ends up reading the original."""
    offenders = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        if path.name == "layout.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(re.search(rf'"{re.escape(name)}["/]', code) for name in RESERVED):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
