"""Futures of submitted task runs, and how futures and results passed to tasks become edges."""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import queue
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from nbflow.engine.annotations import BaseAnnotation, allow_failure, opaque, quote, unmapped  # noqa: F401
from nbflow.engine.states import State
from nbflow.engine.task_runners import run_now


class PrefectFuture(abc.ABC):
    """A run whose result arrives later (Prefect's interface): `task_run_id`, `state`, `wait()`,
    `result()`, `add_done_callback()`. Subclass it for futures of your own task runner."""

    __slots__ = ("_task_run_id", "_final_state", "__weakref__", "__dict__")  # __dict__: made only if used

    def __init__(self, task_run_id: Any) -> None:
        self._task_run_id = task_run_id
        self._final_state: State | None = None

    def __class_getitem__(cls, params: Any) -> type:
        return cls

    @property
    def task_run_id(self) -> Any:
        return self._task_run_id

    @property
    def state(self) -> State:
        """The run's final state once known, else Pending."""
        return self._final_state if self._final_state is not None else State("Pending")

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Block until the run finishes or `timeout` seconds pass."""

    @abc.abstractmethod
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The run's return value; raises its exception if it failed (unless told not to)."""

    @abc.abstractmethod
    def add_done_callback(self, fn: Callable[["PrefectFuture"], Any]) -> None:
        """Call `fn(future)` when the run finishes."""


class PrefectWrappedFuture(PrefectFuture):
    """A future over another future object (`wrapped_future`) that resolves to the run's state."""

    __slots__ = ("_wrapped_future",)

    def __init__(self, task_run_id: Any, wrapped_future: Any) -> None:
        super().__init__(task_run_id)
        self._wrapped_future = wrapped_future

    @property
    def wrapped_future(self) -> Any:
        return self._wrapped_future

    def add_done_callback(self, fn: Callable[[PrefectFuture], Any]) -> None:
        if self._final_state is not None:
            fn(self)
            return
        self._wrapped_future.add_done_callback(lambda _: fn(self))


class PrefectConcurrentFuture(PrefectWrappedFuture):
    """A future over a `concurrent.futures.Future` whose result is the run's final State."""

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> None:
        _check_timeout(timeout)
        try:
            outcome = self._wrapped_future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return
        if isinstance(outcome, State):
            self._final_state = outcome

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        _check_timeout(timeout)
        if self._final_state is None:
            try:
                outcome = self._wrapped_future.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"Task run {self.task_run_id} did not complete within {timeout} seconds") from None
            if not isinstance(outcome, State):
                return outcome
            self._final_state = outcome
        return self._final_state._result(raise_on_failure)

    @property
    def state(self) -> State:
        if self._final_state is None and self._wrapped_future.done():
            self.wait(0)
        return super().state


class TaskRunFuture(PrefectConcurrentFuture):
    """A task run started with `.submit()` or `.map()`; its result arrives later."""

    __slots__ = ("task_run",)

    def __init__(self, task_run: Any, future: concurrent.futures.Future) -> None:
        self.task_run = task_run
        self._task_run_id = task_run.id
        self._final_state = None
        self._wrapped_future = future  # resolves to the run's final State; never raises

    @property
    def _future(self) -> concurrent.futures.Future:
        return self._wrapped_future

    @property
    def task_run_id(self) -> uuid.UUID:
        """The task run's id as a UUID (as Prefect's); `future.task_run.id` is its hex text."""
        return uuid.UUID(hex=self._task_run_id)

    @property
    def state(self) -> State:
        """The run's current state (its final state once done)."""
        if self._wrapped_future.done():
            return self._wrapped_future.result()
        return self.task_run.state

    def done(self) -> bool:
        return self._wrapped_future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run finishes or `timeout` seconds pass."""
        _check_timeout(timeout)
        if timeout is None:
            run_now(self._wrapped_future)
        concurrent.futures.wait([self._wrapped_future], timeout=timeout)

    def final_state(self, timeout: float | None = None) -> State:
        _check_timeout(timeout)
        if timeout is None:
            run_now(self._wrapped_future)
        try:
            return self._wrapped_future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"Task run {self.task_run.task_name!r} ({self.task_run.id}) did not complete within "
                f"{timeout} seconds; it is still {self.task_run.state.name}."
            ) from None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """The task's return value; raises its exception if it failed (unless told not to)."""
        return self.final_state(timeout)._result(raise_on_failure)

    def __repr__(self) -> str:
        return f"TaskRunFuture({self.task_run.task_name!r}, state={self.state})"


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number; got {timeout!r}.")


class FutureList(list):
    """The futures `.map()` returns, with `.result()` and `.wait()` over all of them
    (Prefect's PrefectFutureList)."""

    def wait(self, timeout: float | None = None) -> None:
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        """Every future's result; with a timeout, one limit for all of them together."""
        _check_timeout(timeout)
        if timeout is None:
            return [f.result(raise_on_failure=raise_on_failure) for f in self]
        deadline = time.monotonic() + timeout
        done = wait(self, timeout=timeout)
        if done.not_done:
            raise TimeoutError(f"Timed out waiting for all futures to complete within {timeout} seconds")
        return [f.result(timeout=max(0.0, deadline - time.monotonic()), raise_on_failure=raise_on_failure)
                for f in self]


PrefectFutureList = FutureList


class DoneAndNotDoneFutures(NamedTuple):
    done: set
    not_done: set


