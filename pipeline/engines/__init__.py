"""Engines schedule tasks and report progress; they never change what a task writes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.tasks import Task

ResultCallback = Callable[[dict[str, Any]], None]


class Engine(ABC):
    """Runs a list of tasks; returns one result dict per task (status done|cached|failed)."""

    name: str

    def __init__(self, config: PipelineConfig):
        self.config = config

    @abstractmethod
    def run_tasks(self, tasks: list[Task], on_result: ResultCallback) -> list[dict[str, Any]]:
        """Run tasks (in any order, any parallelism); call ``on_result`` as each finishes."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release cluster resources."""


def failed_result(task: Task, error: str) -> dict[str, Any]:
    return {"stage": task.stage, "task_id": task.task_id, "status": "failed", "error": error, "stats": {}, "files": [],
            "inputs": list(task.inputs), "seconds": 0.0}


def get_engine(config: PipelineConfig) -> Engine:
    """The engine named by ``config.engine``."""
    if config.engine == "local":
        from babelsieve.pipeline.engines.local import LocalEngine

        return LocalEngine(config)
    if config.engine == "ray":
        from babelsieve.pipeline.engines.ray_engine import RayEngine  # type: ignore[import-not-found]

        return RayEngine(config)
    if config.engine == "spark":
        from babelsieve.pipeline.engines.spark_engine import SparkEngine  # type: ignore[import-not-found]

        return SparkEngine(config)
    if config.engine == "slurm":
        from babelsieve.pipeline.engines.slurm_engine import SlurmEngine

        return SlurmEngine(config)
    raise ValueError(f"unknown engine {config.engine!r} (local, ray, spark, slurm)")
