"""Airflow 3 DAG: one run per Common Crawl snapshot through the babelsieve stages.

    list_shards -> extract -> dedup -> filter -> classify -> finalize -> rebalance -> report

Copy this file into the Airflow DAGs folder. It imports nothing from babelsieve: every task runs
``babelsieve`` as a subprocess (local engine), as a Ray job (Ray Jobs REST API of the cluster's
dashboard, the API behind ``ray job submit`` / ``JobSubmissionClient``) or through
``deploy/spark/submit.sh`` (spark-submit). So Airflow and babelsieve can live in different
virtual environments or images; the Airflow worker needs only the settings below.

Every stage task runs ``babelsieve run CONFIG ... --only STAGE``. A task is a list of pipeline
tasks whose manifests prove completion, so an Airflow retry (or a manual "clear") reruns only the
pipeline tasks that did not finish: retries are safe and cheap. A stage not listed in the
config's ``stages`` (or, unless ``strict_stages``, not available in the installed babelsieve) is
skipped with a log message; ``report`` runs ``babelsieve report OUTPUT`` when that command exists.

Worker environment (all optional):

    BABELSIEVE_BIN            babelsieve executable (default: `babelsieve` on PATH)
    BABELSIEVE_PYTHON         Python of that installation, used by list_shards (default: the
                              interpreter in BABELSIEVE_BIN's shebang line)
    BABELSIEVE_SPARK_SUBMIT   the spark-submit wrapper (default: deploy/spark/submit.sh beside
                              this file's repository, else `babelsieve-spark-submit` on PATH)
    BABELSIEVE_CONFIG, BABELSIEVE_OUTPUT, BABELSIEVE_ENGINE, BABELSIEVE_RAY_ADDRESS,
    BABELSIEVE_SPARK_MASTER   defaults of the DAG params of the same name
    RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH   token of a Ray cluster with token authentication
                              (default: ~/.ray/auth_token when present)
    BABELSIEVE_STAGE_TIMEOUT_HOURS   execution timeout of each stage task (default 24)
    BABELSIEVE_RETRIES        retries of each task (default 3)

Credentials: a ``sets`` entry whose key names a secret (``storage_options.key``/``secret``/
``token``, anything with key, secret, token, password, credentials in it) never appears on a
command line or in a task log. It reaches babelsieve through the ``BABELSIEVE_SECRET_SETS``
environment variable (Ray: the job's ``runtime_env.env_vars``; Spark: submit.sh's mode-600
properties file); logged command lines show ``KEY=<redacted>``. Better still, give the workers
their own credentials (instance role, IRSA, their environment).

Trigger one snapshot:

    airflow dags trigger babelsieve_snapshot -c '{"snapshot": "CC-MAIN-2024-10", "shards": "0:1000"}'
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

try:  # Airflow >= 3.1 exposes the task exceptions in the SDK
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.exceptions import AirflowFailException, AirflowSkipException

log = logging.getLogger(__name__)

DAG_ID = "babelsieve_snapshot"
# the pipeline's order; classify (quality classifiers) runs here only between filter and finalize
STAGES = ["extract", "dedup", "filter", "classify", "finalize", "rebalance"]
CC_LISTING = "s3://commoncrawl/crawl-data/{snapshot}/warc.paths.gz"

RETRIES = int(os.environ.get("BABELSIEVE_RETRIES", "3"))
STAGE_TIMEOUT = timedelta(hours=float(os.environ.get("BABELSIEVE_STAGE_TIMEOUT_HOURS", "24")))
# babelsieve run's exit status 2 is a configuration error: retrying cannot fix it.
EXIT_CONFIG_ERROR = 2

SECRET_SETS_ENV = "BABELSIEVE_SECRET_SETS"
REDACTED = "<redacted>"
# The words of babelsieve.pipeline.core.config.is_secret_key (this file imports nothing from babelsieve).
_SECRET_WORDS = re.compile(
    r"secret|passw|credential|private|(^|[^a-z])(key|token|auth|authorization|pwd|apikey)($|[^a-z])")

# list_shards runs this in babelsieve's own Python: load the config exactly as `babelsieve run`
# will (same overrides), expand the inputs, and tell which stages this installation provides.
# Its arguments come on stdin: they hold the sets, credentials included (argv is visible in ps).
_PLAN_CODE = r"""
import json, sys
from babelsieve.pipeline.core.config import load_config
from babelsieve.pipeline.core.inputs import expand_inputs, storage_options_for
from babelsieve.pipeline.core.runner import expand_stages
a = json.loads(sys.stdin.read())
cfg = load_config(a["config"] or None, inputs=[a["input"]], output=a["output"], sets=a["sets"],
                  shards=a["shards"] or None)
