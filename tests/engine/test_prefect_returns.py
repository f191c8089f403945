"""Prefect 3's rules for returned states, result() in async code, log lines, hooks and run names."""

from __future__ import annotations

import asyncio
import logging

import pytest

import nbflow
from nbflow import flow, task
from nbflow.engine.context import TaskRunContext
from nbflow.errors import FailedRun, PausedRunError, UnfinishedRun
from nbflow.states import Cancelled, Completed, Failed, Paused, State, StateType


@task
def fail(message: str = "Test"):
    raise ValueError(message)


@task
def succeed():
    return True


def test_a_state_made_by_the_flow_is_its_final_state() -> None:
    @flow
    def returns_failed():
        return State(type=StateType.FAILED, message="Test returned state", data="hello!")

    state = returns_failed(return_state=True)
    assert state.is_failed() and state.message == "Test returned state"
    assert state.result(raise_on_failure=False) == "hello!"
    with pytest.raises(FailedRun, match="hello!"):  # Prefect wraps text data in FailedRun
        returns_failed()


def test_a_returned_task_state_decides_the_flow_and_is_its_data() -> None:
    @flow
    def returns_task_state():
        return fail(return_state=True)

    flow_state = returns_task_state(return_state=True)
    assert flow_state.is_failed() and flow_state.message == "1/1 states failed."
    task_state = flow_state.result(raise_on_failure=False)
    assert isinstance(task_state, State) and task_state.is_failed()
    with pytest.raises(ValueError, match="Test"):
        task_state.result()
    with pytest.raises(ValueError, match="Test"):  # the flow raises the task's own exception
        returns_task_state()


def test_several_returned_states_give_counts_in_the_message() -> None:
    @flow
    def returns_three():
        return fail(return_state=True), fail("Test 2", return_state=True), succeed(return_state=True)

    flow_state = returns_three(return_state=True)
    assert flow_state.is_failed() and flow_state.message == "2/3 states failed."
    first, second, third = flow_state.result(raise_on_failure=False)
    assert first.is_failed() and second.is_failed() and third.is_completed()
    with pytest.raises(ValueError, match="Test 2"):
        second.result()


def test_returned_futures_count_as_their_states_and_cancelled_wins() -> None:
    @task
    def cancel():
        return Cancelled()

    @flow
    def returns_futures():
        return cancel.submit(), succeed.submit(), fail.submit()

    flow_state = returns_futures(return_state=True)
    assert flow_state.is_cancelled() and flow_state.message == "1/3 states cancelled."
    first, second, third = flow_state.result(raise_on_failure=False)
    assert first.is_cancelled() and second.is_completed() and third.is_failed()

    @flow
    def all_good():
        return [succeed.submit(), succeed.submit()]

    state = all_good(return_state=True)
    assert state.is_completed() and state.message == "All states completed."
    returned = all_good()  # the call hands back the states, as Prefect's does
    assert [s.result() for s in returned] == [True, True]


def test_a_paused_flow_has_no_result() -> None:
    @flow
    def pauses():
        return Paused()

    with pytest.raises(PausedRunError, match="result is not available"):
        pauses()
    assert pauses(return_state=True).is_paused()


def test_a_task_returning_a_state_ends_in_it_and_the_call_hands_it_back() -> None:
    @task
    def returns_completed():
        return Completed(message="done by hand", data=5)

    @task(retries=2)
    def returns_failed():
        attempts.append(1)
        return Failed(message="bad rows")

    attempts: list[int] = []

    @flow
    def uses_them():
        given = returns_completed()
        state = returns_completed(return_state=True)
        failed = returns_failed(return_state=True)
        return given, state, failed

    given, state, failed = uses_them()
    assert isinstance(given, State) and given.result() == 5
    assert state.message == "done by hand" and state.result() == 5
    assert failed.is_failed() and failed.message == "bad rows"
    assert len(attempts) == 3  # a returned Failed state is retried like a raised exception


def test_result_is_awaitable_in_async_code_and_a_value_in_sync_code() -> None:
    state = Completed(data=7)
    assert state.result() == 7

    async def main() -> tuple[int, int]:
        return await state.result(), await state.aresult()

    assert asyncio.run(main()) == (7, 7)

    @flow
    async def async_flow() -> int:
        inner = succeed(return_state=True)
        return await inner.result()

    assert asyncio.run(async_flow()) is True


def test_log_lines_users_grep_for(caplog: pytest.LogCaptureFixture) -> None:
    @task(retries=1)
    def flaky():
        raise ValueError("always")

    @task(timeout_seconds=0.2)
    def slow():
        import time

        time.sleep(2)

    @flow
    def noisy():
        flaky.submit().wait()
        slow.submit().wait()
        return succeed()

    with caplog.at_level(logging.INFO, logger="nbflow"):
        noisy()
    text = caplog.text
    assert "Task run failed with exception: ValueError('always') - Retry 1/1 will start immediately" in text
    assert "Task run failed with exception: ValueError('always') - Retries are exhausted" in text
    assert "Task run exceeded timeout of 0.2 second(s)" in text
    assert "Finished in state Completed()" in text
    nbflow.flush()
    messages = set(nbflow.sql("SELECT message FROM logs")["message"])
    assert "Finished in state Completed()" in messages  # a task's line is stored even when not shown