def wait(futures: Iterable[PrefectFuture], timeout: float | None = None) -> DoneAndNotDoneFutures:
    """Wait for futures to finish; return which are done and which are not (after `timeout`)."""
    _check_timeout(timeout)
    futures = list(futures)
    if all(type(f) is TaskRunFuture for f in futures):  # the engine's own: one wait on all of them
        by_inner = {f._wrapped_future: f for f in futures}
        if timeout is None:
            for inner in by_inner:
                run_now(inner)
        done, not_done = concurrent.futures.wait(list(by_inner), timeout=timeout)
        return DoneAndNotDoneFutures({by_inner[f] for f in done}, {by_inner[f] for f in not_done})
    done = {f for f in futures if f._final_state is not None}
    pending = [f for f in futures if f not in done]
    if timeout is None:
        for future in pending:
            future.wait()
        return DoneAndNotDoneFutures(set(futures), set())
    finished = list(as_completed(pending, timeout=timeout, _raise=False))
    done.update(finished)
    return DoneAndNotDoneFutures(done, set(futures) - done)


def as_completed(futures: Iterable[PrefectFuture], timeout: float | None = None,
                 _raise: bool = True) -> Iterator[PrefectFuture]:
    """Yield futures as their runs finish; TimeoutError if some are not done after `timeout`."""
    _check_timeout(timeout)
    futures = list(dict.fromkeys(futures))
    finished: queue.SimpleQueue = queue.SimpleQueue()
    pending = set()
    for future in futures:
        if future._final_state is not None:
            yield future
            continue
        pending.add(future)
        _when_done(future, finished.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        try:
            future = finished.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            if _raise:
                raise TimeoutError(f"{len(pending)} (of {len(futures)}) futures unfinished") from None
            return
        if future in pending:
            pending.discard(future)
            if type(future) is not TaskRunFuture:
                future.wait(0)  # records its final state (a TaskRunFuture reads it from its run)
            yield future


def _when_done(future: PrefectFuture, put: Callable[[PrefectFuture], Any]) -> None:
    """Call put(future) once the run is done: a callback where the future has one we can trust,
    else a thread that waits on it (futures of third-party runners)."""
    if isinstance(future, PrefectWrappedFuture) and hasattr(future._wrapped_future, "add_done_callback") \
            and type(future).wait in (PrefectConcurrentFuture.wait, TaskRunFuture.wait):
        if type(future) is TaskRunFuture:
            run_now(future._wrapped_future)
        future._wrapped_future.add_done_callback(lambda _: put(future))
        return
    threading.Thread(target=lambda: (future.wait(), put(future)), daemon=True,
                     name="nbflow-future-wait").start()


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


def _state_value(state: State, found: Inputs, allow_failed: bool) -> Any:
    """What a State passed to a task gives it: its result, as Prefect resolves states among inputs."""
    if state.run_id is not None:
        found.upstream.append(state.run_id)
    if state.is_completed() or allow_failed:
        return state._result(False)
    found.not_completed.append((_StateSource(state.run_id or "(a state)"), state))
    return None


class _StateSource:
    """Stands for the run of a state passed as an input (for the NotReady message)."""

    __slots__ = ("id", "task_name")

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.task_name = "a state passed as input"


def _resolve(value: Any, found: Inputs, results: dict[int, tuple[Any, Any]] | None,
             allow_failed: bool = False) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        if results and kind is not bool and value is not None:
            _edge_from_result(value, found, results)
        return value
    if kind is TaskRunFuture:
        return _future_value(value, found, allow_failed)
    if kind is State:
        return _state_value(value, found, allow_failed)
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
    def state(future: PrefectFuture) -> State:
        if type(future) is TaskRunFuture:
            return future.final_state()
        future.wait()
        return future.state

    return _replace_futures(expr, state)


def resolve_futures_to_results(expr: Any) -> Any:
    """`expr` with every future inside replaced by its result; raises if one did not complete."""
    def result(future: PrefectFuture) -> Any:
        future.wait()
        if not future.state.is_completed():
            raise Exception("At least one result did not complete successfully")
        return future.result()

    return _replace_futures(expr, result)


def _replace_futures(expr: Any, fn: Any) -> Any:
    if isinstance(expr, PrefectFuture):
        return fn(expr)
    kind = type(expr)
    if kind in _SCALARS or kind is quote:
        return expr
    if dataclasses.is_dataclass(expr) and not isinstance(expr, type):
        values = {f.name: getattr(expr, f.name) for f in dataclasses.fields(expr) if f.init}
        changed = {k: _replace_futures(v, fn) for k, v in values.items()}
        return expr if all(changed[k] is v for k, v in values.items()) else dataclasses.replace(expr, **changed)
    if isinstance(expr, (list, tuple, set, frozenset)):
        items = [_replace_futures(v, fn) for v in expr]
        if kind is FutureList:
            return items
        if all(a is b for a, b in zip(items, expr)):
            return expr
        return kind(*items) if hasattr(expr, "_fields") else kind(items)  # namedtuples take fields
    if isinstance(expr, dict):
        pairs = [(_replace_futures(k, fn), _replace_futures(v, fn)) for k, v in expr.items()]
        if all(k2 is k and v2 is v for (k2, v2), (k, v) in zip(pairs, expr.items())):
            return expr
        return kind(pairs)
    return expr
