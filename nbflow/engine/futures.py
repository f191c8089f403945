"""Futures of submitted task runs, and how futures and results passed to tasks become edges."""

from __future__ import annotations

import concurrent.futures
from typing import Any, Iterable, Iterator, NamedTuple

from nbflow.engine.annotations import BaseAnnotation, allow_failure, opaque, quote, unmapped  # noqa: F401
from nbflow.engine.states import State
from nbflow.engine.task_runners import run_now


class TaskRunFuture:
    """A task run started with `.submit()` or `.map()`; its result arrives later."""

    __slots__ = ("task_run", "_future")

    def __init__(self, task_run: Any, future: concurrent.futures.Future) -> None:
        self.task_run = task_run
        self._future = future  # resolves to the run's final State; never raises

    @property
    def task_run_id(self) -> str:
        return self.task_run.id

    @property
    def state(self) -> State:
        """The run's current state (its final state once done)."""
        if self._future.done():
            return self._future.result()
        return self.task_run.state

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run finishes or `timeout` seconds pass."""
        if timeout is None:
            run_now(self._future)
        concurrent.futures.wait([self._future], timeout=timeout)

    def final_state(self, timeout: float | None = None) -> State:
        if timeout is None:
            run_now(self._future)
        try:
            return self._future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"Task run {self.task_run.task_name!r} ({self.task_run.id}) did not finish within "
                f"{timeout} s; it is still {self.task_run.state.name}."
            ) from None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; raises its exception if it failed (unless told not to)."""
        return self.final_state(timeout)._result(raise_on_failure)

    def add_done_callback(self, fn: Any) -> None:
        """Call `fn(future)` when the run finishes."""
        self._future.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run.task_name!r}, state={self.state!r})"


class FutureList(list):
    """The futures `.map()` returns, with `.result()` and `.wait()` over all of them."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]


class DoneAndNotDoneFutures(NamedTuple):
    done: set
    not_done: set


def wait(futures: Iterable[TaskRunFuture], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait for futures to finish; return which are done and which are not (after `timeout`)."""
    by_inner = {f._future: f for f in futures}
    if timeout is None:
        for inner in by_inner:
            run_now(inner)
    done, not_done = concurrent.futures.wait(list(by_inner), timeout=timeout)
    return DoneAndNotDoneFutures({by_inner[f] for f in done}, {by_inner[f] for f in not_done})


def as_completed(futures: Iterable[TaskRunFuture], timeout: float | None = None) -> Iterator[TaskRunFuture]:
    """Yield futures as their runs finish."""
    by_inner = {f._future: f for f in futures}
    for inner in concurrent.futures.as_completed(list(by_inner), timeout=timeout):
        yield by_inner[inner]


_SCALARS = frozenset({int, float, str, bool, type(None), bytes, complex})


class Inputs:
    """A task call's arguments with futures replaced by their results, and the edges found."""

    __slots__ = ("args", "kwargs", "upstream", "not_completed")

    def __init__(self) -> None:
        self.upstream: list[str] = []
        #: (task_run, state) of upstream runs that did not complete.
        self.not_completed: list[tuple[Any, State]] = []


def resolve_inputs(args: tuple, kwargs: dict, results: dict[int, tuple[Any, Any]] | None,
                   wait_for: Iterable[Any] | None = None) -> Inputs:
    """Wait for futures among the arguments, substitute their results, collect upstream ids."""
    found = Inputs()
    found.args = tuple(_resolve(a, found, results) for a in args) if args else args
    found.kwargs = {k: _resolve(v, found, results) for k, v in kwargs.items()} if kwargs else kwargs
    for item in wait_for or ():
        if isinstance(item, TaskRunFuture):
            _upstream_state(item, found)
        elif type(item) is allow_failure and isinstance(item.unwrap(), TaskRunFuture):
            _upstream_state(item.unwrap(), found, allow_failed=True)
    return found


