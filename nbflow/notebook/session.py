"""The notebook's flow runs: one per stretch of execution, as a user runs cells.

Every time the user runs cells — one Shift-Enter, a selection, "Run All", `%nbflow run` — the
%%task cells that run before the kernel goes idle are the task runs of one flow run, named
after the notebook (from `JPY_SESSION_NAME`, which Jupyter sets to the notebook's path). The
run starts with the first %%task cell, is Running while cells execute, and ends as soon as the
kernel has been idle for idle_seconds(): Completed, Failed naming the cell that raised, or
Cancelled when the user interrupted the kernel. A kernel that shuts down (normally, or on
SIGTERM) ends its open run the same way, so no run stays Running for as long as the kernel
lives and a normal shutdown is never Crashed.

A notebook executed by `nbflow run` (or a deployment) gets its flow run id through
`NBFLOW_FLOW_RUN_ID`: the kernel then records every task run under that run and leaves the
flow run's state to the process that owns it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from IPython import get_ipython

from nbflow.engine.context import FlowRunContext
from nbflow.engine.flows import Flow
from nbflow.engine.models import FlowRun, new_run_id
from nbflow.engine.options import legal_flow_name
from nbflow.engine.transitions import enter_flow_state
from nbflow.store.buffer import recorder

DEFAULT_FLOW_NAME = "ipython-session"
#: seconds the kernel stays idle (no cell executing) before its open flow run ends, unless
#: NBFLOW_NOTEBOOK_IDLE_SECONDS says otherwise.
IDLE_SECONDS = 1.0


def idle_seconds() -> float:
    """How long the kernel idles before its open flow run ends (NBFLOW_NOTEBOOK_IDLE_SECONDS)."""
    raw = os.environ.get("NBFLOW_NOTEBOOK_IDLE_SECONDS")
    try:
        return max(float(raw), 0.0) if raw else IDLE_SECONDS
    except ValueError:
        return IDLE_SECONDS


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
    """This kernel's %%task bookkeeping and its open flow run (None between runs)."""

    def __init__(self) -> None:
        self.flow = Flow(_session_body, name=notebook_flow_name())
        external = os.environ.get("NBFLOW_FLOW_RUN_ID")
        #: True when another process (nbflow run, a deployment worker) owns the flow run's state.
        self.adopted = bool(external)
        #: the flow run the next %%task cell joins; None when none is open.
        self.flow_run: FlowRun | None = None
        self.context: FlowRunContext | None = None
        #: task cells run in this kernel, by name, in first-run order (for `%nbflow run`).
        self.cells: dict[str, Any] = {}
        #: variable -> id of the task run of the cell that last wrote it (edges between cells).
        self.producers: dict[str, str] = {}
        self._failed: dict[str, str] = {}  # task cell -> why its last run in the open run failed
        self._error: str | None = None     # a plain cell of the open run that raised
        self._interrupted = False           # the user interrupted the kernel during the open run
        self._lock = threading.Lock()
        self._busy = False                  # a cell is executing
        self._idle_since = 0                # bumped at every cell start: a stale timer does nothing
        self._timer: threading.Timer | None = None
        if external:
            run = FlowRun(external, self.flow.name, parameters={}, created=time.time())
            self._use(run)

    @property
    def busy(self) -> bool:
        """True while a cell executes."""
        return self._busy

    # -- the open flow run -------------------------------------------------------------------

    def begin_cell(self) -> FlowRunContext:
        """The context of the open flow run for a %%task cell, opening a run when none is."""
        with self._lock:
            self._cancel_timer()
            if self.context is None:
                run = FlowRun(new_run_id(), self.flow.name, parameters={}, created=time.time())
                run.run_count = 1
                enter_flow_state(run, "Pending")
                enter_flow_state(run, "Running", "Running notebook cells")
                self._use(run)
                self._failed.clear()
                self._error = None
                self._interrupted = False
            assert self.context is not None
            return self.context

    def cell_finished(self, name: str, state: Any) -> None:
        """Note how a task cell ended, for the open run's final state."""
        with self._lock:
            if state.is_failed() or state.is_crashed() or state.is_cancelled():
                self._failed[name] = f"{state.name}: {state.message}" if state.message else state.name
            else:
                self._failed.pop(name, None)
        recorder.flush_soon()

    def finish(self, message: str | None = None) -> None:
        """End the open flow run now: Failed if a cell of it failed, else Completed."""
        with self._lock:
            self._cancel_timer()
            self._finish_locked(message)

    # -- kernel events ---------------------------------------------------------------------

    def pre_run_cell(self, *args: Any) -> None:
        """IPython event: a cell starts, so the kernel is not idle."""
        with self._lock:
            self._busy = True
            self._idle_since += 1
            self._cancel_timer()

    def post_run_cell(self, result: Any = None) -> None:
        """IPython event: a cell ended; the open run ends unless another cell starts soon."""
        with self._lock:
            self._busy = False
            error = getattr(result, "error_in_exec", None) if result is not None else None
            if isinstance(error, KeyboardInterrupt) and self.context is not None:
                self._interrupted = True
            elif error is not None and self.context is not None and not self._failed and self._error is None:
                self._error = f"A cell raised {type(error).__name__}: {error}"
            if self.context is None or self.adopted:
                return
            generation = self._idle_since
            self._timer = threading.Timer(idle_seconds(), self._idle, (generation,))
            self._timer.daemon = True
            self._timer.start()

    def _idle(self, generation: int) -> None:
        with self._lock:
            if self._busy or generation != self._idle_since:
                return
            self._timer = None
            self._finish_locked(None)

    # -- helpers -----------------------------------------------------------------------------

    def _use(self, run: FlowRun) -> None:
        self.flow_run = run
        self.context = FlowRunContext(self.flow, run, task_runner=None, log_prints=False,
                                      parent=None, is_async=False)

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _finish_locked(self, message: str | None) -> None:
        run = self.flow_run
        if self.adopted or run is None or self.context is None:
            return
        self.context = None
        if run.state is None or run.state.is_final():
            return
        if self._interrupted:
            enter_flow_state(run, "Cancelled", "Interrupted: the kernel was interrupted while a cell ran")
        elif self._failed:
            name, why = next(iter(self._failed.items()))
            more = f" (and {len(self._failed) - 1} more)" if len(self._failed) > 1 else ""
            enter_flow_state(run, "Failed", f"Cell '{name}' ended {why}{more}")
        elif self._error is not None:
            enter_flow_state(run, "Failed", self._error)
        else:
            enter_flow_state(run, "Completed", message)
        recorder.flush_soon()


