"""Run loggers: log lines are stored with their flow or task run and shown on the console.

`get_run_logger()` returns a logger bound to the current run. Every record that
carries a run is appended to the run-event buffer by `StoreHandler`; a console
handler shows them in Prefect's format. With `log_prints=True`, `print()` inside
the run becomes an INFO log line of that run.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import sys
from contextvars import ContextVar
from typing import Any

from nbflow.engine.context import flow_run_context, task_run_context
from nbflow.errors import NbflowError
from nbflow.store.buffer import recorder

_root = logging.getLogger("nbflow")
flow_logger = logging.getLogger("nbflow.flow_runs")
task_logger = logging.getLogger("nbflow.task_runs")


class StoreHandler(logging.Handler):
    """Appends records that belong to a run to the run-event buffer."""

    def emit(self, record: logging.LogRecord) -> None:
        run = getattr(record, "nbflow_run", None)
        if run is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message = message + "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad format string must not break the run
            message = str(record.msg)
        recorder.log(run, record.nbflow_flow_run_id, record.nbflow_task_run_id, record.levelno,
                     record.name, message, record.created)


class _RunLabel(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_label"):
            record.run_label = record.name
        return True


def _configure() -> None:
    if getattr(_root, "_nbflow_configured", False):
        return
    _root._nbflow_configured = True  # type: ignore[attr-defined]
    level = os.environ.get("NBFLOW_LOGGING_LEVEL", "INFO").upper()
    _root.setLevel(level)
    _root.addHandler(StoreHandler())
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(_RunLabel())
    console.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_label)s - %(message)s", "%H:%M:%S"))
    _root.addHandler(console)
    _root.propagate = False


_configure()


class RunLogger(logging.LoggerAdapter):
    """A logger bound to one flow run or task run."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


def flow_run_logger(flow_run: Any) -> RunLogger:
    return RunLogger(flow_logger, {
        "nbflow_run": flow_run, "nbflow_flow_run_id": flow_run.id, "nbflow_task_run_id": None,
        "run_label": f"Flow run '{flow_run.name}' ({flow_run.id[:8]})",
    })


def task_run_logger(task_run: Any) -> RunLogger:
    return RunLogger(task_logger, {
        "nbflow_run": task_run, "nbflow_flow_run_id": task_run.flow_run_id,
        "nbflow_task_run_id": task_run.id,
        "run_label": f"Task run '{task_run.task_name}' ({task_run.id[:8]})",
    })


def get_run_logger() -> RunLogger:
    """The logger of the current task run or flow run; its lines are stored with the run."""
    task_ctx = task_run_context.get()
    if task_ctx is not None:
        return task_run_logger(task_ctx.task_run)
    flow_ctx = flow_run_context.get()
    if flow_ctx is not None:
        return flow_run_logger(flow_ctx.flow_run)
    raise NbflowError(
        "get_run_logger() was called outside a flow or task run, so there is no run to log to. "
        "Call it inside a @flow or @task function, or use logging.getLogger(__name__) here."
    )


# -- log_prints ---------------------------------------------------------------------------

#: True while code of a run with log_prints=True is executing in this context.
log_prints_enabled: ContextVar[bool] = ContextVar("nbflow_log_prints", default=False)
_original_print = builtins.print


def _print(*values: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
           flush: bool = False) -> None:
    if log_prints_enabled.get() and (file is None or file is sys.stdout):
        buffer = io.StringIO()
        _original_print(*values, sep=sep, end="", file=buffer)
        try:
            get_run_logger().info(buffer.getvalue())
            return
        except NbflowError:
            pass
    _original_print(*values, sep=sep, end=end, file=file, flush=flush)


def install_print_hook() -> None:
    """Route print() through the run logger where log_prints is on (installed once, on demand)."""
    if builtins.print is not _print:
        builtins.print = _print


