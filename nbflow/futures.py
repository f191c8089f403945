"""Prefect-compatible import path: `from nbflow.futures import wait, as_completed`."""

from nbflow.engine.annotations import unmapped
from nbflow.engine.futures import FutureList, TaskRunFuture, as_completed, wait

__all__ = ["FutureList", "TaskRunFuture", "as_completed", "unmapped", "wait"]
