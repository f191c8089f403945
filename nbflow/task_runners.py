"""Prefect-compatible import path: `from nbflow.task_runners import ThreadPoolTaskRunner`."""

from nbflow.engine.dask_runner import DaskTaskRunner
from nbflow.engine.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

__all__ = ["DaskTaskRunner", "ProcessPoolTaskRunner", "TaskRunner", "ThreadPoolTaskRunner"]
