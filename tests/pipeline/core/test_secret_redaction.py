"""Secrets never leave memory: no output file, log, report, card or printed status shows them.

A run is given S3-style credentials with ``--set storage_options.key=... --set
storage_options.secret=...`` (what the README suggests) against a local output; then every file of
the output (report and dataset card included) and everything the CLI prints are searched for them.
Spark's submit.sh and the Airflow DAG must keep them off command lines and out of logs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.data import BABELSIEVE, REPO, SAMPLE_WARC, gzip_members

KEY_ID = "AKIAHOSTILEKEYID0042"
SECRET = "SECRETVALUE-wJalrXUtnFEMI-K7MDENG"
TOKEN = "SESSIONTOKEN-FwoGZXIvYXdzEJr"
SUBMIT = REPO / "deploy" / "spark" / "submit.sh"
DAG_FILE = REPO / "deploy" / "airflow" / "babelsieve_dag.py"


def _small_warc(dest: Path) -> Path:
    p = dest / "small.warc.gz"
    p.write_bytes(b"".join(gzip_members(SAMPLE_WARC.read_bytes())[:12]))
    return p


def _assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for s in (KEY_ID, SECRET, TOKEN):
        assert s.encode() not in data, f"{s} found in {where}"


def _grep_tree(root: Path) -> int:
    n = 0
    for p in root.rglob("*"):
        if p.is_file():
            _assert_no_secret(p.read_bytes(), str(p))
            n += 1
    return n


def test_a_run_its_report_card_logs_status_and_plan_hold_no_secret(tmp_path):
    out = tmp_path / "out"
    warc = _small_warc(tmp_path)
    r = subprocess.run([BABELSIEVE, "run", "--input", str(warc), "--output", str(out), "--no-progress",
                        "--workers", "1", "--set", "langid.backend=none",
                        "--set", f"storage_options.key={KEY_ID}", "--set", f"storage_options.secret={SECRET}",
                        "--set", f"storage_options.client_kwargs.aws_session_token={TOKEN}",
                        # a URL with user:password@ that fails: its error reaches logs, summary and status
                        "--input", f"http://{KEY_ID}:{SECRET}@127.0.0.1:9/x.warc.gz", "--keep-going"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "FAILED extract/00001 http://<redacted>@127.0.0.1:9/x.warc.gz" in r.stderr
    printed = [r.stdout + r.stderr]
    for cmd in (["report", str(out)], ["status", str(out)], ["status", str(out), "--json"], ["logs", str(out)],
                ["logs", str(out), "--json"], ["plan", "--from", str(out), "--shards", "100", "--workers", "4"],
                ["plan", "--from", str(out), "--shards", "100", "--workers", "4", "--json"]):
        rr = subprocess.run([BABELSIEVE, *cmd], capture_output=True, text=True, timeout=600)
        assert rr.returncode == 0, (cmd, rr.stderr[-2000:])
        printed.append(rr.stdout + rr.stderr)
    for i, text in enumerate(printed):
        _assert_no_secret(text, f"printed output #{i}")
    assert (out / "README.md").exists() and (out / "report" / "index.html").exists()
    assert _grep_tree(out) > 20
    # The credentials were given (and are shown as redacted, not dropped silently).
    saved = json.loads((out / "_run.json").read_text())["config"]["storage_options"]
    assert saved == {"key": "<redacted>", "secret": "<redacted>", "client_kwargs": {"aws_session_token": "<redacted>"}}
    card = (out / "README.md").read_text()
    assert "## Settings" in card and "secret: <redacted>" in card


def test_config_hash_and_public_dict():
    from babelsieve.pipeline.core.config import PipelineConfig, load_config, redact_secrets

    plain = load_config(None)
    with_creds = load_config(None, sets=[f"storage_options.key={KEY_ID}", f"storage_options.secret={SECRET}",
                                         "storage_options.client_kwargs.endpoint_url=http://127.0.0.1:9000"])
    assert plain.content_hash() == with_creds.content_hash()
    cfg = PipelineConfig.model_validate({
        "storage_options": {"key": KEY_ID, "client_kwargs": {"aws_secret_access_key": SECRET,
                                                             "endpoint_url": f"https://user:{SECRET}@minio:9000"}},
        "engine_options": {"spark_conf": {"spark.hadoop.fs.s3a.secret.key": SECRET, "spark.executor.cores": "2"},
                           "ray_runtime_env": {"env_vars": {"AWS_SESSION_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}}},
        "inputs": {"paths": [f"https://{KEY_ID}:{SECRET}@example.org/a.warc.gz"]},
    })
    pub = cfg.public_dict()
    _assert_no_secret(json.dumps(pub), "public_dict")
    _assert_no_secret(repr(cfg), "repr(config)")
    assert pub["engine_options"]["spark_conf"]["spark.executor.cores"] == "2"
    assert pub["engine_options"]["ray_runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert pub["storage_options"]["client_kwargs"]["endpoint_url"] == "https://<redacted>@minio:9000"
    # non-secret keys that merely contain the words stay readable
    assert redact_secrets({"min_num_tokens": 3, "keys_seen": 1, "signature_version": "s3v4"}) == {
        "min_num_tokens": 3, "keys_seen": 1, "signature_version": "s3v4"}


def test_credentials_from_the_environment_are_applied_and_redacted(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "BABELSIEVE_SECRET_SETS": f"storage_options.key={KEY_ID}\nstorage_options.secret={SECRET}\n"}
    r = subprocess.run([BABELSIEVE, "run", "--input", str(_small_warc(tmp_path)), "--output", str(out),
                        "--no-progress", "--workers", "1", "--only", "extract", "--set", "langid.backend=none"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "_run.json").read_text())["config"]["storage_options"] == {
        "key": "<redacted>", "secret": "<redacted>"}
    _grep_tree(out)


def _submit(*args: str, env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUBMIT), *args], capture_output=True, text=True,
                          env={**os.environ, **env}, **kw)


def test_submit_sh_dry_run_prints_no_secret(tmp_path):
    env = {"BUILD_DIR": str(tmp_path), "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_SESSION_TOKEN": TOKEN, "AWS_REGION": "us-east-1"}
    for mode in ("client", "cluster"):
        r = _submit("--dry-run", "--deploy-mode", mode, "--conf", f"spark.hadoop.fs.s3a.secret.key={SECRET}", "--",
                    "run", "configs/fineweb2.yaml", "--set", f"storage_options.secret={SECRET}",
                    f"--set=storage_options.key={KEY_ID}", "--set", "extract.time_limit_s=5", "--output", "s3://b/o",
                    env=env, cwd=REPO)
        assert r.returncode == 0, r.stderr
        _assert_no_secret(r.stdout + r.stderr, f"submit.sh --dry-run ({mode})")
        cmd = shlex.split(r.stdout.strip().splitlines()[-1])
        assert "--properties-file" in cmd and "spark.executorEnv.AWS_REGION=us-east-1" in cmd
        assert "extract.time_limit_s=5" in cmd  # ordinary overrides stay on the command line
        assert "#   spark.executorEnv.AWS_SECRET_ACCESS_KEY=<redacted>" in r.stdout


def _spark_submit() -> str:
    exe = shutil.which("spark-submit") or str(Path(sys.executable).with_name("spark-submit"))
    if not (Path(exe).exists() and shutil.which("java")):
        pytest.fail("spark-submit (pip package pyspark) and java are needed")
    return exe


@pytest.mark.infra  # a real spark-submit (a JVM)
def test_submit_sh_passes_secrets_by_a_private_file_to_a_real_spark_submit(tmp_path):
    """A real spark-submit on local[1], behind a recorder that saves the argv it is given (what ps
    shows) and the properties file's mode and contents, then runs it unchanged."""
    real = _spark_submit()
    record = tmp_path / "record.json"
    recorder = tmp_path / "spark-submit"
    recorder.write_text(f"""#!{sys.executable}
import json, os, stat, sys
args = sys.argv[1:]
props = args[args.index("--properties-file") + 1] if "--properties-file" in args else None
info = {{"argv": args, "props": None}}
if props:
    info["props"] = {{"path": props, "mode": stat.S_IMODE(os.stat(props).st_mode), "text": open(props).read()}}
json.dump(info, open({str(record)!r}, "w"))
os.execv({real!r}, [{real!r}] + args)
""")
    recorder.chmod(0o755)
    out = tmp_path / "out"
    env = {"SPARK_SUBMIT": str(recorder), "PYTHON": sys.executable, "AWS_SECRET_ACCESS_KEY": SECRET,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = _submit("--ship", "none", "--master", "local[1]", "--", "run", "--input", str(_small_warc(tmp_path)),
                "--output", str(out), "--only", "extract", "--no-progress", "--workers", "1",
                "--set", "langid.backend=none", "--set", f"storage_options.secret={SECRET}", "--engine", "local",
                env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    info = json.loads(record.read_text())
    _assert_no_secret(" ".join(info["argv"]), "spark-submit argv")
    assert info["props"]["mode"] == 0o600
    assert f"spark.executorEnv.AWS_SECRET_ACCESS_KEY={SECRET}" in info["props"]["text"]
    assert not Path(info["props"]["path"]).exists()  # removed when submit.sh exits
    # the driver got the secret --set through the environment (it is in the config, redacted)
    assert json.loads((out / "_run.json").read_text())["config"]["storage_options"] == {"secret": "<redacted>"}
    _grep_tree(out)
    _assert_no_secret(r.stdout + r.stderr, "submit.sh output")


def test_airflow_dag_logs_no_secret_and_passes_it_by_environment(airflow_venv, tmp_path):
    """The DAG's local-engine stage helper under real Airflow 3 (its own venv: the conftest fixture)."""
    venv = airflow_venv
    out = tmp_path / "out"
    script = tmp_path / "stage.py"
    script.write_text(f"""
import importlib.util, io, logging, sys
buf = io.StringIO()
logging.basicConfig(level=logging.INFO, stream=buf, force=True)
spec = importlib.util.spec_from_file_location("babelsieve_dag", {str(DAG_FILE)!r})
dag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dag)
params = {{"snapshot": "CC-MAIN-2024-10", "input": {str(_small_warc(tmp_path))!r}, "output": {str(out)!r},
          "config": "", "engine": "local", "shards": "",
          "sets": ["langid.backend=none", "engine_options.workers=1", "storage_options.key={KEY_ID}",
                   "storage_options.secret={SECRET}"]}}
r = dag.resolve(params)
try:
    dag.run_locally(r, "extract")
finally:
    print(buf.getvalue())
logged = dag.redact_command(["babelsieve", "run", "--set", "storage_options.secret={SECRET}"])
print("REDACTED:", " ".join(logged))
""")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({"BABELSIEVE_BIN": BABELSIEVE, "AIRFLOW_HOME": str(tmp_path / "airflow-home")})
    r = subprocess.run([str(venv / "bin" / "python"), str(script)], capture_output=True, text=True, env=env,
                       timeout=900)
    _assert_no_secret(r.stdout + r.stderr, "the DAG's task log")
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "running: " in r.stdout and "REDACTED: babelsieve run --set storage_options.secret=<redacted>" in r.stdout
    assert json.loads((out / "_run.json").read_text())["config"]["storage_options"] == {
        "key": "<redacted>", "secret": "<redacted>"}
    _grep_tree(out)
