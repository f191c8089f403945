"""Run states as plain data, and the table of transitions between them.

Pure logic: nothing here does I/O. The engine moves a run from one state to the
next through `next_state`, which refuses transitions the table does not list.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import inspect
import sys as _sys
import time
import types as _types
import uuid
from typing import Any

from nbflow.errors import (CancelledRunError, CrashedRunError, FailedRunError, MissingResultError, NbflowError,
                           PausedRunError)


class StateType(str, enum.Enum):
    """The coarse kind of a state; several state names share one type."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


#: state name -> its type. TimedOut is a kind of Failed; Cached a kind of Completed; the rest
#: after Cancelled are Prefect's names, reached when a flow or task returns such a state.
STATE_TYPES: dict[str, StateType] = {
    "Scheduled": StateType.SCHEDULED,
    "Pending": StateType.PENDING,
    "Running": StateType.RUNNING,
    "Retrying": StateType.RUNNING,
    "Completed": StateType.COMPLETED,
    "Cached": StateType.COMPLETED,
    "Failed": StateType.FAILED,
    "TimedOut": StateType.FAILED,
    "Crashed": StateType.CRASHED,
    "Cancelled": StateType.CANCELLED,
    "Paused": StateType.PAUSED,
    "Suspended": StateType.PAUSED,
    "Cancelling": StateType.CANCELLING,
    "AwaitingRetry": StateType.SCHEDULED,
    "AwaitingConcurrencySlot": StateType.SCHEDULED,
    "Late": StateType.SCHEDULED,
    "Submitting": StateType.PENDING,
    "NotReady": StateType.PENDING,
    "InfrastructurePending": StateType.PENDING,
}
#: the name standing for each type in the transition table.
TYPE_NAMES = {StateType.SCHEDULED: "Scheduled", StateType.PENDING: "Pending", StateType.RUNNING: "Running",
              StateType.COMPLETED: "Completed", StateType.FAILED: "Failed", StateType.CRASHED: "Crashed",
              StateType.CANCELLED: "Cancelled", StateType.PAUSED: "Paused", StateType.CANCELLING: "Cancelling"}

FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})

_ENDINGS = frozenset({"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"})
#: names of the states a run ends in.
FINAL_STATE_NAMES = _ENDINGS
_SETTLED = _ENDINGS | {"Paused", "Suspended", "Cancelling"}

#: from-state name (None: a new run) -> the state names it may move to.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"Scheduled", "Pending", "Running"}),
    "Scheduled": frozenset({"Pending", "Running", "Cancelled", "Crashed"}),
    "Pending": frozenset({"Running", "Cached", "Failed", "Cancelled", "Crashed", "NotReady"}),
    "Running": _SETTLED - {"Cached"} | {"Retrying"},
    "Retrying": _SETTLED - {"Cached"} | {"Retrying"},
    # A finished flow run can be retried as a whole (flow retries) or re-run by a deployment.
    "Failed": frozenset({"Retrying"}),
    "TimedOut": frozenset({"Retrying"}),
    "Completed": frozenset(),
    "Cached": frozenset(),
    "Crashed": frozenset(),
    "Cancelled": frozenset(),
    # A task run whose upstream did not complete stays NotReady, as in Prefect 3.
    "NotReady": frozenset(),
    # A flow or task that returned Paused()/Cancelling() stays so; only an end may follow.
    "Paused": frozenset({"Running", "Cancelled", "Crashed", "Failed"}),
    "Cancelling": frozenset({"Cancelled", "Crashed", "Failed", "Completed"}),
}


class InvalidTransitionError(NbflowError, RuntimeError):
    """The engine asked for a state change the transition table does not allow."""


