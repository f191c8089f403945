"""Prefect-compatible import path: `from nbflow.states import State, Completed, Failed, ...`."""

from nbflow.engine.states import (
    AwaitingConcurrencySlot, AwaitingRetry, Cancelled, Cancelling, Completed, Crashed, Failed, InfrastructurePending,
    Late, Paused, Pending, Retrying, Running, Scheduled, State, StateGroup, StateType, Submitting, Suspended, TimedOut,
    exception_to_crashed_state, exception_to_failed_state,
    get_state_exception, is_state_iterable, raise_state_exception, return_value_to_state,
)

__all__ = [
    "AwaitingConcurrencySlot", "AwaitingRetry", "Cancelled", "Cancelling", "Completed", "Crashed", "Failed",
    "InfrastructurePending", "Late", "Paused", "Pending", "Retrying", "Running", "Scheduled", "State", "StateGroup",
    "StateType", "Submitting", "Suspended", "TimedOut",
    "exception_to_crashed_state", "exception_to_failed_state", "get_state_exception", "is_state_iterable",
    "raise_state_exception", "return_value_to_state",
]
