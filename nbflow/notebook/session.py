"""The notebook session's flow run: every %%task cell run is a task run inside it.

One flow run per kernel, named after the notebook (from `JPY_SESSION_NAME`, which
Jupyter sets to the notebook's path), created on the first %%task cell and finished
when the kernel exits. A notebook executed by `nbflow run` (or a deployment) gets
its flow run id through `NBFLOW_FLOW_RUN_ID`: the kernel then records its task
runs under that run and leaves the flow run's state to the process that owns it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any

from nbflow.engine.context import FlowRunContext
from nbflow.engine.flows import Flow
from nbflow.engine.models import FlowRun, new_run_id
from nbflow.engine.options import legal_flow_name
from nbflow.engine.transitions import enter_flow_state
from nbflow.store.buffer import recorder

DEFAULT_FLOW_NAME = "ipython-session"


def notebook_flow_name(environ: dict[str, str] | None = None) -> str:
    """The session's flow name: the notebook's file name without `.ipynb`, else a default."""
    env = os.environ if environ is None else environ
    explicit = env.get("NBFLOW_FLOW_NAME")
    if explicit:
        return legal_flow_name(explicit)
    session = env.get("JPY_SESSION_NAME")
    if session:
        name = Path(session).name
        return legal_flow_name(name[:-6] if name.endswith(".ipynb") else name)
    return DEFAULT_FLOW_NAME


def _session_body() -> None:
    """Stands for the notebook's cells: the session's flow has no function of its own."""


class NotebookSession:
    """The flow run that groups this kernel's %%task cell runs."""

    def __init__(self) -> None:
        self.flow = Flow(_session_body, name=notebook_flow_name())
        external = os.environ.get("NBFLOW_FLOW_RUN_ID")
        #: True when another process (nbflow run, a deployment worker) owns the flow run's state.
        self.adopted = bool(external)
        run = FlowRun(external or new_run_id(), self.flow.name, parameters={}, created=time.time())
        self.flow_run = run
        self.context = FlowRunContext(self.flow, run, task_runner=None, log_prints=False,
                                      parent=None, is_async=False)
        self.failed_cells: set[str] = set()
        #: task cells run in this kernel, by name, in first-run order (for `%nbflow run`).
        self.cells: dict[str, Any] = {}
        #: variable -> id of the task run of the cell that last wrote it (edges between cells).
        self.producers: dict[str, str] = {}
        if not self.adopted:
            enter_flow_state(run, "Pending")
            enter_flow_state(run, "Running", f"Notebook session of {self.flow.name}")

    def cell_finished(self, name: str, state: Any) -> None:
        """Track which cells failed last, for the session's final state."""
        if state.is_failed() or state.is_crashed():
            self.failed_cells.add(name)
        else:
            self.failed_cells.discard(name)
        recorder.flush_soon()

    def finish(self) -> None:
        """End the session's flow run: Failed if a cell's last run failed, else Completed."""
        run = self.flow_run
        if self.adopted or run.state is None or run.state.is_final():
            return
        if self.failed_cells:
            names = ", ".join(sorted(self.failed_cells))
            enter_flow_state(run, "Failed", f"The last run of cell(s) {names} failed")
        else:
            enter_flow_state(run, "Completed", "Kernel shut down")


_session: NotebookSession | None = None
_lock = threading.Lock()


def current_session() -> NotebookSession:
    """This kernel's session (created on first use, finished at exit)."""
    global _session
    with _lock:
        if _session is None:
            _session = NotebookSession()
            # Before the run-event buffer's own exit flush, which is registered earlier.
            register = getattr(threading, "_register_atexit", atexit.register)
            register(_session.finish)
        return _session