class State:
    """A run's state: a name, its type, a message, when it was entered, and its result.

    `State("Completed")`, or Prefect's `State(type=StateType.FAILED, message=..., data=...)`.
    `run_id` (and Prefect's `state_details`) say whose state it is, once it is a run's own.
    """

    __slots__ = ("name", "type", "message", "timestamp", "_data", "_exception", "_run")

    def __init__(self, name: "str | StateType | None" = None, message: str | None = None, *,
                 type: "StateType | str | None" = None, data: Any = None,  # noqa: A002 - Prefect's name
                 exception: BaseException | None = None, timestamp: float | None = None) -> None:
        if isinstance(name, StateType):
            name, type = None, name
        if type is not None:
            type = StateType(type.upper() if isinstance(type, str) else type)
            name = name or TYPE_NAMES[type]
        elif name in STATE_TYPES:
            type = STATE_TYPES[name]
        else:
            raise ValueError(f"Unknown state {name!r}: give one of {', '.join(STATE_TYPES)}, or type=StateType.X "
                             "for a state of your own name.")
        self.name = name
        self.type = type
        self.message = message
        self.timestamp = time.time() if timestamp is None else timestamp
        if exception is None and isinstance(data, BaseException) and type in _EXCEPTION_TYPES:
            data, exception = None, data  # Prefect keeps a failure's exception in data
        self._data = data
        self._exception = exception
        #: the FlowRun or TaskRun whose state this is (set by the engine's transitions).
        self._run: Any = None

    @property
    def run_id(self) -> str | None:
        """The id of the run whose state this is (None for a state user code made and no run entered)."""
        return self._run.id if self._run is not None else None

    @property
    def state_details(self) -> "StateDetails":
        """Prefect's details of a state: the flow run and task run it belongs to, the cache key and
        its expiry, when a flow run was scheduled for."""
        run = self._run
        if run is None:
            return StateDetails()
        if hasattr(run, "task_key"):
            return StateDetails(flow_run_id=_uuid(run.flow_run_id), task_run_id=_uuid(run.id),
                                cache_key=run.cache_key, cache_expiration=_datetime(run.cache_expiration))
        return StateDetails(flow_run_id=_uuid(run.id), scheduled_time=_datetime(run.scheduled_time))

    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    @property
    def exception(self) -> BaseException | None:
        """The exception that ended the run, for failed, crashed and cancelled states."""
        return self._exception

    @property
    def data(self) -> Any:
        """What the state holds: the result of a completed run, the exception of a failed one
        (for a state standing for several, the states)."""
        return self._data if self._data is not None or self._exception is None else self._exception

    async def aresult(self, raise_on_failure: bool = True) -> Any:
        """As result(), for async code (Prefect's `await state.aresult()`)."""
        return self._result(raise_on_failure)

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed run, raise its exception (or return it).

        Called from async code (an `async def`, or a notebook cell that awaits) it returns an
        awaitable, as Prefect 3 does; from sync code, also in a notebook, the value itself.
        """
        if _sys._getframe(1).f_code.co_flags & _ASYNC_CODE:
            return self.aresult(raise_on_failure)
        return self._result(raise_on_failure)

    def _result(self, raise_on_failure: bool) -> Any:
        if self.type is StateType.COMPLETED:
            if self._data.__class__ is StoredResult:
                return self._data.get()
            return self._data
        if self.type in _EXCEPTION_TYPES:
            if raise_on_failure:
                raise get_state_exception(self)
            return self.data if self.data is not None else _error_for(self)
        if self.type is StateType.PAUSED:
            raise PausedRunError(f"Run is in {self.name} state, its result is not available.")
        error = _error_for(self)
        if raise_on_failure:
            raise error
        return error

    def __str__(self) -> str:
        """Prefect's short form, used in log lines: `Completed()`, `Failed('boom')`, `Cached(type=COMPLETED)`."""
        parts = [repr(self.message)] if self.message else []
        if self.type.value != self.name.upper():
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self) -> str:
        """Prefect's full form: `Completed(message=None, type=COMPLETED, result=42)`."""
        return f"{self.name}(message={self.message!r}, type={self.type.value}, result={_short(self.data)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.name, self.message, self.timestamp) == (other.name, other.message, other.timestamp)

    __hash__ = object.__hash__


@dataclasses.dataclass(frozen=True)
class StateDetails:
    """Prefect's `state.state_details`, with its field names; nbflow fills the runs' ids, the cache key
    and expiry and the scheduled time (the pause and server fields stay at Prefect's defaults)."""

    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None
    child_flow_run_id: uuid.UUID | None = None
    scheduled_time: datetime.datetime | None = None
    cache_key: str | None = None
    cache_expiration: datetime.datetime | None = None
    deferred: bool | None = None
    untrackable_result: bool = False
    pause_timeout: datetime.datetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    refresh_cache: bool | None = None
    retriable: bool | None = None
    transition_id: uuid.UUID | None = None
    task_parameters_id: uuid.UUID | None = None
    traceparent: str | None = None


