"""deploy/ray (ray up cluster, KubeRay RayJob) and deploy/spark (spark-submit wrapper).

The YAML files are checked for what `ray up` and KubeRay require, the Ray cluster file against
Ray's own schema, every babelsieve command line in them against the real CLI and config loader,
and submit.sh with bash -n, shellcheck and a real spark-submit on a local master.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from support.data import BABELSIEVE, REPO, SAMPLE_WARC, gzip_members
from support.deploy import ensure_tools

CLUSTER = REPO / "deploy" / "ray" / "cluster.yaml"
RAYJOB = REPO / "deploy" / "ray" / "rayjob.yaml"
SUBMIT = REPO / "deploy" / "spark" / "submit.sh"


def _check_babelsieve_command(argv: list[str]) -> None:
    """argv is a valid `babelsieve run ...` for our CLI, and its config loads with its overrides."""
    from babelsieve.pipeline.cli.run import run
    from babelsieve.pipeline.core.config import load_config

    assert argv[0] == "babelsieve" and argv[1] == "run", argv
    ctx = run.make_context("run", argv[2:])  # click parses and type-checks every option
    p = ctx.params
    config = p["config"]
    assert config.startswith("/configs/"), config  # where both recipes mount the configs
    local = REPO / "configs" / Path(config).name
    assert local.exists(), f"{config}: no configs/{Path(config).name} in the repository"
    cfg = load_config(local, inputs=list(p["inputs"]), output=p["output"], engine=p["engine"], shards=p["shards"],
                      sets=list(p["sets"]))
    assert cfg.engine == "ray"
    assert cfg.output.startswith("s3://")
    assert cfg.inputs.paths[0].endswith("warc.paths.gz")


# --------------------------------------------------------------------------------------------
# ray up
# --------------------------------------------------------------------------------------------

def test_ray_cluster_yaml_has_what_ray_up_requires():
    c = yaml.safe_load(CLUSTER.read_text())
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands", "max_workers"):
        assert key in c, key
    assert c["provider"]["type"] == "aws" and c["provider"]["region"] == "us-east-1"  # commoncrawl's region
    nodes = c["available_node_types"]
    assert c["head_node_type"] in nodes
    workers = [n for n in nodes if n != c["head_node_type"]]
    assert workers and all(nodes[w]["max_workers"] >= nodes[w]["min_workers"] for w in workers)
    for name, n in nodes.items():
        assert {"node_config", "resources", "max_workers"} <= set(n), name
        assert n["node_config"]["InstanceType"]
    # file_mounts: local sources exist (configs) or are produced by the documented `pip wheel` step.
    mounts = c["file_mounts"]
    assert mounts["/configs"] == "./configs" and (REPO / "configs" / "fineweb2.yaml").exists()
    dist_remote = next(remote for remote, local in mounts.items() if local.endswith("dist"))
    setup = "\n".join(c["setup_commands"])
    assert f"{dist_remote}/babelsieve-*.whl" in setup
    assert "ray[default]==" in setup
    assert "--head" in " ".join(c["head_start_ray_commands"])
    assert "$RAY_HEAD_IP" in " ".join(c["worker_start_ray_commands"])
    assert "babelsieve models pull glotlid" in " ".join(c.get("head_setup_commands", []))
    # The header's example job is a valid babelsieve command.
    header = CLUSTER.read_text().split("cluster_name:")[0]
    job = re.search(r"ray job submit [^\n]*-- (babelsieve run .*?)(?:\n#\s*ray down)", header, re.S).group(1)
    _check_babelsieve_command(shlex.split(job.replace("\\\n#", " ").replace("\n#", " ")))


def test_ray_cluster_yaml_validates_against_rays_own_schema():
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed in this environment (its schema ships with it)")
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    c = yaml.safe_load(CLUSTER.read_text())
    validate_config(prepare_config(c))  # what `ray up` does first: raises on any key it would reject
    bad = yaml.safe_load(CLUSTER.read_text())
    bad["available_node_types"]["head"]["min_worker"] = 0  # a typo is rejected: the check has teeth
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(bad))
    pins = set(re.findall(r"ray\[default\]==([\w.]+)", CLUSTER.read_text() + RAYJOB.read_text()))
    rayjob = next(d for d in yaml.safe_load_all(RAYJOB.read_text()) if d["kind"] == "RayJob")
    pins.add(rayjob["spec"]["rayClusterSpec"]["rayVersion"])
    assert pins == {ray.__version__}, f"Ray versions in the recipes {pins} differ from the client's {ray.__version__}"


def test_the_project_wheel_the_cluster_installs_builds_with_its_data(tmp_path):
    """`pip wheel --no-deps -w deploy/ray/dist .` (cluster.yaml's first step) gives a complete wheel."""
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = list(tmp_path.glob("babelsieve-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for needed in ("babelsieve/configs/fineweb2.yaml", "babelsieve/pipeline/cli/main.py",
                   "babelsieve/pipeline/data/sample.warc.gz", "babelsieve/langid/data/lid.176.ftz"):
        assert needed in names, needed
    assert any(n.endswith("entry_points.txt") for n in names)


# --------------------------------------------------------------------------------------------
# KubeRay
# --------------------------------------------------------------------------------------------

def _rayjob():
    docs = list(yaml.safe_load_all(RAYJOB.read_text()))
    return next(d for d in docs if d["kind"] == "RayJob"), docs


def _pod_specs(spec):
    rc = spec["rayClusterSpec"]
    yield "head", rc["headGroupSpec"]["template"]["spec"]
    for g in rc["workerGroupSpecs"]:
        yield g["groupName"], g["template"]["spec"]


def test_rayjob_has_what_kuberay_requires():
    job, docs = _rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["metadata"]["name"] and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert isinstance(spec["entrypoint"], str) and spec["entrypoint"].startswith("babelsieve run ")
    assert spec["shutdownAfterJobFinishes"] is True
    rc = spec["rayClusterSpec"]
    assert "rayStartParams" in rc["headGroupSpec"]
    assert rc["workerGroupSpecs"], "no worker groups"
    for g in rc["workerGroupSpecs"]:
        assert g["groupName"] and "rayStartParams" in g
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    images = set()
    for name, pod in _pod_specs(spec):
        containers = pod["containers"]
        assert containers and all(c["name"] and c["image"] for c in containers), name
        images |= {c["image"] for c in containers} | {c["image"] for c in pod.get("initContainers", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers + pod.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{name}/{c['name']}: volume {m['name']} not declared"
        main = containers[0]
        mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
        assert "/models" in mounts and "/configs" in mounts, name
        assert {"name": "BABELSIEVE_CACHE", "value": "/models"} in main["env"]
        assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]
    assert len(images) == 1, f"one image for head, workers and init: {images}"
    # the model cache: a PVC declared in the same file, pulled by the head's init container
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert head["initContainers"][0]["command"] == ["babelsieve", "models", "pull", "glotlid"]
    claim = next(v for v in head["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["claimName"]
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim and "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["BABELSIEVE_CACHE"] == "/models"


def test_rayjob_entrypoint_is_a_valid_babelsieve_command():
    job, _ = _rayjob()
    _check_babelsieve_command(shlex.split(job["spec"]["entrypoint"]))


def test_rayjob_image_is_the_dockerfile_with_ray():
    text = RAYJOB.read_text()
    assert "deploy/docker/Dockerfile" in text and "EXTRA_PIP='ray[default]" in text
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    assert "ARG EXTRA_PIP" in dockerfile and "${EXTRA_PIP}" in dockerfile


# --------------------------------------------------------------------------------------------
# spark-submit
# --------------------------------------------------------------------------------------------

def test_submit_sh_passes_bash_n_and_shellcheck():
    tools = ensure_tools()
    r = subprocess.run(["bash", "-n", str(SUBMIT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scripts = [SUBMIT, REPO / "deploy" / "airflow" / "install_airflow.sh"]
    r = subprocess.run([tools["shellcheck"], "--severity=style", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _submit(*args, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(["bash", str(SUBMIT), *args], capture_output=True, text=True, env=e, **kw)


def test_submit_sh_help_and_argument_errors():
    r = _submit("--help")
    assert r.returncode == 0 and "--master URL" in r.stdout and "AWS_ACCESS_KEY_ID" in r.stdout
    r = _submit("--master", "local[1]")
    assert r.returncode == 2 and "no babelsieve arguments" in r.stderr
    r = _submit("--ship", "zip", "--", "run")
    assert r.returncode == 2 and "--ship must be" in r.stderr


def test_submit_sh_dry_run_ships_a_packed_venv_and_the_config(tmp_path):
    r = _submit("--dry-run", "--master", "yarn", "--deploy-mode", "cluster", "--conf", "spark.executor.cores=4", "--",
                "run", "configs/fineweb2.yaml", "--input", "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz",
                "--output", "s3://b/o", env={"BUILD_DIR": str(tmp_path), "AWS_REGION": "us-east-1"}, cwd=REPO)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "pip wheel --no-deps" in lines[1]
    assert any("venv-pack" in line for line in lines)
    cmd = shlex.split(lines[-1])
    assert cmd[0] == "spark-submit" and cmd[cmd.index("--master") + 1] == "yarn"
    assert cmd[cmd.index("--archives") + 1] == f"{tmp_path}/babelsieve-venv.tar.gz#environment"
    assert "spark.pyspark.python=./environment/bin/python" in cmd
    assert "spark.executorEnv.AWS_REGION=us-east-1" in cmd
    assert "spark.executor.cores=4" in cmd
    assert cmd[cmd.index("--files") + 1] == "configs/fineweb2.yaml"
    driver = cmd.index(str(REPO / "deploy" / "spark" / "driver.py"))
    # in cluster mode the config travels with --files and is named by its base name
    assert cmd[driver + 1:] == ["run", "fineweb2.yaml", "--input",
                                "s3://commoncrawl/crawl-data/CC-MAIN-2024-10/warc.paths.gz", "--output", "s3://b/o",
                                "--engine", "spark"]


def _spark_submit() -> str | None:
    exe = shutil.which("spark-submit") or str(Path(sys.executable).with_name("spark-submit"))
    return exe if Path(exe).exists() and shutil.which("java") else None


@pytest.mark.infra
def test_submit_sh_runs_a_real_spark_submit_on_a_local_master(tmp_path):
    exe = _spark_submit()
    assert exe is not None, "spark-submit (pip package pyspark) or java missing"
    engine = "spark"  # no fallback to the local engine: a missing Spark engine fails the test
    out = tmp_path / "out"
    warc = tmp_path / "small.warc.gz"  # warcinfo + the first pages of the sample: the engine path, quickly
    warc.write_bytes(b"".join(gzip_members(SAMPLE_WARC.read_bytes())[:12]))
    env = {"SPARK_SUBMIT": exe, "PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = _submit("--ship", "none", "--master", "local[2]", "--", "run", "--input", str(warc), "--output",
                str(out), "--only", "extract", "--no-progress", "--workers", "2", "--set", "langid.backend=none",
                "--engine", engine, env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert list((out / "extract").rglob("*.parquet"))
    run = json.loads((out / "_run.json").read_text())
    assert run["config"]["engine"] == engine
    # the same output as a plain `babelsieve run` (engines never change what a task writes)
    ref = tmp_path / "ref"
    r2 = subprocess.run([BABELSIEVE, "run", "--input", str(warc), "--output", str(ref), "--only", "extract",
                         "--no-progress", "--workers", "2", "--set", "langid.backend=none"], capture_output=True,
                        text=True, timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    a = sorted(p.relative_to(out / "extract") for p in (out / "extract").rglob("*.parquet"))
    b = sorted(p.relative_to(ref / "extract") for p in (ref / "extract").rglob("*.parquet"))
    assert a == b
    for rel in a:
        assert (out / "extract" / rel).read_bytes() == (ref / "extract" / rel).read_bytes(), rel
