"""Prefect's annotations (allow_failure, quote, opaque, unmapped), tags(), run contexts and nbflow.runtime."""

from __future__ import annotations

import pytest

from nbflow import allow_failure, flow, get_run_context, tags, task, unmapped
from nbflow.engine.context import FlowRunContext, TaskRunContext
from nbflow.futures import TaskRunFuture
from nbflow.runtime import flow_run as rt_flow_run
from nbflow.runtime import task_run as rt_task_run
from nbflow.utilities.annotations import opaque, quote


@task
def boom() -> int:
    raise ValueError("upstream broke")


@task
def double(x: int) -> int:
    return 2 * x


@task
def describe(value: object) -> str:
    return type(value).__name__


def test_allow_failure_runs_the_downstream_with_the_upstream_exception():
    @flow
    def tolerant() -> tuple:
        failed = boom.submit()
        passed = describe.submit(allow_failure(failed))
        blocked = describe.submit(failed)
        return passed.result(), blocked.state.is_completed()

    assert tolerant() == ("ValueError", False)


def test_allow_failure_in_wait_for_and_in_map():
    @flow
    def tolerant() -> tuple:
        failed = boom.submit()
        after = double.submit(2, wait_for=[allow_failure(failed)])
        mapped = describe.map(allow_failure([failed, failed]))
        return after.result(), mapped.result()

    assert tolerant() == (4, ["ValueError", "ValueError"])


def test_quote_passes_a_future_as_is_and_opaque_resolves_only_the_top():
    @flow
    def annotated() -> tuple:
        first = double.submit(1)
        quoted = describe.submit(quote(first)).result()
        opaque_top = double.submit(opaque(first)).result()
        opaque_inner = describe.submit(opaque({"inner": first})).result()
        return quoted, opaque_top, opaque_inner

    assert annotated() == ("TaskRunFuture", 4, "dict")


def test_annotations_unwrap_compare_and_show():
    assert unmapped(3).unwrap() == 3 and unmapped(3)[7] == 3 and unmapped(3).value == 3
    assert allow_failure(1) == allow_failure(1) and allow_failure(1) != quote(1)
    assert repr(quote([1])) == "quote([1])" and quote(2).unquote() == 2
    assert isinstance(TaskRunFuture, type)


def test_tags_apply_to_runs_created_inside_the_block():
    @task(tags=["own"])
    def tagged() -> list:
        return sorted(rt_task_run.tags)

    @flow
    def outer() -> tuple:
        with tags("a"):
            with tags("b") as current:
                inside = tagged()
            assert {"a", "b"} <= current  # with the tags of a block around the flow call
        return inside, tagged(), sorted(rt_flow_run.tags)

    with tags("flow-tag"):
        result = outer()
    assert result == (["a", "b", "flow-tag", "own"], ["flow-tag", "own"], ["flow-tag"])
    assert outer()[1] == ["own"]
    with pytest.raises(TypeError):
        with tags(1):  # type: ignore[arg-type]
            pass


def test_run_contexts_and_runtime_inside_and_outside_runs():
    assert FlowRunContext.get() is None and TaskRunContext.get() is None
    assert rt_flow_run.id is None and rt_flow_run.parameters == {} and rt_task_run.id is None
    assert rt_task_run.parameters == {} and rt_flow_run.tags == []

    @task
    def inspect_task(x: int, y: int = 5) -> dict:
        ctx = TaskRunContext.get()
        return {"id": rt_task_run.id, "same": ctx is get_run_context() and ctx.task_run.id == rt_task_run.id,
                "name": rt_task_run.task_name, "parameters": rt_task_run.parameters,
                "flow_run_id": rt_flow_run.id, "run_count": rt_task_run.run_count}

    @flow
    def inspect_flow(n: int = 1) -> dict:
        ctx = FlowRunContext.get()
        seen = inspect_task(n)
        return {"flow_id": ctx.flow_run.id, "runtime_id": rt_flow_run.id, "params": rt_flow_run.parameters,
                "flow_name": rt_flow_run.flow_name, "task": seen, "ctx": get_run_context() is ctx}

    out = inspect_flow(3)
    assert out["flow_id"] == out["runtime_id"] == out["task"]["flow_run_id"]
    assert out["params"] == {"n": 3} and out["flow_name"] == "inspect-flow" and out["ctx"]
    assert out["task"]["same"] and out["task"]["name"] == "inspect_task"
    assert out["task"]["parameters"] == {"x": 3, "y": 5} and out["task"]["run_count"] == 1
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        rt_flow_run.nope  # noqa: B018