def _uuid(run_id: str | None) -> uuid.UUID | None:
    return uuid.UUID(hex=run_id) if run_id else None


def _datetime(epoch: float | None) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc) if epoch is not None else None


class StoredResult:
    """A result kept only in result storage (``cache_result_in_memory=False``): ``result()``
    reads it back each time, as Prefect does."""

    __slots__ = ("_read",)

    def __init__(self, read: Any) -> None:
        self._read = read

    def get(self) -> Any:
        """The result, read from storage."""
        return self._read()

    def __repr__(self) -> str:
        return "StoredResult()"


_EXCEPTION_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
#: the exception standing for a failed, crashed or cancelled run without one of its own.
_WRAPPERS = {StateType.FAILED: (FailedRunError, "Run failed."), StateType.CRASHED: (CrashedRunError, "Run crashed."),
             StateType.CANCELLED: (CancelledRunError, "Run cancelled.")}
#: code flags of `async def` bodies and of notebook cells run with top-level await.
_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _error_for(state: State) -> BaseException:
    if state.type in _WRAPPERS:
        wrapper, default = _WRAPPERS[state.type]
        return wrapper(state.message or default)
    return MissingResultError(
        f"Run is in {state.type.value} state, its result is not available (state {state.name}"
        f"{': ' + state.message if state.message else ''}); wait for it to finish (future.wait()) before asking "
        "for its result.")


def next_state(current: State | None, name: str, history: list[str] | tuple[str, ...] = (),
               **fields: Any) -> State:
    """Return the new state if the table allows `current -> name`, else raise with the history."""
    frm = current.name if current is not None else None
    check_transition(frm, name, history)
    return State(name, **fields)


def check_transition(frm: str | None, to: str, history: list[str] | tuple[str, ...] = (),
                     to_type: StateType | None = None) -> None:
    """Raise InvalidTransitionError unless the table allows `frm -> to` (a state of a name of its
    own, as user code may return, moves as the name of its type)."""
    if frm is not None and frm not in TRANSITIONS:
        frm = TYPE_NAMES[STATE_TYPES.get(frm, StateType.RUNNING)]
    if to not in STATE_TYPES and to_type is not None:
        to = TYPE_NAMES[to_type]
    if to not in TRANSITIONS.get(frm, ()):
        trail = " -> ".join(history) or "(new run)"
        raise InvalidTransitionError(
            f"Invalid state transition {frm} -> {to}; run history: {trail}. "
            "This is a bug in nbflow; please report it with this message."
        )


# Constructors with Prefect's names, for flows and tasks that return states explicitly:
# `Completed(data=42)`, `Failed(message="bad row", data=exc)`, `Failed(name="MyFailure")`.
def _made(kind: str, message: str | None, data: Any, name: str | None = None,
          timestamp: float | None = None) -> State:
    return State(name or kind, message, type=STATE_TYPES[kind], data=data, timestamp=timestamp)


def Scheduled(message: str | None = None, data: Any = None, *, scheduled_time: Any = None,  # noqa: N802
              name: str | None = None, timestamp: float | None = None) -> State:
    """A run to start later (`scheduled_time` is kept as the state's timestamp)."""
    when = scheduled_time.timestamp() if hasattr(scheduled_time, "timestamp") else scheduled_time
    return _made("Scheduled", message, data, name, when if when is not None else timestamp)


def Pending(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
            timestamp: float | None = None) -> State:
    return _made("Pending", message, data, name, timestamp)


def Running(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
            timestamp: float | None = None) -> State:
    return _made("Running", message, data, name, timestamp)


def Retrying(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
             timestamp: float | None = None) -> State:
    return _made("Retrying", message, data, name, timestamp)


