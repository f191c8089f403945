"""Flows and tasks end to end: calls, submit, map, futures, edges, subflows, final states."""

from __future__ import annotations

import asyncio
import time

import pytest

import nbflow
from nbflow import flow, task, unmapped, wait
from nbflow.errors import ParameterBindError, ParameterTypeError
from nbflow.futures import as_completed


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
def double(x: int) -> int:
    return x * 2


@task
def boom(x: int = 0) -> int:
    raise ValueError(f"boom {x}")


def _task_runs(flow_run_id: str):
    return nbflow.task_runs(flow_run_id=flow_run_id)


def test_sequential_flow_returns_value_and_records_every_run() -> None:
    @flow
    def pipeline(n: int) -> int:
        return double(add(n))

    state = pipeline(3, return_state=True)
    assert state.is_completed() and state.result() == 8
    runs = nbflow.runs(flow_name="pipeline")
    assert list(runs.columns[:7]) == ["id", "flow_name", "state", "start_time", "end_time",
                                      "duration_s", "parameters"]
    assert runs.iloc[0]["state"] == "Completed"
    assert runs.iloc[0]["parameters"] == {"n": 3}
    tasks = _task_runs(runs.iloc[0]["id"])
    assert sorted(tasks["task_name"]) == ["add", "double"]
    assert set(tasks["state"]) == {"Completed"}
    for column in ("id", "flow_run_id", "task_name", "state", "start_time", "end_time", "duration_s", "error"):
        assert column in tasks.columns


def test_task_results_passed_on_become_dependency_edges() -> None:
    @task
    def make_list(n: int) -> list[int]:
        return list(range(n))

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow
    def edges() -> int:
        values = make_list(5)
        future = double.submit(1000)
        return total(values) + total.submit([future]).result()

    state = edges(return_state=True)
    assert state.result() == 10 + 2000
    tasks = _task_runs(nbflow.runs(flow_name="edges").iloc[0]["id"]).set_index("task_name")
    ids = _task_runs(nbflow.runs(flow_name="edges").iloc[0]["id"])
    by_name = {}
    for _, row in ids.iterrows():
        by_name.setdefault(row["task_name"], []).append(row)
    make_id = by_name["make_list"][0]["id"]
    double_id = by_name["double"][0]["id"]
    upstreams = sorted(tuple(r["upstream"]) for r in by_name["total"])
    assert upstreams == sorted([(make_id,), (double_id,)])
    assert len(tasks) == 4


def test_submit_map_unmapped_and_wait() -> None:
    @flow
    def fan_out() -> list[int]:
        futures = add.map([1, 2, 3], y=unmapped(10))
        done, not_done = wait(futures)
        assert len(done) == 3 and not not_done
        finished = [f.result() for f in as_completed(futures)]
        assert sorted(finished) == [11, 12, 13]
        return futures.result()

    assert fan_out() == [11, 12, 13]
    tasks = _task_runs(nbflow.runs(flow_name="fan-out").iloc[0]["id"])
    assert sorted(tasks["dynamic_key"].tolist()) == [0, 1, 2]


def test_map_with_uneven_iterables_is_a_clear_error() -> None:
    @flow
    def uneven() -> None:
        add.map([1, 2], [1, 2, 3])

    with pytest.raises(ValueError, match="different lengths"):
        uneven()


def test_wait_for_orders_runs_and_failed_upstream_fails_downstream() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        time.sleep(0.1)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def ordered() -> None:
        f = first.submit()
        second.submit(wait_for=[f]).wait()

    ordered()
    assert order == ["first", "second"]

    @flow
    def broken_chain():
        bad = boom.submit(1)
        return second.submit(wait_for=[bad])

    state = broken_chain(return_state=True)
    assert state.is_failed() and state.message == "1/1 states are not final."
    tasks = _task_runs(nbflow.runs(flow_name="broken-chain").iloc[0]["id"]).set_index("task_name")
    assert tasks.loc["second", "state"] == "NotReady"  # never started, as in Prefect 3
    assert tasks.loc["second", "state_type"] == "PENDING"
    assert "did not reach a 'COMPLETED' state" in tasks.loc["second", "state_message"]
    assert "boom" in tasks.loc["second", "error"]


def test_direct_call_of_a_failing_task_fails_the_flow_with_its_exception() -> None:
    @flow
    def fails() -> int:
        return boom(2)

    with pytest.raises(ValueError, match="boom 2"):
        fails()
    state = fails(return_state=True)
    assert state.is_failed() and "ValueError: boom 2" in state.message
    row = nbflow.runs(flow_name="fails").iloc[0]
    assert row["state"] == "Failed" and "boom 2" in row["state_message"]


def test_return_state_lets_the_flow_handle_a_failure() -> None:
    @flow
    def handles() -> str:
        state = boom(3, return_state=True)
        assert state.is_failed()
        return "handled"

    assert handles() == "handled"


