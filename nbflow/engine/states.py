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


# Constructors with Prefect's names, for flows that return states explicitly.
def Completed(message: str | None = None, data: Any = None) -> State:  # noqa: N802
    return State("Completed", message, data=data)


def Failed(message: str | None = None, exception: BaseException | None = None) -> State:  # noqa: N802
    return State("Failed", message, exception=exception)


def Cancelled(message: str | None = None) -> State:  # noqa: N802
    return State("Cancelled", message)


def Crashed(message: str | None = None) -> State:  # noqa: N802
    return State("Crashed", message)
