"""The state machine, without I/O: the transition table and the State API."""

from __future__ import annotations

import pytest

from nbflow.engine.states import (
    STATE_TYPES, TRANSITIONS, InvalidTransitionError, State, StateType, next_state,
)
from nbflow.errors import CrashedRunError, NbflowError

ALLOWED = [
    (None, "Pending"), (None, "Scheduled"), ("Scheduled", "Pending"), ("Pending", "Running"),
    ("Pending", "Cached"), ("Pending", "Failed"), ("Running", "Completed"), ("Running", "Failed"),
    ("Running", "TimedOut"), ("Running", "Crashed"), ("Running", "Cancelled"), ("Running", "Retrying"),
    ("Retrying", "Retrying"), ("Retrying", "Completed"), ("Retrying", "TimedOut"), ("Failed", "Retrying"),
]
REFUSED = [
    (None, "Completed"), ("Pending", "Completed"), ("Running", "Cached"), ("Running", "Pending"),
    ("Completed", "Running"), ("Completed", "Failed"), ("Cached", "Completed"), ("Crashed", "Running"),
    ("Cancelled", "Retrying"),
]


@pytest.mark.parametrize(("frm", "to"), ALLOWED)
def test_allowed_transitions(frm: str | None, to: str) -> None:
    current = State(frm) if frm else None
    assert next_state(current, to).name == to


@pytest.mark.parametrize(("frm", "to"), REFUSED)
def test_refused_transitions_report_history(frm: str | None, to: str) -> None:
    current = State(frm) if frm else None
    with pytest.raises(InvalidTransitionError) as info:
        next_state(current, to, ["Pending", "Running", frm or "?"])
    assert f"{frm} -> {to}" in str(info.value)
    assert "Pending -> Running" in str(info.value)


def test_every_state_has_a_type_and_a_row() -> None:
    assert set(STATE_TYPES) == {"Scheduled", "Pending", "Running", "Completed", "Cached", "Failed",
                                "Crashed", "Cancelled", "Retrying", "TimedOut", "Paused", "Suspended",
                                "Cancelling", "AwaitingRetry", "Late", "AwaitingConcurrencySlot", "Submitting",
                                "InfrastructurePending", "NotReady"}
    # Prefect's other names move through the table as the name of their type.
    assert set(TRANSITIONS) - {None} == set(STATE_TYPES) - {"Suspended", "AwaitingRetry", "Late", "Submitting",
                                                           "AwaitingConcurrencySlot", "InfrastructurePending"}
    for targets in TRANSITIONS.values():
        assert targets <= set(STATE_TYPES)


@pytest.mark.parametrize(("name", "kind", "checks"), [
    ("Completed", StateType.COMPLETED, {"is_completed", "is_final"}),
    ("Cached", StateType.COMPLETED, {"is_completed", "is_final"}),
    ("Failed", StateType.FAILED, {"is_failed", "is_final"}),
    ("TimedOut", StateType.FAILED, {"is_failed", "is_final"}),
    ("Crashed", StateType.CRASHED, {"is_crashed", "is_final"}),
    ("Cancelled", StateType.CANCELLED, {"is_cancelled", "is_final"}),
    ("Running", StateType.RUNNING, {"is_running"}),
    ("Retrying", StateType.RUNNING, {"is_running"}),
    ("Pending", StateType.PENDING, {"is_pending"}),
])
def test_state_predicates(name: str, kind: StateType, checks: set[str]) -> None:
    state = State(name)
    assert state.type is kind and state.name == name
    for check in ("is_completed", "is_failed", "is_crashed", "is_cancelled", "is_final",
                  "is_running", "is_pending"):
        assert getattr(state, check)() is (check in checks), check


def test_result_of_completed_and_failed_states() -> None:
    assert State("Completed", data=42).result() == 42
    error = ValueError("boom")
    failed = State("Failed", "ValueError: boom", exception=error)
    with pytest.raises(ValueError, match="boom"):
        failed.result()
    assert failed.result(raise_on_failure=False) is error
    with pytest.raises(CrashedRunError):
        State("Crashed", "process died").result()
    with pytest.raises(NbflowError, match="Run is in RUNNING state, its result is not available"):
        State("Running").result()
