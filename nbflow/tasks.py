"""Prefect-compatible import path: `from nbflow.tasks import task, task_input_hash`."""

from nbflow.engine.cache_policies import task_input_hash
from nbflow.engine.retries import exponential_backoff
from nbflow.engine.tasks import Task, task

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]
