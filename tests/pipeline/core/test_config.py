"""Configs are validated at load time; errors name the key and the file."""

from __future__ import annotations

import subprocess

import pytest

from babelsieve.pipeline.core.config import ConfigError, bundled_config_path, load_config

from support.data import BABELSIEVE


@pytest.mark.parametrize("name", ["dry-run", "fineweb2"])
def test_bundled_configs_validate(name):
    cfg = load_config(bundled_config_path(name))
    assert cfg.extract.favour_precision is True
    assert cfg.dedup.num_buckets == 14 and cfg.dedup.hashes_per_bucket == 8


def test_typo_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("extract:\n  favour_precison: true\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "extract.favour_precison" in str(e.value) and str(p) in str(e.value)


def test_wrong_type_names_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("extract:\n  time_limit_s: soon\n")
    with pytest.raises(ConfigError, match="extract.time_limit_s"):
        load_config(p)


def test_overrides_apply_and_are_validated():
    cfg = load_config(None, inputs=["a.warc.gz", "b.warc.gz"], output="s3://b/o", engine="ray",
                      sets=["extract.time_limit_s=2.5", "dedup.partitions=8"], shards="0:1")
    assert cfg.inputs.paths == ["a.warc.gz", "b.warc.gz"] and cfg.output == "s3://b/o" and cfg.engine == "ray"
    assert cfg.extract.time_limit_s == 2.5 and cfg.dedup.partitions == 8 and cfg.inputs.shards == "0:1"
    with pytest.raises(ConfigError, match="dedup.partitons"):
        load_config(None, sets=["dedup.partitons=8"])


def test_config_hash_ignores_engine_but_not_settings():
    a = load_config(None, engine="local")
    assert a.content_hash() == load_config(None, engine="spark", output="/elsewhere").content_hash()
    assert a.content_hash() != load_config(None, sets=["extract.favour_precision=false"]).content_hash()


def test_cli_typo_exits_2_with_key_and_file(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("stages: [extract]\nextrac:\n  time_limit_s: 1\n")
    r = subprocess.run([BABELSIEVE, "run", str(p), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "unknown key 'extrac'" in r.stderr and "typo.yaml" in r.stderr
