"""Run states as plain data, and the table of transitions between them.

Pure logic: nothing here does I/O. The engine moves a run from one state to the
next through `next_state`, which refuses transitions the table does not list.
"""

from __future__ import annotations

import enum
import time
from typing import Any

from nbflow.errors import CancelledRunError, CrashedRunError, MissingResultError, NbflowError


class StateType(str, enum.Enum):
    """The coarse kind of a state; several state names share one type."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLED = "CANCELLED"


#: state name -> its type. TimedOut is a kind of Failed; Cached a kind of Completed.
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
}

FINAL_TYPES = frozenset({StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})

_ENDINGS = frozenset({"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"})
#: names of the states a run ends in.
FINAL_STATE_NAMES = _ENDINGS

#: from-state name (None: a new run) -> the state names it may move to.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"Scheduled", "Pending", "Running"}),
    "Scheduled": frozenset({"Pending", "Running", "Cancelled", "Crashed"}),
    "Pending": frozenset({"Running", "Cached", "Failed", "Cancelled", "Crashed"}),
    "Running": _ENDINGS - {"Cached"} | {"Retrying"},
    "Retrying": _ENDINGS - {"Cached"} | {"Retrying"},
    # A finished flow run can be retried as a whole (flow retries) or re-run by a deployment.
    "Failed": frozenset({"Retrying"}),
    "TimedOut": frozenset({"Retrying"}),
    "Completed": frozenset(),
    "Cached": frozenset(),
    "Crashed": frozenset(),
    "Cancelled": frozenset(),
}


class InvalidTransitionError(NbflowError, RuntimeError):
    """The engine asked for a state change the transition table does not allow."""


class State:
    """A run's state: a name, its type, a message, when it was entered, and its result."""

    __slots__ = ("name", "type", "message", "timestamp", "_data", "_exception")

    def __init__(self, name: str, message: str | None = None, *, data: Any = None,
                 exception: BaseException | None = None, timestamp: float | None = None) -> None:
        self.name = name
        self.type = STATE_TYPES[name]
        self.message = message
        self.timestamp = time.time() if timestamp is None else timestamp
        self._data = data
        self._exception = exception

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

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    @property
    def exception(self) -> BaseException | None:
        """The exception that ended the run, for failed, crashed and cancelled states."""
        return self._exception

    @property
    def data(self) -> Any:
        """What the state holds: the result of a completed run, the exception of a failed one."""
        return self._data if self._exception is None else self._exception

    async def aresult(self, raise_on_failure: bool = True) -> Any:
        """As result(), for async code (Prefect's `await state.aresult()`)."""
        return self.result(raise_on_failure=raise_on_failure)

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value; for a failed run, raise its exception (or return it)."""
        if self.type is StateType.COMPLETED:
            return self._data
        error = self._exception or _error_for(self)
        if raise_on_failure:
            raise error
        return error

    def __repr__(self) -> str:
        message = f"message={self.message!r}" if self.message else ""
        return f"{self.name}({message})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.name, self.message, self.timestamp) == (other.name, other.message, other.timestamp)

    __hash__ = object.__hash__


def _error_for(state: State) -> BaseException:
    message = state.message or f"The run ended in state {state.name}."
    if state.type is StateType.CRASHED:
        return CrashedRunError(message)
    if state.type is StateType.CANCELLED:
        return CancelledRunError(message)
    if state.type is StateType.FAILED:
        return NbflowError(message)
    return MissingResultError(
        f"The run is in state {state.name}, which has no result yet; wait for it to finish "
        "(future.wait()) before asking for its result."
    )


def next_state(current: State | None, name: str, history: list[str] | tuple[str, ...] = (),
               **fields: Any) -> State:
    """Return the new state if the table allows `current -> name`, else raise with the history."""
    frm = current.name if current is not None else None
    if name not in TRANSITIONS.get(frm, ()):
        trail = " -> ".join(history) or "(new run)"
        raise InvalidTransitionError(
            f"Invalid state transition {frm} -> {name}; run history: {trail}. "
            "This is a bug in nbflow; please report it with this message."
        )
    return State(name, **fields)


# Constructors with Prefect's names, for flows and tasks that return states explicitly.
def _made(name: str, message: str | None, data: Any, timestamp: float | None = None) -> State:
    if isinstance(data, BaseException) and STATE_TYPES[name] in (StateType.FAILED, StateType.CRASHED,
                                                                 StateType.CANCELLED):
        return State(name, message, exception=data, timestamp=timestamp)  # Prefect keeps it in data
    return State(name, message, data=data, timestamp=timestamp)


def Scheduled(message: str | None = None, data: Any = None, *, scheduled_time: Any = None,  # noqa: N802
              timestamp: float | None = None) -> State:
    """A run to start later (`scheduled_time` is kept as the state's timestamp when it is a number)."""
    when = scheduled_time.timestamp() if hasattr(scheduled_time, "timestamp") else scheduled_time
    return _made("Scheduled", message, data, when if when is not None else timestamp)


def Pending(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Pending", message, data, kw.get("timestamp"))


def Running(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Running", message, data, kw.get("timestamp"))


def Retrying(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Retrying", message, data, kw.get("timestamp"))


def Completed(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Completed", message, data, kw.get("timestamp"))


def Failed(message: str | None = None, exception: BaseException | None = None, *,  # noqa: N802
           data: Any = None, **kw: Any) -> State:
    return _made("Failed", message, exception if exception is not None else data, kw.get("timestamp"))


def TimedOut(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("TimedOut", message, data, kw.get("timestamp"))


def Cancelled(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Cancelled", message, data, kw.get("timestamp"))


def Crashed(message: str | None = None, data: Any = None, **kw: Any) -> State:  # noqa: N802
    return _made("Crashed", message, data, kw.get("timestamp"))


# Helpers with Prefect's names (prefect.states).
def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for; ValueError for any other."""
    if state.type not in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        raise ValueError(f"Expected a failed, crashed or cancelled state; got {state!r}.")
    return state.exception or _error_for(state)


def raise_state_exception(state: State) -> None:
    """Raise the exception of a failed, crashed or cancelled state; do nothing for any other."""
    if state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        raise get_state_exception(state)


def is_state_iterable(value: Any) -> bool:
    """True for a non-empty list, tuple or set holding only states."""
    return isinstance(value, (list, tuple, set, frozenset)) and bool(value) and \
        all(isinstance(v, State) for v in value)


def return_value_to_state(value: Any) -> State:
    """The state a returned value stands for: a state itself; for several states, Completed if all
    completed, else Cancelled or Failed with "n/m states cancelled/failed."; else Completed with it."""
    if isinstance(value, State):
        return value
    if is_state_iterable(value):
        states = list(value)
        cancelled = [s for s in states if s.is_cancelled()]
        failed = [s for s in states if s.is_failed() or s.is_crashed()]
        if cancelled:
            return State("Cancelled", f"{len(cancelled)}/{len(states)} states cancelled.", data=value)
        if failed:
            return State("Failed", f"{len(failed)}/{len(states)} states failed.", data=value)
        if not all(s.is_completed() for s in states):
            return State("Failed", f"{sum(not s.is_final() for s in states)}/{len(states)} states are not "
                         f"final.", data=value)
        return State("Completed", "All states completed.", data=value)
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
