"""Reading what ran: flow runs, task runs, logs and SQL over the run store, as DataFrames.

Each call first writes this process's buffered run events, so a run that just
finished is always visible.
"""

from __future__ import annotations

from typing import Any

from nbflow.store.backend import current_store
from nbflow.store.buffer import recorder


def flush() -> int:
    """Write buffered run events to the store now; return how many rows were written."""
    return recorder.flush()


def _store() -> Any:
    recorder.flush()
    return current_store()


def runs(flow_name: str | None = None, state: str | list[str] | None = None, limit: int = 100,
         offset: int = 0) -> Any:
    """Flow runs, newest first, as a pandas DataFrame."""
    from nbflow.store import queries

    return queries.runs(_store(), flow_name=flow_name, state=state, limit=limit, offset=offset)


def task_runs(flow_run_id: str | None = None, limit: int | None = None) -> Any:
    """Task runs (of one flow run, or all), newest first, as a pandas DataFrame."""
    from nbflow.store import queries

    return queries.task_runs(_store(), flow_run_id=flow_run_id, limit=limit)


def logs(run_id: str) -> Any:
    """The log lines of a flow run (with its task runs') or of one task run, oldest first."""
    from nbflow.store import queries

    return queries.logs(_store(), run_id)


def flows() -> Any:
    """One row per flow name: how many runs, the last start and its state."""
    from nbflow.store import queries

    return queries.flows(_store())


class FlowRunRecord(dict):
    """A flow run's fields; displayed in a notebook it shows the run graph (a live widget)."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from nbflow.notebook.widgets import RunView

        return RunView(self["id"])._repr_mimebundle_(include=include, exclude=exclude)


def flow_run(run_id: str) -> FlowRunRecord:
    """One flow run as a dict (a unique id prefix is enough); in a notebook it displays its graph."""
    from nbflow.store import queries

    return FlowRunRecord(queries.flow_run(_store(), run_id))


def sql(query: str, params: list[Any] | None = None) -> Any:
    """Run SQL over the run store (tables flow_runs, task_runs, state_history, logs, cache_entries)."""
    return _store().query(query, params)


def deploy(target: Any, name: str, **options: Any) -> dict[str, Any]:
    """Deploy a notebook (`"report.ipynb"`), a `"FILE.py:FLOW"` or a Flow as `name`; re-deploying updates it.

    Options: cron, interval, timezone, parameters, timeout_seconds, work_pool, paused. Without a
    running server the deployment is stored in the embedded store and runs once a server starts.
    """
    from nbflow.deployments.client import deploy as deploy_target

    return deploy_target(target, name, **options)
