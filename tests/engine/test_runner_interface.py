"""Prefect's task-runner and future interfaces: runner.submit(task, parameters), custom runners,
PrefectConcurrentFuture, wait/as_completed over any future, resolve_futures_to_*, tags context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
import time
import uuid

import pytest

from nbflow import flow, tags, task
from nbflow.engine.context import TagsContext
from nbflow.errors import CancelledRun, FailedRun
from nbflow.futures import (
    PrefectConcurrentFuture, PrefectFuture, as_completed, resolve_futures_to_results, resolve_futures_to_states, wait,
)
from nbflow.states import Cancelled, Completed, Failed, State, raise_state_exception
from nbflow.task_runners import ThreadPoolTaskRunner


@task
def add(x, y=1, *rest, **named):
    return x + y + sum(rest) + sum(named.values())


@task
def current_tags():
    return TagsContext.get().current_tags


def test_a_runner_takes_prefects_submit_and_map() -> None:
    with ThreadPoolTaskRunner() as runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        assert isinstance(future, PrefectFuture) and isinstance(future.task_run_id, uuid.UUID)
        assert isinstance(future.wrapped_future, concurrent.futures.Future)
        assert future.result() == 3
        assert runner.submit(add, {"x": 1, "y": 2, "rest": (3, 4), "named": {"z": 10}}).result() == 20
        assert runner.map(add, {"x": [1, 2, 3]}).result() == [2, 3, 4]
        with tags("etl", "nightly"):
            assert runner.submit(current_tags, {}).result() == {"etl", "nightly"}
        with pytest.raises(RuntimeError, match="already started"):
            runner.__enter__()
    with pytest.raises(RuntimeError, match="Task runner is not started"):
        ThreadPoolTaskRunner().submit(add, {"x": 1})
    with pytest.raises(RuntimeError, match="must be started"):
        ThreadPoolTaskRunner().map(add, {"x": [1]})
    assert ThreadPoolTaskRunner(3) == ThreadPoolTaskRunner(3) != ThreadPoolTaskRunner(4)
    assert ThreadPoolTaskRunner(3).duplicate() == ThreadPoolTaskRunner(3)
    assert ThreadPoolTaskRunner().name == "threadpool"


class InlineRunner(ThreadPoolTaskRunner):
    """A third-party runner written against Prefect's interface: runs each task where it is submitted."""

    submitted: list[str] = []

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        type(self).submitted.append(task.name)
        inner = concurrent.futures.Future()
        inner.set_result(task(**parameters, return_state=True))
        return PrefectConcurrentFuture(uuid.uuid4(), inner)

    def duplicate(self):
        return InlineRunner()


@task
def plus(x, y=1):
    return x + y


def test_a_flow_uses_a_runner_that_overrides_submit() -> None:
    @flow(task_runner=InlineRunner())
    def inline() -> list[int]:
        one = plus.submit(1)
        many = plus.map([10, 20])
        return [one.result(), *many.result()]

    InlineRunner.submitted.clear()
    assert inline() == [2, 11, 21]
    assert InlineRunner.submitted == ["plus", "plus", "plus"]


def test_wait_and_as_completed_take_any_future_and_refuse_negative_timeouts() -> None:
    slow = concurrent.futures.Future()
    quick = concurrent.futures.Future()
    futures = [PrefectConcurrentFuture(uuid.uuid4(), slow), PrefectConcurrentFuture(uuid.uuid4(), quick)]
    threading.Timer(0.05, lambda: quick.set_result(Completed(data=2))).start()
    done, not_done = wait(futures, timeout=1.0)
    assert done == {futures[1]} and not_done == {futures[0]}
    with pytest.raises(TimeoutError, match=r"1 \(of 2\) futures unfinished"):
        list(as_completed(futures, timeout=0.05))
    slow.set_result(Failed(data=ValueError("late")))
    assert {f.state.name for f in as_completed(futures)} == {"Completed", "Failed"}
    assert futures[0].result(raise_on_failure=False).args == ("late",)
    for call in (lambda: wait(futures, timeout=-1), lambda: list(as_completed(futures, timeout=-1)),
                 lambda: futures[0].result(timeout=-1)):
        with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
            call()


def test_a_future_list_times_out_as_a_whole_and_futures_take_attributes() -> None:
    @task
    def sleepy(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @flow
    def waits() -> None:
        futures = sleepy.map([0.01, 1.0])
        futures[0].label = "quick"  # Prefect's futures take attributes; so do nbflow's
        with pytest.raises(TimeoutError, match="Timed out waiting for all futures to complete within 0.2 seconds"):
            futures.result(timeout=0.2)
        assert futures[0].label == "quick"

    waits()


@dataclasses.dataclass
class Pair:
    left: object
    right: object


def test_resolve_futures_in_nested_collections_keys_and_dataclasses() -> None:
    @flow
    def nested():
        one, two = add.submit(1), add.submit(2)
        expr = {"list": [one, (two, "x")], one: "as a key", "pair": Pair(one, 5)}
        states = resolve_futures_to_states(expr)
        results = resolve_futures_to_results(expr)
        return states, results

    states, results = nested()
    assert results == {"list": [2, (3, "x")], 2: "as a key", "pair": Pair(2, 5)}
    assert all(isinstance(s, State) for s in (states["list"][0], states["list"][1][0], states["pair"].left))

    @flow
    def fails():
        return resolve_futures_to_results([add.submit("a", "b"), add.submit(None)])

    with pytest.raises(Exception, match="At least one result did not complete successfully"):
        fails()


def test_state_exceptions_wrap_text_and_nothing_as_prefects() -> None:
    async def awaited() -> None:
        with pytest.raises(FailedRun, match="^bad rows$"):
            await raise_state_exception(Failed(data="bad rows"))
        assert await raise_state_exception(Completed()) is None

    asyncio.run(awaited())
    with pytest.raises(CancelledRun, match="Run cancelled."):
        raise_state_exception(Cancelled())  # from sync code it raises at once
    with pytest.raises(TypeError, match="int cannot be resolved into an exception"):
        raise_state_exception(Failed(data=2))
    assert raise_state_exception(Completed()) is None
