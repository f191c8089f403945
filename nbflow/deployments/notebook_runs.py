"""Run a notebook as one flow run with papermill: parameters checked, output kept, source untouched.

The notebook executes in a fresh kernel and writes a new output notebook (under
`$NBFLOW_HOME/runs/` unless told otherwise); the source is never modified. The
kernel learns its flow run through `NBFLOW_FLOW_RUN_ID`, so its %%task cells are
task runs of this flow run and flows it calls are child runs. A failing notebook
ends Failed, naming the cell, the exception and its message; a dead kernel ends
Crashed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from nbflow import settings
from nbflow.deployments.notebook_params import check_parameters
from nbflow.engine.models import FlowRun, new_run_id
from nbflow.engine.states import State
from nbflow.engine.transitions import enter_flow_state
from nbflow.store.buffer import recorder


@dataclass
class NotebookRunResult:
    """The outcome of one notebook run."""

    flow_run_id: str
    state: State
    output_notebook: Path


def default_output_path(notebook: Path, run_id: str) -> Path:
    """`$NBFLOW_HOME/runs/<notebook name>/<UTC time>-<run id>.ipynb`."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return settings.home() / "runs" / notebook.stem / f"{stamp}-{run_id[:8]}.ipynb"


def failing_cell_message(exc: Any) -> str:
    """Which cell raised what, from papermill's PapermillExecutionError: the cell's number in the
    output notebook (which also holds papermill's injected-parameters cell) and its first line."""
    first = next((line.strip() for line in (exc.source or "").splitlines() if line.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    where = f"Cell {exc.cell_index + 1} of the output notebook" + (f" (`{first}`)" if first else "")
    return f"{where} raised {exc.ename}: {exc.evalue}"


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kernel_problem(notebook: Path, kernel_name: str | None) -> str | None:
    """Why `notebook` cannot start a kernel (`kernel_name`, else its kernelspec), or None."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    if kernel_name is None:
        try:
            metadata = json.loads(notebook.read_text(encoding="utf-8")).get("metadata") or {}
        except (OSError, ValueError, AttributeError):
            return None  # papermill says what is wrong with the file itself
        kernel_name = (metadata.get("kernelspec") or {}).get("name")
        if not kernel_name:
            return (f"{notebook} does not say which kernel runs it (no kernelspec in its metadata); "
                    f"give one with -k, e.g. -k python3 ({_kernels(KernelSpecManager())}).")
    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return f"There is no kernel named '{kernel_name}'; {_kernels(KernelSpecManager())}."
    return None


def _kernels(manager: Any) -> str:
    names = sorted(manager.find_kernel_specs())
    return f"installed kernels: {', '.join(names)}" if names else "no kernel is installed (pip install ipykernel)"


def run_notebook(notebook: Path | str, parameters: dict[str, Any] | None = None, *,
                 output: Path | str | None = None, flow_name: str | None = None,
                 deployment_id: str | None = None, run_id: str | None = None,
                 kernel_name: str | None = None) -> NotebookRunResult:
    """Execute `notebook` with papermill as one flow run and return how it ended; `kernel_name`
    overrides the notebook's kernelspec (papermill's -k)."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    source = Path(notebook).resolve()
    values = check_parameters(source, parameters or {})
    run = FlowRun(run_id or new_run_id(), flow_name or source.stem, parameters=values,
                  deployment_id=deployment_id, created=time.time())
    out = Path(output).resolve() if output else default_output_path(source, run.id)
    if out == source:
        raise ValueError(f"The output notebook must not be the source notebook ({source}); nbflow never "
                         "modifies the source. Choose another output path.")
    out.parent.mkdir(parents=True, exist_ok=True)
    run.output_notebook = str(out)
    enter_flow_state(run, "Pending")
    enter_flow_state(run, "Running", f"Executing {source.name}")
    try:
        with _environ({"NBFLOW_FLOW_RUN_ID": run.id, "NBFLOW_FLOW_NAME": run.flow_name}):
            papermill.execute_notebook(str(source), str(out), parameters=values, cwd=str(source.parent),
                                       kernel_name=kernel_name, progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:
        message = failing_cell_message(exc)
        state = enter_flow_state(run, "Failed", message, exception=exc)
    except DeadKernelError as exc:
        state = enter_flow_state(run, "Crashed", f"The notebook's kernel died: {exc}", exception=exc)
    except Exception as exc:  # the run ends recorded whatever went wrong; the caller sees the state
        state = enter_flow_state(run, "Crashed", f"{type(exc).__name__}: {exc}", exception=exc)
    else:
        state = enter_flow_state(run, "Completed", f"Output notebook: {out}")
    recorder.flush_quietly()
    return NotebookRunResult(run.id, state, out)
