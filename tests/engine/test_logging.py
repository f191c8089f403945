"""Run loggers and log_prints: lines are stored per run and readable from Python."""

from __future__ import annotations

import builtins

import pytest

import nbflow
from nbflow import flow, get_run_logger, task
from nbflow.errors import NbflowError


def test_run_logger_lines_are_stored_with_their_flow_and_task_runs() -> None:
    @task
    def extract() -> int:
        get_run_logger().info("extracted %d rows", 3)
        return 3

    @flow
    def logged() -> int:
        get_run_logger().warning("starting")
        return extract()

    logged()
    run_id = nbflow.runs().iloc[0]["id"]
    lines = nbflow.logs(run_id)
    messages = lines["message"].tolist()
    assert "starting" in messages and "extracted 3 rows" in messages
    task_line = lines[lines["message"] == "extracted 3 rows"].iloc[0]
    assert task_line["level_name"] == "INFO"
    task_id = nbflow.task_runs(run_id).iloc[0]["id"]
    assert task_line["task_run_id"] == task_id
    assert nbflow.logs(task_id)["message"].tolist() == ["extracted 3 rows", "Finished in state Completed()"]


def test_failures_are_logged_with_the_traceback() -> None:
    @task
    def fails() -> None:
        raise ValueError("bad input row 7")

    @flow
    def failing() -> None:
        fails()

    with pytest.raises(ValueError):
        failing()
    text = "\n".join(nbflow.logs(nbflow.runs().iloc[0]["id"])["message"])
    assert "bad input row 7" in text and "Traceback" in text


def test_log_prints_turns_print_into_run_log_lines(capsys: pytest.CaptureFixture) -> None:
    @task
    def talks() -> None:
        print("hello from the task", 42)

    @task(log_prints=False)
    def quiet() -> None:
        print("not logged")

    @flow(log_prints=True)
    def chatty() -> None:
        print("hello from the flow")
        talks()
        quiet()

    chatty()
    messages = nbflow.logs(nbflow.runs().iloc[0]["id"])["message"].tolist()
    assert "hello from the flow" in messages and "hello from the task 42" in messages
    assert "not logged" not in messages
    assert "not logged" in capsys.readouterr().out
    print("outside any run")  # the print hook leaves other code alone
    assert "outside any run" in capsys.readouterr().out
    assert callable(builtins.print)


def test_get_run_logger_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(NbflowError, match="outside a flow or task run"):
        get_run_logger()
