"""Rehydration weights: FineWeb2's method reproduces their published files for every language."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from babelsieve.dedup.rehydration import expand, published_weights, weight_for, weights_from_dir
from babelsieve.pipeline.cli.rehydrate import rehydrate_command

from support.data import REPO, data_file

SHIPPED = REPO / "configs" / "rehydration"


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """FineWeb2's rehydration folder laid out as published, from tests/data/fineweb2-rehydration.json.gz:
    distributions/*.json, resulting_ds_sizes.json and the two weight files. The weight files are the ones
    shipped in configs/rehydration, after checking that their SHA-256 is that of FineWeb2's files."""
    with gzip.open(data_file("fineweb2-rehydration.json.gz"), "rt", encoding="utf-8") as f:
        doc = json.load(f)
    ref = tmp_path_factory.mktemp("fw2-rehydration")
    (ref / "distributions").mkdir()
    for lang, text in doc["distributions"].items():
        (ref / "distributions" / f"{lang}.json").write_text(text, encoding="utf-8")
    (ref / "resulting_ds_sizes.json").write_text(json.dumps(doc["resulting_ds_sizes"]))
    for name, digest in doc["published_sha256"].items():
        data = (SHIPPED / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"configs/rehydration/{name} is not FineWeb2's file"
        (ref / name).write_bytes(data)
    return ref


@pytest.mark.parametrize("max_reps", [5, 10])
def test_reproduces_published_weights_for_every_language(ref, max_reps):
    published = json.loads((ref / f"up_to_{max_reps:02d}_reps.json").read_text())
    sizes = json.loads((ref / "resulting_ds_sizes.json").read_text())[str(max_reps)]
    ours, totals = weights_from_dir(ref / "distributions", max_reps)
    assert len(published) == 1856 and set(ours) == set(published)
    mismatched = sorted(lang for lang in published if published[lang] != ours[lang])
    wrong_sizes = sorted(lang for lang in published if sizes[lang] != totals[lang])
    print(f"max_reps={max_reps}: {len(published) - len(mismatched)}/{len(published)} languages identical")
    assert mismatched == [] and wrong_sizes == []


def test_shipped_weights_equal_reference(ref):
    for m in (5, 10):
        assert published_weights(m) == json.loads((ref / f"up_to_{m:02d}_reps.json").read_text())
    with pytest.raises(ValueError, match="max_reps=7"):
        published_weights(7)


def test_step_function_lookup_matches_fineweb2_rehydrater():
    w = {"1": 1, "2": 3, "3": 4, "5": 6, "17": 10, "145": 1}
    t = expand(w)
    got = weight_for(t, np.array([1, 2, 3, 4, 5, 16, 17, 144, 145, 10_000]))
    assert got.tolist() == [1, 3, 4, 4, 6, 6, 10, 10, 1, 1]


def test_cli_weights(ref, tmp_path):
    d = tmp_path / "dist"
    d.mkdir()
    for lang in ("ita_Latn", "rus_Cyrl"):
        (d / f"{lang}.json").write_text((ref / "distributions" / f"{lang}.json").read_text())
    out = tmp_path / "w.json"
    r = CliRunner().invoke(rehydrate_command, ["weights", str(d), "--max-reps", "10", "--out", str(out)])
    assert r.exit_code == 0, r.output
    pub = json.loads((ref / "up_to_10_reps.json").read_text())
    assert json.loads(out.read_text()) == {"ita_Latn": pub["ita_Latn"], "rus_Cyrl": pub["rus_Cyrl"]}
    (d / "bad.json").write_text('{"cluster_sizes": [1]}')
    r = CliRunner().invoke(rehydrate_command, ["weights", str(d), "--max-reps", "10", "--out", str(out)])
    assert r.exit_code != 0 and "bad.json" in r.output