def AwaitingRetry(message: str | None = None, data: Any = None, *, scheduled_time: Any = None,  # noqa: N802
                  name: str | None = None, timestamp: float | None = None) -> State:
    return Scheduled(message, data, scheduled_time=scheduled_time, name=name or "AwaitingRetry",
                     timestamp=timestamp)


def Late(message: str | None = None, data: Any = None, *, scheduled_time: Any = None,  # noqa: N802
         name: str | None = None, timestamp: float | None = None) -> State:
    return Scheduled(message, data, scheduled_time=scheduled_time, name=name or "Late", timestamp=timestamp)


def AwaitingConcurrencySlot(message: str | None = None, data: Any = None, *,  # noqa: N802
                            scheduled_time: Any = None, name: str | None = None,
                            timestamp: float | None = None) -> State:
    return Scheduled(message, data, scheduled_time=scheduled_time, name=name or "AwaitingConcurrencySlot",
                     timestamp=timestamp)


def Submitting(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
               timestamp: float | None = None) -> State:
    return _made("Pending", message, data, name or "Submitting", timestamp)


def InfrastructurePending(message: str | None = None, data: Any = None, *,  # noqa: N802
                          name: str | None = None, timestamp: float | None = None) -> State:
    return _made("Pending", message, data, name or "InfrastructurePending", timestamp)


def Completed(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
              timestamp: float | None = None) -> State:
    return _made("Completed", message, data, name, timestamp)


def Failed(message: str | None = None, exception: BaseException | None = None, *,  # noqa: N802
           data: Any = None, name: str | None = None, timestamp: float | None = None) -> State:
    return _made("Failed", message, exception if exception is not None else data, name, timestamp)


def TimedOut(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
             timestamp: float | None = None) -> State:
    return _made("TimedOut", message, data, name, timestamp)


def Cancelled(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
              timestamp: float | None = None) -> State:
    return _made("Cancelled", message, data, name, timestamp)


def Cancelling(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
               timestamp: float | None = None) -> State:
    return _made("Cancelling", message, data, name, timestamp)


def Crashed(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
            timestamp: float | None = None) -> State:
    return _made("Crashed", message, data, name, timestamp)


def Paused(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
           timestamp: float | None = None) -> State:
    """A paused run. nbflow has no resume: a flow that returns Paused() stays paused (see README)."""
    return _made("Paused", message, data, name, timestamp)


def Suspended(message: str | None = None, data: Any = None, *, name: str | None = None,  # noqa: N802
              timestamp: float | None = None) -> State:
    return _made("Suspended", message, data, name, timestamp)


