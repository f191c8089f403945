"""Prefect-compatible import path: `from nbflow.futures import wait, as_completed, PrefectFuture, ...`."""

from nbflow.engine.annotations import unmapped
from nbflow.engine.futures import (
    FutureList, PrefectConcurrentFuture, PrefectFuture, PrefectFutureList, PrefectWrappedFuture, TaskRunFuture,
    as_completed, resolve_futures_to_results, resolve_futures_to_states, wait,
)

__all__ = ["FutureList", "PrefectConcurrentFuture", "PrefectFuture", "PrefectFutureList", "PrefectWrappedFuture",
           "TaskRunFuture", "as_completed", "resolve_futures_to_results", "resolve_futures_to_states", "unmapped",
           "wait"]
