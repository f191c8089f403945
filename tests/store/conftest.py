"""Store test helpers: a store on a fresh file, and row builders in records column order."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import nbflow
from nbflow.store import records
from nbflow.store.embedded import EmbeddedStore

HOST = socket.gethostname()
#: PYTHONPATH that lets a child process import the same nbflow as this test run.
NBFLOW_PATH = str(Path(nbflow.__file__).resolve().parent.parent)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [NBFLOW_PATH, env.get("PYTHONPATH")]))
    return env


def flow_run_row(id: str, *, flow_name: str = "etl", state: str = "Completed",
                 state_type: str | None = None, start: float | None = None,
                 parameters: dict | None = None, pid: int | None = None,
                 process_start: float | None = None, host: str = HOST,
                 updated: float | None = None, **overrides: Any) -> tuple:
    """A flow_runs row; Running rows belong to this process unless pid says otherwise."""
    types = {"Completed": "COMPLETED", "Cached": "COMPLETED", "Failed": "FAILED",
             "TimedOut": "FAILED", "Running": "RUNNING", "Retrying": "RUNNING",
             "Pending": "PENDING", "Scheduled": "SCHEDULED", "Crashed": "CRASHED",
             "Cancelled": "CANCELLED"}
    now = time.time()
    start = now - 10 if start is None else start
    final = types[state] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
    values = dict(
        id=id, flow_name=flow_name, name=f"{flow_name}-{id[:6]}", flow_version="1", state=state,
        state_type=state_type or types[state], state_message=None,
        parameters=json.dumps(parameters if parameters is not None else {"n": 1}),
        parent_flow_run_id=None, parent_task_run_id=None, deployment_id=None,
        tags=json.dumps(["nightly"]), run_count=1, scheduled_time=None, start_time=start,
        end_time=start + 2 if final else None, duration_s=2.0 if final else None, host=host,
        pid=os.getpid() if pid is None else pid, process_start=process_start, created=start - 1,
        updated=updated or now, output_notebook=None,
    )
    values.update(overrides)
    assert set(values) == set(records.FLOW_RUN_COLUMNS)
    return tuple(values[c] for c in records.FLOW_RUN_COLUMNS)


def task_run_row(id: str, flow_run_id: str, *, task_name: str = "extract",
                 state: str = "Completed", state_type: str | None = None,
                 start: float | None = None, upstream: list | None = None,
                 **overrides: Any) -> tuple:
    """A task_runs row."""
    now = time.time()
    start = now - 5 if start is None else start
    state_type = state_type or {"Completed": "COMPLETED", "Running": "RUNNING",
                                "Pending": "PENDING", "Failed": "FAILED"}[state]
    final = state_type in ("COMPLETED", "FAILED")
    values = dict(
        id=id, flow_run_id=flow_run_id, task_name=task_name, task_key=f"{task_name}-key",
        dynamic_key=0, state=state, state_type=state_type, state_message=None,
        error="ValueError: boom" if state == "Failed" else None,
        upstream=json.dumps(upstream or []), tags=json.dumps([]), run_count=1, cache_key=None,
        cache_expiration=None, result_format=None, result_path=None, start_time=start,
        end_time=start + 1 if final else None, duration_s=1.0 if final else None,
        created=start, updated=now, name=None,
    )
    values.update(overrides)
    return tuple(values[c] for c in records.TASK_RUN_COLUMNS)


def state_row(run_id: str, seq: int, state: str = "Running", state_type: str = "RUNNING",
              kind: str = "flow") -> tuple:
    return (run_id, seq, kind, state, state_type, None, time.time())


def log_row(run_id: str, seq: int, *, flow_run_id: str, task_run_id: str | None = None,
            message: str = "hello", timestamp: float | None = None) -> tuple:
    return (run_id, seq, flow_run_id, task_run_id, 20, "INFO", "nbflow.test", message,
            time.time() if timestamp is None else timestamp)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    """A store on a new file in tmp_path."""
    return EmbeddedStore(tmp_path / "nbflow.duckdb", lock_timeout=10.0)


@pytest.fixture
def rows() -> Callable:
    """The row builders, as attributes: rows.flow_run(...), rows.task_run(...), ..."""
    class Rows:
        flow_run = staticmethod(flow_run_row)
        task_run = staticmethod(task_run_row)
        state = staticmethod(state_row)
        log = staticmethod(log_row)

    return Rows


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for a child python process that must import this nbflow."""
    return _child_env()
