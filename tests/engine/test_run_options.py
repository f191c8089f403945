"""Options Prefect users rely on: hook decorators, flow_run_name, reserved names, timeout_seconds=0."""

from __future__ import annotations

import logging

import pytest

import nbflow
from nbflow import flow, task
from nbflow.errors import ReservedArgumentError, TaskDefinitionError
from nbflow.runtime import flow_run as rt_flow_run


def test_hooks_in_decorator_form_run_with_the_state():
    seen: list[str] = []

    @task
    def fails() -> None:
        raise ValueError("no")

    @fails.on_failure
    def task_failed(tsk, run, state) -> None:
        seen.append(f"task {state.name}")

    @flow
    def hooked(ok: bool) -> None:
        if not ok:
            fails()

    @hooked.on_completion
    def done(flw, run, state) -> None:
        seen.append(f"flow {state.name}")

    @hooked.on_failure
    def failed(flw, run, state) -> None:
        seen.append(f"flow {state.name}")

    assert task_failed.__name__ == "task_failed"  # the decorator hands the function back
    hooked(True)
    assert hooked(False, return_state=True).is_failed()
    assert seen == ["flow Completed", "task Failed", "flow Failed"]
    with pytest.raises(TaskDefinitionError):
        hooked.on_failure("not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize("reserved", ["wait_for", "return_state"])
def test_reserved_parameter_names_are_refused(reserved):
    namespace: dict = {}
    exec(f"def fn({reserved}=None):\n    return 1", namespace)
    with pytest.raises(ReservedArgumentError, match=f"'{reserved}' is a reserved argument name"):
        task(namespace["fn"])
    with pytest.raises(TypeError):
        flow(namespace["fn"])


def test_flow_run_name_from_a_template_or_a_function(caplog):
    @flow(flow_run_name="report-{region}-{n}")
    def report(region: str, n: int = 2) -> str:
        return rt_flow_run.name

    def named(parameters: dict) -> str:
        return f"by-function-{parameters['region']}"

    with caplog.at_level(logging.INFO, logger="nbflow"):
        assert report("north") == "report-north-2"
    assert "Beginning flow run 'report-north-2' for flow 'report'" in caplog.text
    assert report.with_options(flow_run_name=named)("south") == "by-function-south"
    assert report.with_options(flow_run_name=lambda: "plain")("x") == "plain"
    nbflow.flush()
    assert {"report-north-2", "by-function-south", "plain"} <= set(nbflow.runs(flow_name="report")["name"])

    with pytest.raises(TaskDefinitionError, match=r"names \{missing\}"):
        report.with_options(flow_run_name="x-{missing}")("north")
    with pytest.raises(TypeError, match="returned type int but a string is required"):
        report.with_options(flow_run_name=lambda: 3)("north")
    with pytest.raises(TaskDefinitionError, match="Expected string or callable for 'flow_run_name'; got int instead"):
        flow(flow_run_name=3)(lambda: None)


def test_timeout_seconds_zero_means_no_limit_and_negative_is_refused():
    assert task(timeout_seconds=0)(lambda: 1).timeout_seconds is None
    assert flow(timeout_seconds=0)(lambda: 1).timeout_seconds is None
    with pytest.raises(TaskDefinitionError, match=">= 0"):
        task(timeout_seconds=-1)(lambda: 1)