# Helpers with Prefect's names (prefect.states).
def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for, by Prefect's rules: its
    exception; for a state holding states, the first failed one's; for text or nothing, a
    FailedRun/CrashedRun/CancelledRun with it; ValueError for any other kind of state."""
    wrapper, default = _WRAPPERS.get(state.type, (None, None))
    if wrapper is None:
        raise ValueError(f"Expected failed or crashed state got {state!r}.")
    if state._exception is not None:
        return state._exception
    held = state._data
    if held is None:
        return wrapper(state.message or default)
    if isinstance(held, str):
        return wrapper(held)
    if isinstance(held, State):
        return get_state_exception(held)
    if is_state_iterable(held):
        for inner in held:
            if inner.type in _EXCEPTION_TYPES:
                return get_state_exception(inner)
        raise ValueError("Failed state result was an iterable of states but none were failed.")
    raise TypeError(f"Unexpected result for failed state: {held!r} —— {type(held).__name__} cannot be resolved "
                    "into an exception")


def raise_state_exception(state: State) -> Any:
    """Raise the exception of a failed, crashed or cancelled state; do nothing for any other
    (from async code, an awaitable that does so, as Prefect's)."""
    if _sys._getframe(1).f_code.co_flags & _ASYNC_CODE:
        return araise_state_exception(state)
    if state.type in _EXCEPTION_TYPES:
        raise get_state_exception(state)
    return None


async def araise_state_exception(state: State) -> None:
    """As raise_state_exception(), awaited."""
    if state.type in _EXCEPTION_TYPES:
        raise get_state_exception(state)


def is_state_iterable(value: Any) -> bool:
    """True for a non-empty list, tuple or set holding only states."""
    return isinstance(value, (list, tuple, set, frozenset)) and bool(value) and \
        all(isinstance(v, State) for v in value)


def return_value_to_state(value: Any) -> State:
    """The state a run's return value puts it in, by Prefect's rules: a state made by user code as
    it is; a run's state, or several states, by the aggregate rule ("2/3 states failed.", Cancelled
    and Paused first); a generator as a list; anything else Completed with it."""
    if isinstance(value, State) and value.run_id is None:
        return value
    if isinstance(value, State) or is_state_iterable(value):
        states = [value] if isinstance(value, State) else list(value)
        total = len(states)
        count = {t: sum(s.type is t for s in states) for t in (StateType.CANCELLED, StateType.PAUSED)}
        failed = sum(s.type in (StateType.FAILED, StateType.CRASHED) for s in states)
        if all(s.is_completed() for s in states):
            return State("Completed", "All states completed.", data=value)
        if count[StateType.CANCELLED]:
            return State("Cancelled", f"{count[StateType.CANCELLED]}/{total} states cancelled.", data=value)
        if count[StateType.PAUSED]:
            return State("Paused", f"{count[StateType.PAUSED]}/{total} states paused.", data=value)
        if failed:
            return State("Failed", f"{failed}/{total} states failed.", data=value)
        not_final = sum(not s.is_final() for s in states)
        return State("Failed", f"{not_final}/{total} states are not final.", data=value)
    if isinstance(value, _types.GeneratorType):
        value = list(value)
    return State("Completed", data=value)


def exception_to_failed_state(exc: BaseException | None = None, message: str | None = None) -> State:
    """A Failed state for an exception raised by user code (the one being handled when None)."""
    import sys

    exc = exc if exc is not None else sys.exc_info()[1]
    if exc is None:
        raise ValueError("exception_to_failed_state() needs an exception: none is being handled here.")
    return State("Failed", message or f"{type(exc).__name__}: {exc}", exception=exc)


def exception_to_crashed_state(exc: BaseException) -> State:
    """A Crashed state for an exception that broke the process or infrastructure (not user code)."""
    if isinstance(exc, KeyboardInterrupt):
        message = "Execution was aborted by an interrupt signal."
    elif isinstance(exc, SystemExit):
        message = "Execution was aborted by Python system exit call."
    else:
        message = f"Execution was interrupted by an unexpected exception: {type(exc).__name__}: {exc}"
    return State("Crashed", message, exception=exc)


class StateList(list):
    """What a flow that returned `.map()` futures hands back: their final states (as Prefect's
    future list holding states), with the `.result()` and `.wait()` the futures had."""

    def wait(self, timeout: float | None = None) -> None:
        """Nothing to wait for: every state in the list is final."""

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        return [state._result(raise_on_failure) for state in self]


class StateGroup:
    """Counts over several states, as Prefect's `StateGroup` (how many failed, are final, ...)."""

    def __init__(self, states: list[State]) -> None:
        self.states = states
        self.type_counts: dict[StateType, int] = collections.Counter(s.type for s in states)
        self.total_count = len(states)
        self.cancelled_count = self.type_counts[StateType.CANCELLED]
        self.paused_count = self.type_counts[StateType.PAUSED]
        self.final_count = sum(s.is_final() for s in states)
        self.not_final_count = self.total_count - self.final_count

    @property
    def fail_count(self) -> int:
        return self.type_counts[StateType.FAILED] + self.type_counts[StateType.CRASHED]

    def all_completed(self) -> bool:
        return self.type_counts[StateType.COMPLETED] == self.total_count

    def any_cancelled(self) -> bool:
        return self.cancelled_count > 0

    def any_failed(self) -> bool:
        return self.fail_count > 0

    def any_paused(self) -> bool:
        return self.paused_count > 0

    def all_final(self) -> bool:
        return self.final_count == self.total_count

    def counts_message(self) -> str:
        """`total=4, not_final=1, 'FAILED'=1, ...`"""
        parts = [f"total={self.total_count}"]
        if self.not_final_count:
            parts.append(f"not_final={self.not_final_count}")
        parts += [f"{kind.value!r}={n}" for kind, n in self.type_counts.items() if n]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"StateGroup<{self.counts_message()}>"
