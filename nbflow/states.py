"""Prefect-compatible import path: `from nbflow.states import State, Completed, Failed, ...`."""

from nbflow.engine.states import (
    Cancelled, Completed, Crashed, Failed, Pending, Retrying, Running, Scheduled, State, StateType, TimedOut,
    exception_to_crashed_state, exception_to_failed_state, get_state_exception, is_state_iterable,
    raise_state_exception, return_value_to_state,
)

__all__ = [
    "Cancelled", "Completed", "Crashed", "Failed", "Pending", "Retrying", "Running", "Scheduled", "State",
    "StateType", "TimedOut", "exception_to_crashed_state", "exception_to_failed_state", "get_state_exception",
    "is_state_iterable", "raise_state_exception", "return_value_to_state",
]
