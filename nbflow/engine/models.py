"""The records the engine keeps for each flow run and task run while it runs them."""

from __future__ import annotations

import os
from typing import Any

from nbflow.engine.states import State


def new_run_id() -> str:
    """A random 128-bit run id as 32 hex digits (cheaper than uuid4, as unique; any 8-digit
    prefix is as good as the whole for telling runs apart in a listing)."""
    return os.urandom(16).hex()


class FlowRun:
    """One execution of a flow; the store keeps a snapshot of these fields."""

    __slots__ = (
        "id", "flow_name", "name", "flow_version", "state", "parameters",
        "parent_flow_run_id", "parent_task_run_id", "deployment_id", "tags", "run_count",
        "scheduled_time", "start_time", "end_time", "created", "updated",
        "output_notebook", "history", "log_seq",
    )

    def __init__(self, id: str, flow_name: str, *, parameters: dict[str, Any],
                 flow_version: str | None = None, parent_flow_run_id: str | None = None,
                 parent_task_run_id: str | None = None, deployment_id: str | None = None,
                 tags: tuple[str, ...] = (), created: float) -> None:
        self.id = id
        self.flow_name = flow_name
        self.name = flow_name
        self.flow_version = flow_version
        self.state: State | None = None
        self.parameters = parameters
        self.parent_flow_run_id = parent_flow_run_id
        self.parent_task_run_id = parent_task_run_id
        self.deployment_id = deployment_id
        self.tags = tags
        self.run_count = 0
        self.scheduled_time: float | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.created = created
        self.updated = created
        self.output_notebook: str | None = None
        #: state names entered so far, for transition errors and the state_history seq.
        self.history: list[str] = []
        self.log_seq = 0

    def __repr__(self) -> str:
        return f"FlowRun(id={self.id!r}, flow_name={self.flow_name!r}, state={self.state!r})"


class TaskRun:
    """One execution of a task (all its retry attempts); snapshotted into the store."""

    __slots__ = (
        "id", "flow_run_id", "task_name", "task_key", "dynamic_key", "state", "upstream",
        "tags", "run_count", "cache_key", "cache_expiration", "result_format", "result_path",
        "start_time", "end_time", "created", "updated", "history", "log_seq", "error", "_name",
        "returned",
    )

    def __init__(self, id: str, flow_run_id: str | None, task_name: str, task_key: str, *,
                 dynamic_key: int | None = None, upstream: list[str] | None = None,
                 tags: tuple[str, ...] = (), created: float) -> None:
        self.id = id
        self.flow_run_id = flow_run_id
        self.task_name = task_name
        self.task_key = task_key
        self.dynamic_key = dynamic_key
        self.state: State | None = None
        #: ids of the task runs whose results or futures this run consumed (dependency edges).
        self.upstream = upstream or []
        self.tags = tags
        self.run_count = 0
        self.cache_key: str | None = None
        self.cache_expiration: float | None = None
        self.result_format: str | None = None
        self.result_path: str | None = None
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.created = created
        self.updated = created
        self.history: list[str] = []
        self.log_seq = 0
        #: "ExcType: message" of the exception that failed the run, if any.
        self.error: str | None = None
        self._name: str | None = None
        #: the state(s) the task's function returned, handed back by a direct call (else None).
        self.returned: Any = None

    @property
    def name(self) -> str:
        """The run's name: its task_run_name, else as Prefect names it (`task-abc` in a flow)."""
        if self._name is not None:
            return self._name
        return f"{self.task_name}-{self.id[:3]}" if self.flow_run_id else self.task_name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id!r}, task_name={self.task_name!r}, state={self.state!r})"
