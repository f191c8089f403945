"""Retries, delays, retry conditions, timeouts that really stop, and hooks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import nbflow
from nbflow import exponential_backoff, flow, task
from nbflow.errors import TaskDefinitionError


def test_task_retries_until_success_and_records_retrying() -> None:
    calls: list[float] = []

    @task(retries=3, retry_delay_seconds=0.05)
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    @flow
    def etl() -> str:
        return flaky()

    assert etl() == "ok"
    assert len(calls) == 3
    assert all(b - a >= 0.045 for a, b in zip(calls, calls[1:]))
    run = nbflow.task_runs().iloc[0]
    assert run["state"] == "Completed" and run["run_count"] == 3
    history = nbflow.sql("select state from state_history where run_id = ? order by seq", [run["id"]])
    assert history["state"].tolist() == ["Pending", "Running", "Retrying", "Retrying", "Completed"]


def test_retries_exhausted_ends_failed_with_the_last_error() -> None:
    @task(retries=2)
    def always_fails() -> None:
        raise RuntimeError("nope")

    state = always_fails(return_state=True)
    assert state.is_failed() and state.name == "Failed"
    assert "RuntimeError: nope" in state.message
    assert nbflow.task_runs().iloc[0]["run_count"] == 3


@pytest.mark.parametrize(("delays", "expected"), [
    ([0.01, 0.06], [0.01, 0.06]),
    (exponential_backoff(0.02), [0.02, 0.04]),
])
def test_retry_delay_lists_and_callables(delays: object, expected: list[float]) -> None:
    stamps: list[float] = []

    @task(retries=2, retry_delay_seconds=delays)
    def fails() -> None:
        stamps.append(time.monotonic())
        raise ValueError("x")

    fails(return_state=True)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    for gap, want in zip(gaps, expected):
        assert want * 0.9 <= gap < want + 0.2


def test_retry_jitter_varies_the_delay_within_bounds() -> None:
    stamps: list[float] = []

    @task(retries=3, retry_delay_seconds=0.05, retry_jitter_factor=1.0)
    def fails() -> None:
        stamps.append(time.monotonic())
        raise ValueError("x")

    fails(return_state=True)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(0 <= g < 0.1 + 0.1 for g in gaps)


def test_retry_condition_fn_can_refuse_a_retry() -> None:
    calls = []

    def only_connection_errors(task, task_run, state) -> bool:
        return isinstance(state.exception, ConnectionError)

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def picky() -> None:
        calls.append(1)
        raise KeyError("not retried")

    assert picky(return_state=True).is_failed()
    assert len(calls) == 1


def test_flow_retries_rerun_the_whole_flow() -> None:
    attempts = []

    @flow(retries=2, retry_delay_seconds=0)
    def flaky_flow() -> int:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("first time fails")
        return len(attempts)

    assert flaky_flow() == 2
    run = nbflow.runs().iloc[0]
    assert run["state"] == "Completed" and run["run_count"] == 2


def test_sync_task_timeout_stops_waiting_and_stops_the_code() -> None:
    ticks = []

    @task(timeout_seconds=0.3)
    def hangs() -> None:
        while True:
            ticks.append(1)
            time.sleep(0.01)

    started = time.monotonic()
    state = hangs(return_state=True)
    elapsed = time.monotonic() - started
    assert state.name == "TimedOut" and state.is_failed()
    assert elapsed < 1.5
    time.sleep(0.2)
    count = len(ticks)
    time.sleep(0.2)
    assert len(ticks) == count, "the timed-out code kept running"
    assert nbflow.task_runs().iloc[0]["state"] == "TimedOut"


def test_timeout_in_a_worker_thread_and_for_async_tasks() -> None:
    @task(timeout_seconds=0.2)
    def sleeps() -> None:
        time.sleep(5)

    @task(timeout_seconds=0.2)
    async def async_sleeps() -> None:
        await asyncio.sleep(5)

    @flow
    def both() -> tuple:
        future = sleeps.submit()
        return future.state, async_sleeps(return_state=True)

    started = time.monotonic()
    both(return_state=True)
    assert time.monotonic() - started < 3
    assert set(nbflow.task_runs()["state"]) == {"TimedOut"}


def test_flow_timeout_records_timed_out() -> None:
    @flow(timeout_seconds=0.3)
    def slow_flow() -> None:
        time.sleep(5)

    started = time.monotonic()
    state = slow_flow(return_state=True)
    assert time.monotonic() - started < 2
    assert state.name == "TimedOut"
    assert nbflow.runs().iloc[0]["state"] == "TimedOut"


def test_user_code_raising_timeout_error_is_failed_not_timed_out() -> None:
    @task
    def raises_timeout() -> None:
        raise TimeoutError("the user's own timeout")

    assert raises_timeout(return_state=True).name == "Failed"


def test_hooks_are_called_with_definition_run_and_state() -> None:
    seen: list[tuple[str, str]] = []

    def record(obj, run, state) -> None:
        seen.append((obj.name, state.name))

    @task(on_completion=[record], on_failure=[record])
    def fine() -> int:
        return 1

    @task(on_failure=[record])
    def bad() -> None:
        raise ValueError("bad")

    @flow(on_completion=[record], on_failure=[record])
    def hooked(fail: bool) -> None:
        fine()
        if fail:
            bad()

    hooked(False)
    with pytest.raises(ValueError):
        hooked(True)
    assert seen == [("fine", "Completed"), ("hooked", "Completed"), ("fine", "Completed"),
                    ("bad", "Failed"), ("hooked", "Failed")]


def test_on_crashed_hook_and_crashed_state_on_interrupt() -> None:
    crashed = []

    @flow(on_crashed=[lambda f, r, s: crashed.append(s.name)])
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert crashed == ["Crashed"]
    assert nbflow.runs().iloc[0]["state"] == "Crashed"


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": -1}, "retries must be a whole number >= 0"),
    ({"retries": 1.5}, "retries must be a whole number"),
    ({"retry_delay_seconds": -3}, "retry_delay_seconds must be >= 0"),
    ({"retry_delay_seconds": "soon"}, "retry_delay_seconds must be a number"),
    ({"retry_jitter_factor": -1}, "retry_jitter_factor must be a number >= 0"),
    ({"timeout_seconds": -1}, "timeout_seconds must be a number of seconds >= 0"),
    ({"on_failure": ["not callable"]}, "Expected callables in 'on_failure'; got str instead"),
    ({"on_completion": 42}, "Expected iterable for 'on_completion'; got int instead"),
    ({"retry_condition_fn": 3}, "retry_condition_fn must be callable"),
    ({"cache_expiration": 60}, "cache_expiration must be a datetime.timedelta"),
])
def test_bad_task_options_fail_at_decoration_time(options: dict, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        task(**options)(lambda: None)


@pytest.mark.parametrize(("options", "message"), [
    ({"retries": -2}, "retries must be"),
    ({"on_crashed": [None]}, "Expected callables in 'on_crashed'; got NoneType instead"),
    ({"task_runner": "threads"}, "task_runner must be a task runner"),
])
def test_bad_flow_options_fail_at_decoration_time(options: dict, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message):
        flow(**options)(lambda: None)


def test_timeout_thread_is_reused_not_started_per_task() -> None:
    @task(timeout_seconds=5)
    def quick(i: int) -> int:
        return i

    before = threading.active_count()
    for i in range(50):
        quick(i)
    assert threading.active_count() - before <= 2
