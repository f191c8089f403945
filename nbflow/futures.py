"""Prefect-compatible import path: `from nbflow.futures import wait, as_completed`."""

from nbflow.engine.futures import FutureList, TaskRunFuture, as_completed, unmapped, wait

__all__ = ["FutureList", "TaskRunFuture", "as_completed", "unmapped", "wait"]