def submitted_upstream(args: tuple, kwargs: dict, wait_for: list | None) -> list[str]:
    """Ids of the futures passed to a submitted task (arguments, one list level, wait_for), so its
    edges are known while it is still Pending."""
    ids = []
    for value in (*args, *kwargs.values(), *(wait_for or ())):
        if type(value) is allow_failure or type(value) is opaque:
            value = value.unwrap()
        if type(value) is TaskRunFuture:
            ids.append(value.task_run.id)
        elif type(value) in (list, tuple, FutureList):
            ids.extend(v.task_run.id for v in value if type(v) is TaskRunFuture)
    return ids


def _upstream_state(future: TaskRunFuture, found: Inputs, allow_failed: bool = False) -> State:
    state = future.final_state()
    found.upstream.append(future.task_run.id)
    if not allow_failed and not state.is_completed():
        found.not_completed.append((future.task_run, state))
    return state


def _future_value(future: TaskRunFuture, found: Inputs, allow_failed: bool) -> Any:
    """What a future passes to a task: its result; with allow_failure, a failed upstream's exception."""
    state = _upstream_state(future, found, allow_failed)
    if state.is_completed() or allow_failed:
        return state._result(False)
    return None


def _resolve(value: Any, found: Inputs, results: dict[int, tuple[Any, Any]] | None,
             allow_failed: bool = False) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        if results and kind is not bool and value is not None:
            _edge_from_result(value, found, results)
        return value
    if kind is TaskRunFuture:
        return _future_value(value, found, allow_failed)
    if kind is FutureList:
        return [_resolve(v, found, results, allow_failed) for v in value]
    if kind in _ANNOTATIONS:
        return _annotated(value, found, results, allow_failed)
    if results:
        _edge_from_result(value, found, results)
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        if any(type(v) not in _SCALARS for v in value):
            return kind(_resolve(v, found, results, allow_failed) for v in value)
        return value
    if kind is dict:
        if any(type(v) not in _SCALARS for v in value.values()):
            return {k: _resolve(v, found, results, allow_failed) for k, v in value.items()}
        return value
    return value


_ANNOTATIONS = frozenset({allow_failure, quote, opaque, unmapped})


def _annotated(value: BaseAnnotation, found: Inputs, results: dict[int, tuple[Any, Any]] | None,
               allow_failed: bool) -> Any:
    """The value an annotated input passes to the task (see annotations.py)."""
    kind, inner = type(value), value.unwrap()
    if kind is quote:
        return inner
    if kind is opaque:
        return _future_value(inner, found, allow_failed) if type(inner) is TaskRunFuture else inner
    return _resolve(inner, found, results, allow_failed or kind is allow_failure)


def _edge_from_result(value: Any, found: Inputs, results: dict[int, tuple[Any, Any]]) -> None:
    hit = results.get(id(value))
    if hit is not None and hit[0] is value:
        found.upstream.append(hit[1].id)


def resolve_futures_to_states(expr: Any) -> Any:
    """`expr` with every future inside (lists, tuples, sets, dicts; not inside quote()) replaced by
    its final state, waiting for each (Prefect's resolve_futures_to_states)."""
    return _replace_futures(expr, lambda f: f.final_state())


def resolve_futures_to_results(expr: Any) -> Any:
    """`expr` with every future inside replaced by its result; raises if one did not complete."""
    def result(future: TaskRunFuture) -> Any:
        state = future.final_state()
        if not state.is_completed():
            raise RuntimeError(f"At least one result did not complete successfully: task run "
                               f"'{future.task_run.task_name}' ended {state.name}: {state.message}")
        return state._result(True)

    return _replace_futures(expr, result)


def _replace_futures(expr: Any, fn: Any) -> Any:
    if isinstance(expr, TaskRunFuture):
        return fn(expr)
    kind = type(expr)
    if kind in _SCALARS or kind is quote:
        return expr
    if isinstance(expr, (list, tuple, set, frozenset)):
        items = [_replace_futures(v, fn) for v in expr]
        if all(a is b for a, b in zip(items, expr)):
            return expr
        if kind is FutureList:
            return items
        return kind(*items) if hasattr(expr, "_fields") else kind(items)  # namedtuples take fields
    if isinstance(expr, dict):
        pairs = {k: _replace_futures(v, fn) for k, v in expr.items()}
        if all(pairs[k] is v for k, v in expr.items()):
            return expr
        return kind(pairs) if kind is not dict else pairs
    return expr
