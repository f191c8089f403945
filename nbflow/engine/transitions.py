"""The single entry point for state changes: check the table, update the run, record it."""

from __future__ import annotations

from typing import Any

from nbflow.engine.models import FlowRun, TaskRun
from nbflow.engine.states import State, StateType, check_transition, next_state
from nbflow.store.buffer import recorder


def enter_task_state(run: TaskRun, name: str, message: str | None = None, *, data: Any = None,
                     exception: BaseException | None = None) -> State:
    """Move a task run to state `name` and buffer the change for the store."""
    state = next_state(run.state, name, run.history, message=message, data=data, exception=exception)
    _apply(run, state)
    recorder.task_run_state(run)
    return state


def enter_flow_state(run: FlowRun, name: str, message: str | None = None, *, data: Any = None,
                     exception: BaseException | None = None) -> State:
    """Move a flow run to state `name` and buffer the change for the store."""
    state = next_state(run.state, name, run.history, message=message, data=data, exception=exception)
    _apply(run, state)
    recorder.flow_run_state(run)
    return state


def enter_returned_state(run: FlowRun | TaskRun, state: State) -> State:
    """Put a run in a state its code returned (any name, e.g. `Failed(name="BadRows")`)."""
    check_transition(run.state.name if run.state is not None else None, state.name, run.history, state.type)
    _apply(run, state)
    if isinstance(run, TaskRun):
        recorder.task_run_state(run)
    else:
        recorder.flow_run_state(run)
    return state


def _apply(run: FlowRun | TaskRun, state: State) -> None:
    state._run = run
    run.state = state
    run.history.append(state.name)
    run.updated = state.timestamp
    if state.type is StateType.RUNNING and run.start_time is None:
        run.start_time = state.timestamp
    elif state.is_final():
        run.end_time = state.timestamp
        if run.start_time is None:
            run.start_time = state.timestamp