def test_failure_messages_name_the_exception() -> None:
    @flow
    def raises():
        raise ValueError("bad input")

    assert raises(return_state=True).message == "Flow run encountered an exception: ValueError: bad input"

    @flow
    def task_fails():
        return fail(return_state=True)

    state = task_fails(return_state=True).result(raise_on_failure=False)
    assert state.message == "Task run encountered an exception ValueError: Test"


def test_running_cancellation_and_async_hooks_with_their_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def async_hook(definition, run, state):
        await asyncio.sleep(0)
        seen.append(f"async {state.name}")

    @task(on_running=[lambda t, r, s: seen.append(f"task {s.name}")])
    def hooked():
        return 1

    @flow(on_running=[lambda f, r, s: seen.append(f"flow {s.name}")], on_completion=[async_hook])
    def runs_hooks():
        return hooked()

    @flow
    def cancels():
        return Cancelled(message="stop")

    @cancels.on_cancellation
    def on_cancel(definition, run, state):
        seen.append(f"cancelled {state.message}")

    with caplog.at_level(logging.INFO, logger="nbflow"):
        runs_hooks()
        cancels(return_state=True)
    assert seen == ["flow Running", "task Running", "async Completed", "cancelled stop"]
    assert "Running hook 'async_hook' in response to entering state 'Completed'" in caplog.text
    assert "Hook 'async_hook' finished running successfully" in caplog.text


def test_task_run_name_from_a_template_or_a_function(caplog: pytest.LogCaptureFixture) -> None:
    class Foo:
        a = 10

        @task(task_run_name="{self.a}|{x}")
        def method(self, x):
            return TaskRunContext.get().task_run.name

    calls: list[int] = []

    def make_name() -> str:
        calls.append(1)
        from nbflow.runtime import task_run

        return f"named-{task_run.parameters['n']}"

    @task(task_run_name=make_name, retries=2)
    def flaky_named(n: int):
        raise RuntimeError("no")

    @task
    def plain():
        return TaskRunContext.get().task_run.name

    @flow
    def names():
        flaky_named(3, return_state=True)
        return Foo().method(x=5), plain()

    templated, default = names()
    assert templated == "10|5" and default.startswith("plain-")
    assert len(calls) == 1  # once per call, not per retry
    assert plain() == "plain"  # outside a flow: the task's name, as Prefect
    nbflow.flush()
    assert "named-3" in set(nbflow.sql("SELECT name FROM task_runs")["name"])

    with pytest.raises(TypeError, match="Expected string or callable for 'task_run_name'; got int instead"):
        task(task_run_name=3)(lambda: None)

    @task(task_run_name=lambda: None)
    def bad_name():
        pass

    with pytest.raises(TypeError, match="for 'task_run_name' returned type NoneType but a string is required"):
        bad_name()


def test_a_task_whose_upstream_failed_stays_not_ready() -> None:
    @task
    def echo(y):
        return y

    @flow
    def chain():
        return echo.submit(fail.submit())

    flow_state = chain(return_state=True)
    task_state = flow_state.result(raise_on_failure=False)
    assert task_state.is_pending() and task_state.name == "NotReady"
    assert "did not reach a 'COMPLETED' state" in task_state.message
    assert flow_state.is_failed() and flow_state.message == "1/1 states are not final."
    with pytest.raises(UnfinishedRun, match="Run is in PENDING state, its result is not available"):
        task_state.result()


def test_submit_and_map_with_return_state_and_states_as_inputs() -> None:
    @task
    def add_one(x):
        return x + 1

    @flow
    def uses_states():
        state = add_one.submit(1, return_state=True)
        states = add_one.map([1, 2], return_state=True)
        from_state = add_one(state)  # a state passed to a task gives its result
        mapped = add_one.map(Completed(data=[5, 6])).result()
        return state, states, from_state, mapped

    state, states, from_state, mapped = uses_states()
    assert isinstance(state, State) and state.result() == 2
    assert [s.result() for s in states] == [2, 3]
    assert from_state == 3 and mapped == [6, 7]


def test_returned_crashed_and_cancelling_states_call_their_hooks() -> None:
    seen: list[str] = []

    @flow(on_crashed=[lambda f, r, s: seen.append("crashed")], on_failure=[lambda f, r, s: seen.append("failed")])
    def crashes():
        return State(type=StateType.CRASHED)

    @flow(on_cancellation=[lambda f, r, s: seen.append("cancelled")])
    def cancelling():
        return State(type=StateType.CANCELLING)

    assert crashes(return_state=True).is_crashed()
    assert cancelling(return_state=True).is_cancelling()
    assert seen == ["crashed", "cancelled"]