_session: NotebookSession | None = None
_lock = threading.Lock()


def current_session() -> NotebookSession:
    """This kernel's session (created on first use; its open run ends when the kernel idles or exits)."""
    global _session
    with _lock:
        if _session is None:
            _session = NotebookSession()
            _watch_kernel(_session)
        return _session


def _watch_kernel(session: NotebookSession) -> None:
    """Hook the session to IPython's cell events, the interpreter's exit and SIGTERM."""
    shell = get_ipython()
    if shell is not None:
        shell.events.register("pre_run_cell", session.pre_run_cell)
        shell.events.register("post_run_cell", session.post_run_cell)
    # Before the run-event buffer's own exit flush, which is registered earlier.
    register = getattr(threading, "_register_atexit", atexit.register)
    register(_at_exit)
    _exit_on_sigterm()


_exiting = threading.Event()


def _at_exit() -> None:
    _exiting.set()
    if _session is not None:
        _session.finish("The kernel shut down")


def _exit_on_sigterm() -> None:
    """In a kernel, SIGTERM (what Jupyter sends a kernel that is slow to stop) exits cleanly
    instead of killing the process, so the exit handlers record the open run and flush."""
    if threading.current_thread() is not threading.main_thread() or "ipykernel" not in sys.modules:
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else handles it

    def exit_cleanly(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        if _exiting.is_set():  # already exiting: let the exit handlers finish
            return
        if _session is not None and _session.busy:
            # IPython would catch a SystemExit raised in a running cell and go on: die as before
            # (the run is then marked Crashed, as for a kill).
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_cleanly)
