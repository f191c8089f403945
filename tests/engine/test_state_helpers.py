"""Prefect's state constructors and helpers (prefect.states) under nbflow.states."""

from __future__ import annotations

import asyncio

import pytest

from nbflow import flow
from nbflow.states import (
    Cancelled, Completed, Crashed, Failed, Pending, Retrying, Running, Scheduled, StateType, TimedOut,
    exception_to_crashed_state, exception_to_failed_state, get_state_exception, is_state_iterable,
    raise_state_exception, return_value_to_state,
)


def test_constructors_take_message_and_data():
    assert Completed(data=3).result() == 3 and Completed(message="ok").message == "ok"
    assert [s.type for s in (Pending(), Running(), Retrying(), Scheduled(), TimedOut())] == [
        StateType.PENDING, StateType.RUNNING, StateType.RUNNING, StateType.SCHEDULED, StateType.FAILED]
    error = ValueError("bad row")
    failed = Failed(message="it broke", data=error)
    assert failed.data is error and failed.exception is error and failed.is_failed()
    with pytest.raises(ValueError, match="bad row"):
        failed.result()
    assert failed.result(raise_on_failure=False) is error
    assert Failed("positional", error).exception is error
    assert Crashed(message="gone").is_crashed() and Cancelled().is_cancelled()
    assert asyncio.run(Completed(data="x").aresult()) == "x"


def test_state_exception_helpers():
    error = KeyError("k")
    assert get_state_exception(Failed(data=error)) is error
    assert "gone" in str(get_state_exception(Crashed(message="gone")))
    with pytest.raises(ValueError, match="Expected failed or crashed state got Completed"):
        get_state_exception(Completed())
    raise_state_exception(Completed())  # nothing to raise
    with pytest.raises(KeyError):
        raise_state_exception(Failed(data=error))
    try:
        raise RuntimeError("inside")
    except RuntimeError:
        handled = exception_to_failed_state()
    assert handled.is_failed() and handled.message == "RuntimeError: inside"
    assert exception_to_crashed_state(KeyboardInterrupt()).message == "Execution was aborted by an interrupt signal."
    assert exception_to_crashed_state(SystemExit()).is_crashed()


def test_state_iterables_and_returned_values():
    assert is_state_iterable([Completed(), Failed()]) and not is_state_iterable([]) and not is_state_iterable([1])
    assert return_value_to_state(5).result() == 5
    mixed = return_value_to_state([Completed(), Failed(), Failed()])
    assert mixed.is_failed() and mixed.message == "2/3 states failed."
    assert return_value_to_state([Completed(), Cancelled()]).message == "1/2 states cancelled."
    assert return_value_to_state([Completed(), Completed()]).is_completed()


def test_a_flow_returning_a_failed_state_fails():
    @flow
    def returns_state() -> object:
        return Failed(message="told to fail")

    state = returns_state(return_state=True)
    assert state.is_failed() and "told to fail" in state.message


def test_state_details_name_the_runs_a_state_belongs_to_as_prefect_does():
    import datetime
    import uuid

    from nbflow import task
    from nbflow import get_run_context

    seen = {}

    @task(cache_key_fn=lambda context, parameters: f"square-{parameters['x']}",
          cache_expiration=datetime.timedelta(hours=1))
    def square(x: int) -> int:
        seen["task_run_id"] = get_run_context().task_run.id
        return x * x

    @flow
    def squares() -> object:
        seen["flow_run_id"] = get_run_context().flow_run.id
        return square(3, return_state=True)

    flow_state = squares(return_state=True)
    task_state = flow_state.result()
    details = task_state.state_details
    assert details.flow_run_id == uuid.UUID(hex=seen["flow_run_id"]) and details.flow_run_id.hex == flow_state.run_id
    assert details.task_run_id == uuid.UUID(hex=seen["task_run_id"])
    assert details.cache_key and details.cache_expiration > datetime.datetime.now(datetime.timezone.utc)
    assert flow_state.state_details.flow_run_id == details.flow_run_id
    assert flow_state.state_details.task_run_id is None and flow_state.state_details.cache_key is None
    made = Completed(data=1).state_details  # a state no run entered: Prefect's defaults
    assert (made.flow_run_id, made.task_run_id, made.untrackable_result, made.pause_reschedule) == (None, None, False,
                                                                                                      False)
