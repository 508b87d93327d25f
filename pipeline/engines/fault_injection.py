"""The test harness's fault switch, applied by every engine around a task (never by a stage).

``BABELSIEVE_FAULT=stage:task_id[:kill|:transient|:sleep]`` makes that one task fail once, wherever it
runs (a local pool worker, a Ray or Spark executor, a Slurm array task): the resume, retry, interrupt
and exactly-once tests use it to fail a real task in a real engine. Unset, it costs one lookup.
"""

from __future__ import annotations

import os
import time

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.core.tasks import Task


def inject_fault(config: PipelineConfig, task: Task) -> None:
    """Test switch: BABELSIEVE_FAULT=stage:task_id[:kill|:transient|:sleep] makes that task fail once (marker
    file): an error (default), a SIGKILL of its worker, a dropped connection (a transient error), or
    a 60 s pause before it runs normally (a long task, to interrupt)."""
    spec = os.environ.get("BABELSIEVE_FAULT")
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != task.stage or parts[1] != task.task_id:
        return
    marker = RunLayout(config.output).fault_marker(task.stage, task.task_id)
    if storage.exists(marker, config.storage_options):
        return
    storage.publish_bytes(marker, b"1", config.storage_options)
    if len(parts) > 2 and parts[2] == "kill":
        os.kill(os.getpid(), 9)
    if len(parts) > 2 and parts[2] == "sleep":
        time.sleep(60)
        return
    if len(parts) > 2 and parts[2] == "transient":
        raise ConnectionResetError(f"injected transient fault in {task.stage}/{task.task_id}")
    raise RuntimeError(f"injected fault in {task.stage}/{task.task_id}")