paths = cfg.inputs.paths
shards = expand_inputs(paths, cfg.inputs.shards, storage_options_for(paths[0], cfg.storage_options))
available = []
for s in cfg.stages:
    try:
        expand_stages(cfg, [s])
        available.append(s)
    except ValueError:
        pass
print(json.dumps({"shard_count": len(shards), "first_shards": shards[:3], "stages": list(cfg.stages),
                  "available_stages": available, "config_hash": cfg.content_hash(), "output": cfg.output}))
"""


# --------------------------------------------------------------------------------------------
# helpers (plain functions: importable and testable without a DAG run)
# --------------------------------------------------------------------------------------------

def babelsieve_bin() -> str:
    return os.environ.get("BABELSIEVE_BIN") or shutil.which("babelsieve") or "babelsieve"


def babelsieve_python() -> str:
    """The interpreter of the babelsieve installation (BABELSIEVE_PYTHON, else BABELSIEVE_BIN's shebang)."""
    if os.environ.get("BABELSIEVE_PYTHON"):
        return os.environ["BABELSIEVE_PYTHON"]
    exe = shutil.which(babelsieve_bin()) or babelsieve_bin()
    try:
        with open(exe, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        first = ""
    if first.startswith("#!"):
        parts = shlex.split(first[2:])
        if parts and Path(parts[0]).name != "env":
            return parts[0]
        if len(parts) > 1:
            return shutil.which(parts[1]) or parts[1]
    sibling = Path(exe).with_name("python")
    return str(sibling) if sibling.exists() else "python3"


def spark_submit_wrapper() -> str:
    if os.environ.get("BABELSIEVE_SPARK_SUBMIT"):
        return os.environ["BABELSIEVE_SPARK_SUBMIT"]
    here = Path(__file__).resolve().parent.parent / "spark" / "submit.sh"
    return str(here) if here.exists() else "babelsieve-spark-submit"


def resolve(params: dict[str, Any]) -> dict[str, Any]:
    """DAG params -> the concrete arguments shared by every task of one run."""
    snapshot = params["snapshot"]
    inp = (params.get("input") or CC_LISTING).format(snapshot=snapshot)
    output = params["output"].format(snapshot=snapshot)
    sets = [s for s in (params.get("sets") or []) if s]
    # Local copies of listings and plain WARC files carry no snapshot name in their path: give it
    # to the pipeline. Common Crawl paths do (the config hash then equals a manual run's).
    if "CC-MAIN-" not in inp and not any(s.startswith("inputs.dump=") for s in sets):
        sets.append(f"inputs.dump={snapshot}")
    return {"snapshot": snapshot, "config": params.get("config") or "", "input": inp, "output": output,
            "shards": params.get("shards") or "", "sets": sets, "engine": params["engine"]}


def is_secret_set(assignment: str) -> bool:
    """Does a ``KEY=VALUE`` override carry a credential? (any part of KEY names one, or KEY is in storage_options)"""
    key = assignment.split("=", 1)[0].strip()
    if key.startswith("storage_options"):
        return True
    for part in key.split("."):
        if _SECRET_WORDS.search(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", part).lower()):
            return True
    return False


def secret_env(r: dict[str, Any]) -> dict[str, str]:
    """The environment entry that carries the run's secret sets to babelsieve (empty when none)."""
    secret = [s for s in r["sets"] if is_secret_set(s)]
    return {SECRET_SETS_ENV: "\n".join(secret)} if secret else {}


def redact_command(cmd: list[str]) -> list[str]:
    """``cmd`` with the values of secret ``--set KEY=VALUE`` arguments replaced, for logging."""
    out: list[str] = []
    for i, a in enumerate(cmd):
        prev = cmd[i - 1] if i else ""
        if prev == "--set" and is_secret_set(a):
            a = a.split("=", 1)[0] + "=" + REDACTED
        elif a.startswith("--set=") and is_secret_set(a[6:]):
            a = "--set=" + a[6:].split("=", 1)[0] + "=" + REDACTED
        out.append(a)
    return out


def run_args(r: dict[str, Any], stage: str, engine: str) -> list[str]:
    """`babelsieve run ...` arguments (without the executable) for one stage; secret sets are left
    out (they travel in :func:`secret_env`)."""
    args = ["run"] + ([r["config"]] if r["config"] else [])
    args += ["--input", r["input"], "--output", r["output"], "--engine", engine, "--only", stage, "--no-progress"]
    if r["shards"]:
        args += ["--shards", r["shards"]]
    for s in r["sets"]:
        if not is_secret_set(s):
            args += ["--set", s]
    return args


def stream_subprocess(cmd: list[str], env: dict[str, str] | None = None, grace_s: float = 30.0) -> int:
    """Run ``cmd``, copy its output to the task log line by line, return its exit status.

    ``env`` entries are added to this process's environment (credentials go there, never in ``cmd``;
    the logged command line is redacted all the same).

    On any exception in the Airflow task (execution timeout, task killed) the child's whole
    process group is terminated, so no orphan keeps writing into the output.
    """
    log.info("running: %s", shlex.join(redact_command(cmd)))
    full_env = {**os.environ, **env} if env else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=full_env, start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("%s", line.rstrip())
        return proc.wait()
    finally:
        if proc.poll() is None:
            log.warning("stopping %s (pid %d)", cmd[0], proc.pid)
            _kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def check_exit(status: int, what: str) -> None:
    if status == 0:
        return
    if status == EXIT_CONFIG_ERROR:
        raise AirflowFailException(f"{what}: configuration error (exit 2); not retrying")
    raise RuntimeError(f"{what} exited with status {status}; a retry reruns only the unfinished pipeline tasks")


class RayJobs:
    """The Ray Jobs REST API of a cluster's dashboard (what `ray job submit` and JobSubmissionClient call).

    No Ray installation is needed on the Airflow worker. Clusters with token authentication
    (the default of recent Ray) get ``Authorization: Bearer <token>``, the token read as Ray's
    own clients read it: $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token.
    """

    TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

    def __init__(self, address: str, timeout_s: float = 30.0, token: str | None = None):
        self.address = address.rstrip("/")
        if "://" not in self.address:
            self.address = "http://" + self.address
        self.timeout_s = timeout_s
        self.token = token if token is not None else ray_auth_token()
        self.submit_wait_s = 180.0

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.address + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise RuntimeError(f"Ray jobs API {method} {path}: HTTP {e.code} "
                               f"{e.read().decode(errors='replace')}") from e
        return json.loads(text) if text else {}

    def status(self, submission_id: str) -> dict[str, Any] | None:
        return self._call("GET", f"/api/jobs/{submission_id}")

    def submit(self, submission_id: str, entrypoint: str, runtime_env: dict[str, Any] | None = None,
               metadata: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"entrypoint": entrypoint, "submission_id": submission_id,
                                "metadata": metadata or {}}
        if runtime_env:
            body["runtime_env"] = runtime_env
        # A cluster that has just started answers 5xx ("No available agent to submit job") for a
        # while: retry, checking first that an earlier try did not get through.
        deadline = time.monotonic() + self.submit_wait_s
        while True:
            try:
                self._call("POST", "/api/jobs/", body)
                return
            except (RuntimeError, urllib.error.URLError, OSError) as e:
                if self.status(submission_id) is not None:
                    return
                transient = isinstance(e, (urllib.error.URLError, OSError)) or " HTTP 5" in str(e)
                if not transient or time.monotonic() > deadline:
                    raise
                log.warning("Ray jobs API not ready (%s); retrying", str(e).splitlines()[0][:200])
                time.sleep(3)

    def logs(self, submission_id: str) -> str:
        out = self._call("GET", f"/api/jobs/{submission_id}/logs")
        return (out or {}).get("logs", "")

    def stop(self, submission_id: str) -> None:
        self._call("POST", f"/api/jobs/{submission_id}/stop")

    def wait(self, submission_id: str, poll_s: float = 10.0) -> dict[str, Any]:
        """Wait for a terminal state, copying new log lines to the task log; stop the job if interrupted."""
        shown = 0
        try:
            while True:
                st = self.status(submission_id) or {}
                text = self.logs(submission_id)
                for line in text[shown:].splitlines():
                    log.info("[ray %s] %s", submission_id, line)
                shown = len(text)
                if st.get("status") in self.TERMINAL:
                    return st
                time.sleep(poll_s)
        except BaseException:
            st = self.status(submission_id) or {}
            if st.get("status") not in self.TERMINAL:
                log.warning("stopping Ray job %s", submission_id)
                self.stop(submission_id)
            raise


def ray_auth_token() -> str | None:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    for p in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if p and Path(p).is_file():
            return Path(p).read_text().strip() or None
    return None


def ray_submission_id(run_id: str, stage: str, try_number: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")[:80]
    return f"babelsieve-{safe}-{stage}-{try_number}"


def run_on_ray(r: dict[str, Any], stage: str, address: str, run_id: str, try_number: int,
               poll_s: float = 10.0, engine: str = "ray") -> None:
    """Submit `babelsieve run ... --engine ray --only STAGE` as a Ray job and wait for it.

    An earlier attempt's job that is still running (the Airflow worker died, not the job) is
    waited for instead of starting a second one beside it.
    """
    jobs = RayJobs(address)
    for earlier in range(1, try_number):
        sid = ray_submission_id(run_id, stage, earlier)
        st = jobs.status(sid)
        if st and st.get("status") in ("PENDING", "RUNNING"):
            log.info("attaching to the still-running Ray job %s of attempt %d", sid, earlier)
            st = jobs.wait(sid, poll_s)
            if st.get("status") == "SUCCEEDED":
                return
    sid = ray_submission_id(run_id, stage, try_number)
    if jobs.status(sid) is None:
        entrypoint = shlex.join(["babelsieve"] + run_args(r, stage, engine))
        log.info("submitting Ray job %s to %s: %s", sid, jobs.address, entrypoint)
        env = secret_env(r)
        jobs.submit(sid, entrypoint, runtime_env={"env_vars": env} if env else None,
                    metadata={"dag_run": run_id, "stage": stage, "snapshot": r["snapshot"]})
    st = jobs.wait(sid, poll_s)
    if st.get("status") != "SUCCEEDED":
        raise RuntimeError(f"Ray job {sid} ended {st.get('status')}: {st.get('message', '')}; "
                           "a retry reruns only the unfinished pipeline tasks")


def run_report_on_ray(r: dict[str, Any], address: str, run_id: str, try_number: int, poll_s: float = 10.0) -> None:
    out = shlex.quote(r["output"])
    entrypoint = (f"if babelsieve report --help >/dev/null 2>&1; then babelsieve report {out}; "
                  "else echo 'babelsieve report is not available in this installation: report skipped'; fi")
    jobs = RayJobs(address)
    sid = ray_submission_id(run_id, "report", try_number)
    if jobs.status(sid) is None:
        jobs.submit(sid, entrypoint, metadata={"dag_run": run_id, "stage": "report", "snapshot": r["snapshot"]})
    st = jobs.wait(sid, poll_s)
    if st.get("status") != "SUCCEEDED":
        raise RuntimeError(f"Ray job {sid} ended {st.get('status')}: {st.get('message', '')}")


def run_on_spark(r: dict[str, Any], stage: str, master: str, engine: str = "spark") -> None:
    cmd = [spark_submit_wrapper()] + (["--master", master] if master else []) + ["--"] + run_args(r, stage, engine)
    check_exit(stream_subprocess(cmd, env=secret_env(r)), f"spark-submit of stage {stage}")


def run_on_slurm(r: dict[str, Any], stage: str) -> None:
    """`babelsieve run --engine slurm --only STAGE` on this worker (a Slurm submit host): the driver
    submits the stage's job arrays and waits; killing the Airflow task cancels them."""
    cmd = [babelsieve_bin()] + run_args(r, stage, "slurm") + ["--cancel-on-interrupt"]
    check_exit(stream_subprocess(cmd), f"babelsieve run --engine slurm --only {stage}")


def run_locally(r: dict[str, Any], stage: str) -> None:
    check_exit(stream_subprocess([babelsieve_bin()] + run_args(r, stage, "local"), env=secret_env(r)),
               f"babelsieve run --only {stage}")


def stage_decision(plan: dict[str, Any], stage: str, strict: bool) -> str | None:
    """Why ``stage`` is skipped (None = run it)."""
    if stage not in plan["stages"]:
        return f"stage {stage!r} is not in the config's stages {plan['stages']}: skipped"
    if stage not in plan["available_stages"]:
        msg = f"stage {stage!r} is configured but not available in the installed babelsieve"
        if strict:
            raise AirflowFailException(msg + " (strict_stages is set)")
        return msg + ": skipped (set strict_stages to fail instead)"
    return None


# --------------------------------------------------------------------------------------------
# the DAG
# --------------------------------------------------------------------------------------------

@dag(
    dag_id=DAG_ID,
    schedule=None,  # one run per snapshot, triggered with {"snapshot": ...}
    catchup=False,
    max_active_runs=1,  # dedup is global per language: snapshots are processed one at a time
    tags=["babelsieve", "common-crawl"],
    doc_md=__doc__,
    default_args={
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
        "execution_timeout": STAGE_TIMEOUT,
    },
    params={
        "snapshot": Param("CC-MAIN-2024-10", type="string", pattern=r"^CC-MAIN-\d{4}-\d{2}$",
                          description="Common Crawl snapshot"),
        "input": Param("", type="string",
                       description="Input override (listing, WARC file or glob; '{snapshot}' is substituted). "
                                   "Empty: " + CC_LISTING),
        "config": Param(os.environ.get("BABELSIEVE_CONFIG", "/configs/fineweb2.yaml"), type="string",
                        description="Config path, readable by the Airflow worker and by the engine's driver "
                                    "(empty: the bundled dry-run config)"),
        "engine": Param(os.environ.get("BABELSIEVE_ENGINE", "ray"), enum=["local", "ray", "spark", "slurm"]),
        "output": Param(os.environ.get("BABELSIEVE_OUTPUT", "s3://my-bucket/babelsieve/{snapshot}"), type="string",
                        description="Output URL; '{snapshot}' is substituted"),
        "shards": Param("", type="string", pattern=r"^(|-?\d*:-?\d*)$",
                        description="Shard range START:STOP (empty: all)"),
        "sets": Param([], type="array", items={"type": "string"},
                      description="Config overrides, each KEY=VALUE as for `babelsieve run --set`"),
        "ray_address": Param(os.environ.get("BABELSIEVE_RAY_ADDRESS", "http://ray-head:8265"), type="string",
                             description="Ray dashboard (jobs API) address"),
        "spark_master": Param(os.environ.get("BABELSIEVE_SPARK_MASTER", ""), type="string",
                              description="Spark master URL (empty: submit.sh's default)"),
        "strict_stages": Param(False, type="boolean",
                               description="Fail (instead of skip) a configured stage the installation lacks"),
    },
)
def babelsieve_snapshot():
    @task(execution_timeout=timedelta(minutes=30))
    def list_shards() -> dict[str, Any]:
        """Expand the snapshot's warc.paths.gz (and the shard range); push the shard count."""
        ctx = get_current_context()
        r = resolve(ctx["params"])
        arg = json.dumps({k: r[k] for k in ("config", "input", "output", "sets", "shards")})
        py = babelsieve_python()
        log.info("expanding %s with %s", r["input"], py)
        proc = subprocess.run([py, "-c", _PLAN_CODE], input=arg, capture_output=True, text=True)
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            raise AirflowFailException(f"cannot plan the run: {err[-1] if err else proc.returncode}\n{proc.stderr}")
        plan = json.loads(proc.stdout.strip().splitlines()[-1])
        if plan["shard_count"] == 0:
            raise AirflowFailException(f"no input shards in {r['input']} (shards {r['shards'] or 'all'})")
        log.info("%d shard(s), e.g. %s; stages %s (available: %s); config hash %s", plan["shard_count"],
                 plan["first_shards"], plan["stages"], plan["available_stages"], plan["config_hash"])
        ctx["ti"].xcom_push(key="shard_count", value=plan["shard_count"])
        return plan

    def stage_task(stage: str):
        @task(task_id=stage, trigger_rule="none_failed")
        def run_stage(plan: dict[str, Any]) -> str:
            ctx = get_current_context()
            params = ctx["params"]
            why = stage_decision(plan, stage, bool(params.get("strict_stages")))
            if why:
                log.info(why)
                raise AirflowSkipException(why)
            r = resolve(params)
            engine = r["engine"]
            log.info("stage %s of %s on %s: %d shard(s) -> %s", stage, r["snapshot"], engine, plan["shard_count"],
                     r["output"])
            if engine == "ray":
                ti = ctx["ti"]
                run_on_ray(r, stage, params["ray_address"], ctx["run_id"], int(ti.try_number))
            elif engine == "spark":
                run_on_spark(r, stage, params["spark_master"])
            elif engine == "slurm":
                run_on_slurm(r, stage)
            else:
                run_locally(r, stage)
            return r["output"]

        return run_stage

    @task(trigger_rule="none_failed", execution_timeout=timedelta(hours=2))
    def report(plan: dict[str, Any]) -> str | None:
        """`babelsieve report OUTPUT` when the installed babelsieve has that command."""
        ctx = get_current_context()
        r = resolve(ctx["params"])
        if r["engine"] == "ray":  # the output may be reachable only from the cluster: report there
            run_report_on_ray(r, ctx["params"]["ray_address"], ctx["run_id"], int(ctx["ti"].try_number))
            return r["output"]
        exe = babelsieve_bin()
        probe = subprocess.run([exe, "report", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            msg = "`babelsieve report` is not available in this installation: report skipped"
            log.info(msg)
            raise AirflowSkipException(msg)
        check_exit(stream_subprocess([exe, "report", r["output"]]), "babelsieve report")
        return r["output"]

    plan = list_shards()
    previous = plan
    for stage in STAGES:
        t = stage_task(stage)(plan)
        if previous is not plan:
            previous >> t
        previous = t
    previous >> report(plan)


babelsieve_snapshot()
