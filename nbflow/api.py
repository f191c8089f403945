"""Reading what ran: flow runs, task runs, logs and SQL over the run store, as DataFrames.

Each call first writes this process's buffered run events, so a run that just
finished is always visible.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from nbflow.store.backend import using_store
from nbflow.store.buffer import recorder

T = TypeVar("T")


def flush() -> int:
    """Write buffered run events to the store now; return how many rows were written."""
    return recorder.flush()


def _read(query: Callable[[Any], T]) -> T:
    """`query(store)` after writing this process's buffered events (and spooled ones), on the
    store to use now."""
    recorder.send_spooled()
    return using_store(query)


def runs(flow_name: str | None = None, state: str | list[str] | None = None, limit: int = 100,
         offset: int = 0) -> Any:
    """Flow runs, newest first, as a pandas DataFrame."""
    from nbflow.store import queries

    return _read(lambda store: queries.runs(store, flow_name=flow_name, state=state, limit=limit, offset=offset))


def task_runs(flow_run_id: str | None = None, limit: int | None = None) -> Any:
    """Task runs (of one flow run, or all), newest first, as a pandas DataFrame."""
    from nbflow.store import queries

    return _read(lambda store: queries.task_runs(store, flow_run_id=flow_run_id, limit=limit))


def logs(run_id: str) -> Any:
    """The log lines of a flow run (with its task runs') or of one task run, oldest first."""
    from nbflow.store import queries

    return _read(lambda store: queries.logs(store, run_id))


def flows() -> Any:
    """One row per flow name: how many runs, the last start and its state."""
    from nbflow.store import queries

    return _read(queries.flows)


class FlowRunRecord(dict):
    """A flow run's fields; displayed in a notebook it shows the run graph (a live widget)."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from nbflow.notebook.widgets import RunView

        return RunView(self["id"])._repr_mimebundle_(include=include, exclude=exclude)


def flow_run(run_id: str) -> FlowRunRecord:
    """One flow run as a dict (a unique id prefix is enough); in a notebook it displays its graph."""
    from nbflow.store import queries

    return FlowRunRecord(_read(lambda store: queries.flow_run(store, run_id)))


def sql(query: str, params: list[Any] | None = None) -> Any:
    """Run SQL over the run store (tables flow_runs, task_runs, state_history, logs, cache_entries)."""
    return _read(lambda store: store.query(query, params))


def debug(run_id: str, task_name: str | None = None) -> Any:
    """The inputs a failed task run saw, as a dict by name (a @task's arguments, a %%task cell's
    variables): `run_id` is a task run, or a flow run whose first failed task run (or the one named
    `task_name`) is meant; an id or a unique prefix. `.error`, `.traceback`, `.source` describe the failure."""
    from nbflow.debugging.failed_runs import debug as load

    return load(run_id, task_name)


def deploy(target: Any, name: str, **options: Any) -> dict[str, Any]:
    """Deploy a notebook (`"report.ipynb"`), a `"FILE.py:FLOW"` or a Flow as `name`; re-deploying updates it.

    Options: cron, interval, timezone, parameters, timeout_seconds, work_pool, paused. Without a
    running server the deployment is stored in the embedded store and runs once a server starts.
    """
    from nbflow.deployments.client import deploy as deploy_target

    return deploy_target(target, name, **options)