def test_unreturned_failed_future_does_not_decide_the_flow_but_is_waited_for() -> None:
    @flow
    def leaks_failure() -> None:
        boom.submit(4)
        add.submit(1)

    state = leaks_failure(return_state=True)
    assert state.is_completed()  # Prefect 3: only what the flow returns or raises decides
    nbflow.flush()
    tasks = nbflow.task_runs(state.run_id)
    assert sorted(tasks["state"]) == ["Completed", "Failed"]  # both ran to the end, none lost


def test_returned_value_completes_even_with_a_failed_future() -> None:
    @flow
    def returns_value() -> int:
        boom.submit(5)
        return 7

    assert returns_value(return_state=True).is_completed()


def test_returning_a_failed_future_fails_the_flow() -> None:
    @flow
    def returns_future():
        return boom.submit(6)

    assert returns_future(return_state=True).is_failed()


def test_task_outside_a_flow_is_recorded_as_its_own_run() -> None:
    assert add(1, 2) == 3
    assert add(2, 2) == 4
    tasks = nbflow.task_runs()
    assert len(tasks) == 2
    assert tasks["flow_run_id"].isna().all()
    assert set(tasks["state"]) == {"Completed"}


def test_subflow_is_a_child_run_linked_to_its_parent() -> None:
    @flow
    def child(x: int) -> int:
        return add(x)

    @flow
    def parent() -> int:
        return child(1) + child(2)

    assert parent() == 5
    runs = nbflow.runs()
    parent_id = runs.loc[runs["flow_name"] == "parent", "id"].item()
    children = runs[runs["flow_name"] == "child"]
    assert len(children) == 2
    assert (children["parent_flow_run_id"] == parent_id).all()


def test_with_options_and_fn() -> None:
    renamed = add.with_options(name="plus", retries=2)
    assert renamed.name == "plus" and renamed.retries == 2 and add.retries == 0
    assert add.fn(1, 1) == 2  # the plain function: no run recorded

    @flow
    def uses_renamed() -> int:
        return renamed(1)

    assert uses_renamed() == 2
    assert nbflow.task_runs()["task_name"].tolist() == ["plus"]
    other = uses_renamed.with_options(name="other-name")
    assert other() == 2
    assert "other-name" in set(nbflow.runs()["flow_name"])


def test_parameter_validation_names_the_parameter_and_records_the_failed_run() -> None:
    @flow
    def typed(n: int, rate: float = 0.5, tags: list[str] | None = None) -> float:
        return n * rate

    assert typed("4", rate="0.25") == 1.0  # text coerced, as from a CLI or form
    with pytest.raises(ParameterTypeError, match="invalid parameters:\n - n: Input should be a valid integer") as info:
        typed("four")
    assert info.value.parameter == "n"
    assert "(got str 'four')" in str(info.value)
    with pytest.raises(ParameterTypeError, match="tags.0: Input should be a valid string"):
        typed(1, tags=[1, 2])
    # As in Prefect, a call that does not fit the signature raises at once and records no run.
    with pytest.raises(ParameterBindError, match="got an unexpected keyword argument 'm'"):
        typed(1, m=2)
    failed = nbflow.runs(flow_name="typed", state="Failed")
    assert len(failed) == 2
    assert failed["state_message"].str.startswith("Validation of flow parameters failed with error:").all()

    @flow(validate_parameters=False)
    def untyped(n: int) -> object:
        return n

    assert untyped("four") == "four"


def test_async_flow_and_tasks() -> None:
    @task
    async def slow_square(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * x

    @flow
    async def async_pipeline(n: int) -> int:
        first = await slow_square(n)
        futures = slow_square.map([1, 2, 3])
        return first + sum(futures.result())

    assert asyncio.run(async_pipeline(3)) == 9 + 14
    states = set(nbflow.task_runs()["state"])
    assert states == {"Completed"}


def test_sync_flow_calling_async_task_gets_a_value_not_a_coroutine() -> None:
    @task
    async def async_add(x: int) -> int:
        return x + 1

    @flow
    def sync_flow() -> int:
        return async_add(1)

    assert sync_flow() == 2

    async def inside_a_running_loop() -> int:
        # As in a Jupyter kernel: a loop is running in this thread.
        return sync_flow()

    assert asyncio.run(inside_a_running_loop()) == 2



def test_map_results_passed_whole_into_a_task_are_resolved_with_edges() -> None:
    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @flow
    def fan_in() -> int:
        return total(double.map([1, 2, 3]))

    assert fan_in() == 12
    tasks = nbflow.task_runs()
    total_row = tasks[tasks["task_name"] == "total"].iloc[0]
    assert sorted(total_row["upstream"]) == sorted(tasks[tasks["task_name"] == "double"]["id"])


def test_submitted_task_knows_its_upstream_while_pending() -> None:
    import threading

    gate = threading.Event()

    @task
    def slow() -> int:
        gate.wait(5)
        return 1

    @flow
    def pending_edges() -> list:
        first = slow.submit()
        second = double.submit(first)
        upstream = list(second.task_run.upstream)
        gate.set()
        second.wait()
        return [upstream, first.task_run.id]

    upstream, first_id = pending_edges()
    assert upstream == [first_id]
