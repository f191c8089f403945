"""A flow run created elsewhere (a deployment's run, made by the scheduler and started by a worker)
that the next top-level flow call in this process takes over instead of creating a new one.

So a flow deployment's run is one flow run record: the worker's states and the flow's own,
with the flow's task runs under it. The process that executes the run says which run to adopt
(`adopt_flow_run`); the engine only asks `take_adopted_run()` when a top-level flow starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Iterator

from nbflow.engine.models import FlowRun
from nbflow.engine.states import State

#: the run the next top-level flow call adopts (taken once)
_adopted: contextvars.ContextVar[FlowRun | None] = contextvars.ContextVar("nbflow_adopted_flow_run", default=None)


@contextlib.contextmanager
def adopt_flow_run(run_id: str, *, name: str | None = None, deployment_id: str | None = None,
                   scheduled_time: float | None = None, created: float | None = None,
                   history: tuple[str, ...] = ("Scheduled", "Pending", "Running"),
                   tags: tuple[str, ...] = ("deployment",)) -> Iterator[FlowRun]:
    """Within the block, the first top-level flow call runs as the existing flow run `run_id`,
    which the caller already recorded through the states in `history` (the last is its state now)."""
    run = FlowRun(run_id, name or "", parameters={}, deployment_id=deployment_id, tags=tags,
                  created=created or time.time())
    if name:
        run.name = name
    run.scheduled_time = scheduled_time
    run.history = list(history)  # the store numbers a run's states by position: continue after these
    if history:
        run.state = State(history[-1])
        if run.state.name == "Running":
            run.start_time = run.state.timestamp
    token = _adopted.set(run)
    try:
        yield run
    finally:
        _adopted.reset(token)


def take_adopted_run(flow_name: str, flow_version: str | None, tags: tuple[str, ...]) -> FlowRun | None:
    """The run to adopt for a top-level flow call starting now, if any (each is adopted once)."""
    run = _adopted.get()
    if run is None:
        return None
    _adopted.set(None)
    run.flow_name = flow_name
    if not run.name:
        run.name = flow_name
    run.flow_version = flow_version
    run.tags = tuple(dict.fromkeys((*run.tags, *tags)))
    return run

