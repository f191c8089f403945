"""Prefect 3's calling shapes: tasks and flows as methods, .submit()/.map() outside a flow, .map()
over states and **kwargs, flows returning futures or coroutines, subflows with wait_for=."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

import nbflow
from nbflow import Flow, Task, allow_failure, flow, task
from nbflow.errors import MappingLengthMismatch, MappingMissingIterable


class Plain:
    def __init__(self, x: int) -> None:
        self.x = x


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(ignored_types=(Task, Flow))
    x: int


@pytest.mark.parametrize("base", [Plain, Model])
def test_tasks_and_flows_on_instance_class_and_static_methods(base: type) -> None:
    class Foo(base):  # type: ignore[valid-type, misc]
        @task
        def task_method(self) -> int:
            return self.x

        @flow
        def flow_method(self) -> int:
            return self.x

        @task
        @classmethod
        def task_class_method(cls) -> str:
            return cls.__name__

        @classmethod
        @task
        def class_over_task(cls) -> str:
            return cls.__name__

        @flow
        @classmethod
        def flow_class_method(cls) -> str:
            return cls.__name__

        @staticmethod
        @task
        def static_over_task() -> str:
            return "static"

        @flow
        @staticmethod
        def flow_static_method() -> str:
            return "static"

    one, five = Foo(x=1), Foo(x=5)
    assert five.task_method() == 5 and one.task_method() == 1  # each call sees its own instance
    assert Foo.task_method(one) == 1 and one.task_method() == 1
    assert five.flow_method() == 5 and Foo.flow_method(one) == 1
    assert isinstance(one.task_method, Task) and isinstance(one.flow_method, Flow)
    assert one.task_method.ismethod and not Foo.task_method.ismethod
    assert Foo.task_class_method() == "Foo" and Foo.class_over_task() == "Foo" and Foo.flow_class_method() == "Foo"
    assert isinstance(Foo.task_class_method, Task) and Foo.task_class_method.isclassmethod
    assert Foo.static_over_task() == "static" and Foo.flow_static_method() == "static"
    assert Foo.flow_static_method.isstaticmethod
    runs = nbflow.runs()
    assert set(runs["flow_name"]) == {"flow-method", "flow-class-method", "flow-static-method"}
    # The instance or class a method is bound to is no parameter (only the explicit Foo.flow_method(one)
    # passes self as one).
    assert sorted(str(sorted(p)) for p in runs["parameters"]) == ["['self']", "[]", "[]", "[]"]


def test_async_methods_and_with_options_keep_the_class_binding() -> None:
    class Base:
        factor = 1

        @flow
        @classmethod
        def scaled(cls, x: int) -> int:
            return x * cls.factor

        @task
        async def twice(self, x: int) -> int:
            return 2 * x

    class Child(Base):
        factor = 10

    assert Base.scaled(5) == 5 and Child.scaled(5) == 50
    assert Child.scaled.with_options(name="scaled-again")(5) == 50
    assert asyncio.run(Base().twice(4)) == 8


def test_a_method_task_names_its_runs_from_self() -> None:
    class Foo:
        a = 10

        @task(task_run_name="{self.a}|{x}")
        def named(self, x: int) -> str:
            return nbflow.get_run_context().task_run.name

    assert Foo().named(x=5) == "10|5"


@task
def add_one(x: int) -> int:
    return x + 1


@task
def add(x: int, y: int) -> int:
    return x + y


def test_submit_and_map_outside_a_flow_raise_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="Unable to determine task runner to use for submission"):
        add_one.submit(1)
    with pytest.raises(RuntimeError, match="Unable to determine task runner to use for mapped task runs"):
        add_one.map([1, 2])
    assert add_one(1) == 2  # a direct call outside a flow is fine


def test_map_takes_states_futures_and_kwargs_and_checks_its_iterables() -> None:
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def add_some(x: int, **kwargs: int) -> int:
        return x + kwargs["y"]

    @flow
    def mapping() -> tuple:
        from_state = add_one.map(numbers(return_state=True)).result()
        from_future = add_one.map(numbers.submit()).result()
        from_kwargs = add_some.map([1, 2, 3], y=[4, 5, 6]).result()
        static_kwargs = add_some.map([1, 2, 3], y=1).result()
        states = add_one.map([1, 2], return_state=True)
        return from_state, from_future, from_kwargs, static_kwargs, [s.name for s in states]

    assert mapping() == ([2, 3, 4], [2, 3, 4], [5, 7, 9], [2, 3, 4], ["Completed", "Completed"])

    @flow
    def mismatched() -> None:
        add.map([1, 2, 3], [4, 5, 6, 7])

    with pytest.raises(MappingLengthMismatch, match=r"different lengths.*Got lengths: \{'x': 3, 'y': 4\}"):
        mismatched()

    @flow
    def nothing_to_map() -> None:
        add.map(5, 6)

    with pytest.raises(MappingMissingIterable, match="No iterable parameters were received"):
        nothing_to_map()


def test_a_flow_returning_map_futures_returns_their_states_with_result_and_wait() -> None:
    @flow
    def fan_out():
        return add_one.map([1, 2, 3])

    states = fan_out()
    assert [s.name for s in states] == ["Completed"] * 3
    states.wait()
    assert states.result() == [2, 3, 4]


def test_an_async_flow_returning_a_coroutine_has_it_awaited() -> None:
    @flow
    async def child(x: int) -> int:
        return 2 * x

    @flow
    async def parent(x: int) -> int:
        return child(x)  # not awaited: the engine awaits it, as Prefect's does

    assert asyncio.run(parent(3)) == 6


def test_subflows_wait_for_futures_and_take_them_as_parameters() -> None:
    @task
    def fails() -> None:
        raise ValueError("upstream broke")

    @flow
    def child(y):
        return y

    @flow
    def parent():
        broken = fails.submit()
        not_ready = child(2, wait_for=[broken], return_state=True)
        allowed = child(3, wait_for=[allow_failure(broken)])
        from_future = child(add_one.submit(4))
        from_state = child(add_one(5, return_state=True))
        return not_ready, allowed, from_future, from_state

    not_ready, allowed, from_future, from_state = parent()
    assert not_ready.is_pending() and not_ready.name == "NotReady"
    assert "did not reach a 'COMPLETED' state" in not_ready.message
    assert (allowed, from_future, from_state) == (3, 5, 6)
    children = nbflow.runs().query("flow_name == 'child'")
    assert sorted(children["state"]) == ["Completed", "Completed", "Completed", "NotReady"]


def test_generator_tasks_and_flows_stream_their_values() -> None:
    @task
    def numbers():
        yield nbflow.get_run_context().task_run.state.name
        yield 2
        return "done"

    gen = numbers()
    assert next(gen) == "Running" and next(gen) == 2
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "done"

    @flow
    def pipeline():
        for value in numbers():
            yield value

    assert list(pipeline()) == ["Running", 2]
    with pytest.raises(ValueError, match="The return_type for a generator task must be 'result'"):
        numbers(return_state=True)
    with pytest.raises(ValueError, match="The return_type for a generator flow must be 'result'"):
        pipeline(return_state=True)
    states = dict(zip(nbflow.task_runs()["task_name"], nbflow.task_runs()["state"]))
    assert states == {"numbers": "Completed"} and set(nbflow.runs()["state"]) == {"Completed"}


@pytest.mark.parametrize("kind", ["task", "flow"])
def test_generator_retries_yield_again_and_timeouts_stop_them(kind: str) -> None:
    decorator = task if kind == "task" else flow

    @decorator(retries=2)
    def flaky():
        yield 1
        yield 2
        raise ValueError("again")

    values = []
    with pytest.raises(ValueError, match="again"):
        for value in flaky():
            values.append(value)
    assert values == [1, 2, 1, 2, 1, 2]

    release = __import__("threading").Event()

    @decorator(timeout_seconds=0.2)
    def slow():
        yield 1
        release.wait(5)
        yield 2

    values = []
    with pytest.raises(TimeoutError):
        for value in slow():
            values.append(value)
    release.set()
    assert values == [1]
    ended = nbflow.task_runs() if kind == "task" else nbflow.runs()
    assert sorted(ended["state"]) == ["Failed", "TimedOut"]


def test_async_generator_task_streams_retries_and_times_out() -> None:
    @task(retries=1)
    async def ticks():
        yield 1
        raise ValueError("once more")

    @task(timeout_seconds=0.1)
    async def stalls():
        yield 1
        await asyncio.sleep(5)
        yield 2

    async def consume(gen) -> list:
        values = []
        try:
            async for value in gen:
                values.append(value)
        except (ValueError, TimeoutError) as exc:
            values.append(type(exc).__name__)
        return values

    assert asyncio.run(consume(ticks())) == [1, 1, "ValueError"]
    assert asyncio.run(consume(stalls())) == [1, "TimedOutError"]


def test_a_returned_generator_is_run_through_and_a_yielded_one_is_not() -> None:
    consumed = []

    @task
    def inner():
        consumed.append("inner")
        yield 1

    @task
    def returns_it():
        return inner()

    @task
    def yields_it():
        yield inner()

    assert returns_it() == [1] and consumed == ["inner"]
    consumed.clear()
    gen = next(yields_it())
    assert consumed == []
    assert list(gen) == [1] and consumed == ["inner"]
