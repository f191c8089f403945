"""Notebooks, flow files and polling for the deployment tests against a live server."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import nbformat

FINAL = {"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"}
#: a live server whose scheduler, worker and heartbeats run fast enough for tests.
FAST = {"NBFLOW_SCHEDULER_SECONDS": "0.5", "NBFLOW_HEARTBEAT_SECONDS": "0.3", "NBFLOW_HEARTBEAT_TIMEOUT": "4",
        "NBFLOW_WORKER_POLL_SECONDS": "0.3"}


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook with a `parameters` cell and code cells, as Jupyter saves it."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    first = nbformat.v4.new_code_cell(textwrap.dedent(parameters))
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells)]
    nbformat.write(nb, str(path))
    return path


def write_flow_file(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def wait_for(server: Any, run_id: str, states: set[str] = FINAL, timeout: float = 90) -> dict[str, Any]:
    """Poll GET flow_runs/{id} until its state is one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        status, run = server.request("GET", f"flow_runs/{run_id}")
        assert status == 200, run
        if run["state"] in states:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']} after {timeout} s"
        time.sleep(0.2)


def deploy(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    status, deployment = server.request("POST", "deployments", body)
    assert status == 201, deployment
    return deployment


def start_run(server: Any, ref: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    status, run = server.request("POST", f"deployments/{ref}/runs", {"parameters": parameters or {}})
    assert status == 201, run
    return run
