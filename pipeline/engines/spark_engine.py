"""Spark engine: one Spark task per pipeline task (``parallelize(tasks, len(tasks)).map(...)``).

Where it runs (first that applies):

* ``engine_options.spark_master`` or ``SPARK_MASTER`` (``spark://host:7077``, ``yarn``,
  ``k8s://...``, ``local[4]``);
* under ``spark-submit``: the master and settings spark-submit was given;
* otherwise ``local[W,F]``: W = ``engine_options.workers`` (default all cores) threads and
  F = ``max_retries + 1`` attempts per task (a plain ``local[W]`` never retries a task).

A SparkContext that already exists in the process (spark-submit, a notebook, a test fixture) is
used and left running; one the engine created is stopped by ``close()``.

Failures:

* a stage error from bad input is caught inside the map and returned as a ``failed`` result, so
  one bad shard never fails the Spark job;
* transient errors (throttling, dropped connections) are retried in place with backoff, up to
  ``max_retries`` times;
* a Python worker that dies (SIGKILL, OOM killer) fails the Spark task, which Spark re-runs
  (``spark.task.maxFailures``). If it dies on every attempt Spark aborts the job: the engine then
  marks that task failed and re-submits the rest (completed ones are skipped by their manifests).

Progress: each task sends its result to a small TCP listener on the driver (authenticated by a
random token) as soon as it finishes, so ``on_result`` is called live; the results collected at
the end of the job are authoritative and fill in anything the listener missed (e.g. a firewall
between executors and driver). ``toLocalIterator`` is deliberately not used: it runs one
partition at a time.

Executors must be able to ``import babelsieve``: the driver's interpreter is used for the Python
workers (``PYSPARK_PYTHON``, default ``sys.executable``) which works locally and in an image that
has babelsieve installed at the same path; otherwise ship a packed virtualenv
(``spark.archives=venv.tar.gz#environment`` with ``PYSPARK_PYTHON=./environment/bin/python``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import socket
import socketserver
import sys
import threading
from functools import partial
from typing import Any

from babelsieve.pipeline.core.tasks import Task, TaskFailedError
from babelsieve.pipeline.engines import Engine, ResultCallback, failed_result
from babelsieve.pipeline.engines.worker import TransientTaskError, forwarded_env, run_with_retries

_FAILED_TASK_RE = re.compile(r"Task (\d+) in stage [\d.]+ failed (\d+) times")


# --------------------------------------------------------------------------------------------
# Executor side (module-level functions: pickled by reference, imported by the Python worker)
# --------------------------------------------------------------------------------------------
def _report(address: tuple[str, int] | None, token: str, result: dict[str, Any]) -> None:
    if not address:
        return
    try:
        with socket.create_connection(address, timeout=5) as s:
            s.sendall(token.encode() + b"\n" + json.dumps(result, default=str).encode() + b"\n")
    except (OSError, TypeError, ValueError):
        pass  # progress only; the collected result is authoritative


def spark_task(task_dict: dict[str, Any], config_json: str, env: dict[str, str], max_retries: int,
               address: tuple[str, int] | None, token: str, backoff_s: float = 2.0) -> dict[str, Any]:
    """The function Spark maps over the tasks. Never raises for a stage error."""
    task = Task.from_dict(task_dict)
    try:
        res = run_with_retries(task_dict, config_json, max_retries, env, backoff_s)
    except TransientTaskError as e:
        res = failed_result(task, f"{e} (transient error on {max_retries + 1} attempts)")
    except TaskFailedError as e:
        res = failed_result(task, str(e))
    except Exception as e:  # noqa: BLE001 - e.g. a config mismatch: this task only
        res = failed_result(task, f"{type(e).__name__}: {e}")
    res.setdefault("inputs", list(task.inputs))
    _report(address, token, res)
    return res


# --------------------------------------------------------------------------------------------
# Driver side
# --------------------------------------------------------------------------------------------
class _ResultListener:
    """Receives results pushed by tasks; puts them on a queue for the driver's main thread."""

    def __init__(self, host: str):
        self.token = secrets.token_hex(16)
        self.results: queue.Queue[dict[str, Any]] = queue.Queue()
        listener = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:  # noqa: D401
                try:
                    if self.rfile.readline().strip().decode() != listener.token:
                        return
                    listener.results.put(json.loads(self.rfile.readline()))
                except (OSError, ValueError):
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, 0), Handler)
        self.address = (host, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="babelsieve-spark-results",
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _is_local(master: str) -> bool:
    return master.startswith("local")


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, config):  # type: ignore[no-untyped-def]
        super().__init__(config)
        self._sc: Any = None
        self._owned = False

    # -- context ------------------------------------------------------------------------
    def _context(self) -> Any:
        if self._sc is not None:
            return self._sc
        try:
            from pyspark import SparkConf, SparkContext
        except ImportError:  # pragma: no cover - depends on the installation
            raise RuntimeError("the spark engine needs PySpark: pip install 'babelsieve[spark]'") from None
        active = SparkContext._active_spark_context
        if active is not None:
            self._sc = active
            return active
        eo = self.config.engine_options
        if os.environ.get("PYSPARK_GATEWAY_PORT"):
            # Launched by spark-submit: its JVM is running and holds --master/--conf as defaults.
            SparkContext._ensure_initialized()
        conf = SparkConf()  # JVM-backed (spark-submit's settings) or a plain dict passed to the JVM launch
        master = eo.spark_master or os.environ.get("SPARK_MASTER")
        if master:
            conf.setMaster(master)
        elif not conf.contains("spark.master"):
            conf.setMaster(f"local[{eo.workers or '*'},{eo.max_retries + 1}]")
        master = conf.get("spark.master")
        conf.setIfMissing("spark.app.name", "babelsieve")
        conf.setIfMissing("spark.ui.enabled", "false")
        conf.setIfMissing("spark.ui.showConsoleProgress", "false")
        conf.setIfMissing("spark.sql.shuffle.partitions", "8")
        conf.setIfMissing("spark.task.maxFailures", str(eo.max_retries + 1))
        conf.setIfMissing("spark.python.worker.reuse", "true")
        if eo.cpus_per_task > 1:
            conf.setIfMissing("spark.task.cpus", str(int(round(eo.cpus_per_task))))
        if _is_local(master):
            # One JVM that only schedules Python work: favour start-up time over JIT peak speed.
            conf.setIfMissing("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")
            conf.setIfMissing("spark.driver.host", "127.0.0.1")
            conf.setIfMissing("spark.driver.bindAddress", "127.0.0.1")
        for k, v in eo.spark_conf.items():
            conf.set(k, str(v))
        if not (os.environ.get("PYSPARK_PYTHON") or conf.contains("spark.pyspark.python")):
            os.environ["PYSPARK_PYTHON"] = sys.executable  # workers in this virtualenv
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        self._sc = SparkContext.getOrCreate(conf)
        self._sc.setLogLevel("WARN")
        self._owned = True
        return self._sc

    def _listener_host(self, sc: Any) -> str:
        if _is_local(sc.master):
            return "127.0.0.1"
        return sc.getConf().get("spark.driver.host", None) or socket.gethostbyname(socket.gethostname())

    # -- scheduling ---------------------------------------------------------------------
    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        if not tasks:
            return []
        sc = self._context()
        eo = self.config.engine_options
        try:
            listener: _ResultListener | None = _ResultListener(self._listener_host(sc))
        except OSError:
            listener = None  # no live progress; results still arrive with the job
        results: dict[str, dict[str, Any]] = {}
        reported: dict[str, dict[str, Any]] = {}  # task_id -> the result on_result was given

        def deliver(res: dict[str, Any]) -> None:
            tid = res.get("task_id")
            if tid in reported or tid not in by_id:
                return
            reported[tid] = res
            on_result(res)

        by_id = {t.task_id: t for t in tasks}
        remaining = list(tasks)
        group = f"babelsieve-{tasks[0].stage}-{secrets.token_hex(4)}"
        try:
            while remaining:
                fn = partial(spark_task, config_json=self.config.model_dump_json(), env=forwarded_env(),
                             max_retries=eo.max_retries, address=listener.address if listener else None,
                             token=listener.token if listener else "")
                rdd = sc.parallelize([t.to_dict() for t in remaining], numSlices=len(remaining)).map(fn)
                box: dict[str, Any] = {}

                def collect(rdd: Any = rdd, box: dict[str, Any] = box, n_tasks: int = len(remaining)) -> None:
                    try:
                        sc.setJobGroup(group, f"babelsieve {tasks[0].stage}: {n_tasks} tasks",
                                       interruptOnCancel=True)
                        box["results"] = rdd.collect()
                    except BaseException as e:  # noqa: BLE001 - handed to the main thread
                        box["error"] = e

                job = threading.Thread(target=collect, name="babelsieve-spark-job", daemon=True)
                job.start()
                try:
                    while job.is_alive():
                        job.join(timeout=0.2)
                        while listener and not listener.results.empty():
                            deliver(listener.results.get_nowait())
                except KeyboardInterrupt:
                    sc.cancelJobGroup(group)
                    raise
                while listener and not listener.results.empty():
                    deliver(listener.results.get_nowait())
                if "results" in box:
                    for res in box["results"]:
                        results[res["task_id"]] = res
                        deliver(res)
                    remaining = []
                    break
                # The job was aborted: a task's worker died on every attempt (or the cluster failed).
                err = str(box.get("error"))
                m = _FAILED_TASK_RE.search(err)
                partition = int(m.group(1)) if m else None
                if partition is None or partition >= len(remaining):
                    for t in remaining:
                        res = failed_result(t, f"Spark job failed: {_first_line(err)}")
                        results[t.task_id] = res
                        deliver(res)
                    remaining = []
                    break
                dead = remaining[partition]
                res = failed_result(dead, f"Python worker died on every attempt ({m.group(2) if m else '?'}): "
                                          f"{_first_line(err)}")
                results[dead.task_id] = res
                deliver(res)
                # Tasks that finished before the abort have manifests and come back as cached.
                remaining = [t for t in remaining if t.task_id != dead.task_id]
        finally:
            if listener:
                listener.close()
        # A task that finished before an aborted job was re-run as "cached": report its real run.
        return [reported.get(t.task_id, results[t.task_id]) if results[t.task_id]["status"] == "cached"
                else results[t.task_id] for t in tasks]

    def close(self) -> None:
        if self._sc is not None and self._owned:
            self._sc.stop()
        self._sc = None
        self._owned = False


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if "failed" in line or "Error" in line:
            return line.strip()[:500]
    return text.strip().splitlines()[0][:500] if text.strip() else ""
