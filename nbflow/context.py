"""Prefect-compatible import path: `from nbflow.context import get_run_context, FlowRunContext, TaskRunContext`."""

from nbflow.engine.context import FlowRunContext, TagsContext, TaskRunContext, get_run_context, tags

__all__ = ["FlowRunContext", "TagsContext", "TaskRunContext", "get_run_context", "tags"]
