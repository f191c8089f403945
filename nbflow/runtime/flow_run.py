"""The flow run executing here (Prefect's `prefect.runtime.flow_run`); attributes read when asked."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from nbflow.engine.context import flow_run_context

ATTRIBUTES = ["id", "name", "flow_name", "parameters", "scheduled_start_time", "tags", "run_count",
           "parent_flow_run_id", "parent_deployment_id", "root_flow_run_id", "deployment_id"]


def _run() -> Any:
    ctx = flow_run_context.get()
    return ctx.flow_run if ctx is not None else None


def _utc(epoch: float | None) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)


def _root_id(ctx: Any) -> str | None:
    while ctx is not None and ctx.parent is not None:
        ctx = ctx.parent
    return ctx.flow_run.id if ctx is not None else None


def __getattr__(name: str) -> Any:
    run = _run()
    if name == "id":
        return run.id if run is not None else os.environ.get("NBFLOW_FLOW_RUN_ID") or None
    if name == "name":
        return run.name if run is not None else None
    if name == "flow_name":
        return run.flow_name if run is not None else os.environ.get("NBFLOW_FLOW_NAME") or None
    if name == "parameters":
        return dict(run.parameters) if run is not None else {}
    if name == "scheduled_start_time":
        return _utc(None if run is None else run.scheduled_time or run.start_time or run.created)
    if name == "tags":
        return list(run.tags) if run is not None else []
    if name == "run_count":
        return run.run_count if run is not None else 0
    if name == "parent_flow_run_id":
        return run.parent_flow_run_id if run is not None else None
    if name in ("deployment_id", "parent_deployment_id"):
        return (run.deployment_id if run is not None else None) or os.environ.get("NBFLOW_DEPLOYMENT_ID") or None
    if name == "root_flow_run_id":
        return _root_id(flow_run_context.get())
    raise AttributeError(f"nbflow.runtime.flow_run has no attribute {name!r}; it has {', '.join(ATTRIBUTES)}.")


def __dir__() -> list[str]:
    return sorted(ATTRIBUTES)
