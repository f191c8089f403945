"""The task run executing here (Prefect's `prefect.runtime.task_run`); attributes read when asked."""

from __future__ import annotations

from typing import Any

from nbflow.engine.context import task_run_context

ATTRIBUTES = ["id", "name", "task_name", "parameters", "run_count", "tags"]


def __getattr__(name: str) -> Any:
    ctx = task_run_context.get()
    run = ctx.task_run if ctx is not None else None
    if name == "id":
        return run.id if run is not None else None
    if name == "name":
        return getattr(run, "name", None) or (run.task_name if run is not None else None)
    if name == "task_name":
        return run.task_name if run is not None else None
    if name == "parameters":
        if ctx is None:
            return {}
        return dict(ctx.parameters) if ctx.parameters else {}
    if name == "run_count":
        return run.run_count if run is not None else 0
    if name == "tags":
        return list(run.tags) if run is not None else []
    raise AttributeError(f"nbflow.runtime.task_run has no attribute {name!r}; it has {', '.join(ATTRIBUTES)}.")


def __dir__() -> list[str]:
    return sorted(ATTRIBUTES)
