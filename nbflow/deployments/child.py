"""The process of one deployment run: `python -m nbflow.deployments.child SPEC.json OUTCOME.json`.

It runs the notebook (papermill) or flow entrypoint that SPEC describes and writes
`{"state", "message"}` to OUTCOME. The parent (`execution.Execution`) reads OUTCOME
after this process ends, so a child that dies before writing it counts as Crashed.
Failed means the run's own content was at fault (a cell or the flow raised, a bad
parameter name, a notebook or flow file that cannot be read); Crashed means the
machinery broke (the kernel died, the kernel named by the notebook is not installed,
papermill or nbflow raised unexpectedly).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib.util
import inspect
import json
import keyword
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# jsonschema (under papermill's nbformat) imports rfc3987_syntax when it is installed, and that
# compiles a grammar for ~1 s: IRI format checks are not needed to run a notebook (as in
# nbflow/server/standalone.py). Must come before papermill is imported.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from nbflow.engine.adoption import adopt_flow_run  # noqa: E402
from nbflow.engine.flows import Flow  # noqa: E402
from nbflow.errors import ParameterBindError  # noqa: E402
from nbflow.store.buffer import recorder  # noqa: E402

#: the module name a flow entrypoint's file is imported under (so its `if __name__ == "__main__"` stays off)
ENTRYPOINT_MODULE = "__nbflow_entrypoint__"

_FLOW_ENDINGS = {"Failed", "TimedOut", "Crashed", "Cancelled"}


def main(argv: list[str] | None = None) -> int:
    """Run the spec in argv[0] and write its outcome to argv[1]; the exit code is 0 once it is written."""
    spec_path, outcome_path = argv if argv is not None else sys.argv[1:3]
    _watch_parent()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    bad = _bad_names(spec.get("parameters") or {})
    if bad:
        state, message = bad
    elif spec.get("kind") == "notebook":
        state, message = run_notebook(spec)
    elif spec.get("kind") == "flow":
        state, message = run_flow(spec)
    else:
        state, message = ("Failed", f"Unknown run kind {spec.get('kind')!r}; a run is a 'notebook' or "
                          "a 'flow'.")
    _write_outcome(Path(outcome_path), state, message)
    recorder.flush_quietly()  # the flow's own run events, before the process exits
    return 0


def _watch_parent(poll: float = 1.0) -> None:
    """End this run (and its kernel) when the worker that started it dies (kill -9, a lost machine):
    the server records such runs Crashed, so nothing may keep running on its behalf."""
    import threading

    # The parent's pid comes from the parent: it may have died before this line runs.
    parent = int(os.environ.get("NBFLOW_PARENT_PID") or os.getppid())

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                import psutil

                for child in psutil.Process().children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        child.kill()
                os._exit(3)
            time.sleep(poll)

    threading.Thread(target=watch, name="nbflow-parent-watch", daemon=True).start()


def _bad_names(parameters: dict[str, Any]) -> tuple[str, str] | None:
    """papermill writes parameter names into the notebook as code: refuse anything but identifiers."""
    bad = [name for name in parameters
           if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name)]
    if not bad:
        return None
    return ("Failed", f"Parameter name(s) {', '.join(map(repr, bad))} are not Python identifiers, so the "
            "run was not started; parameters are variable names such as n_rows or start_date.")


def run_notebook(spec: dict[str, Any]) -> tuple[str, str]:
    """Execute the notebook with papermill into the output path the parent chose."""
    source = Path(spec["notebook"])
    output = Path(spec["output_notebook"])
    if not source.is_file():
        return "Failed", (f"There is no notebook at {source}; it was moved or deleted. Update the "
                          "deployment's notebook path.")
    import nbformat
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import DeadKernelError

    from nbflow.deployments.notebook_runs import failing_cell_message

    output.parent.mkdir(parents=True, exist_ok=True)
    cwd = source.parent
    if spec.get("resume_task_run_id"):
        resumed = _resumed_source(source, output, spec["resume_task_run_id"])
        if isinstance(resumed, tuple):
            return resumed
        source = resumed
    try:
        papermill.execute_notebook(str(source), str(output), parameters=spec.get("parameters") or {},
                                   cwd=str(cwd), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:
        return "Failed", failing_cell_message(exc)
    except DeadKernelError as exc:
        return "Crashed", (f"The notebook's kernel died while running it (nbclient: {exc}): the kernel "
                           "process was killed or crashed, for example it ran out of memory or a C "
                           "extension crashed. The output notebook shows the cells that ran.")
    except NoSuchKernel as exc:
        return "Crashed", (f"NoSuchKernel: {exc}. Install that kernel where the run executes, or change the "
                           "notebook's kernel.")
    except (nbformat.reader.NotJSONError, nbformat.ValidationError, json.JSONDecodeError) as exc:
        return "Failed", f"The notebook {source} could not be read: {type(exc).__name__}: {exc}"
    except Exception as exc:  # papermill or the kernel machinery broke: not the notebook's code
        traceback.print_exc()
        return "Crashed", f"{type(exc).__name__}: {exc}"
    return "Completed", f"Output notebook: {output}"


def _resumed_source(source: Path, output: Path, task_run_id: str) -> Path | tuple[str, str]:
    """A retry from the failed task: the notebook to run instead (restore, then the failed cell on),
    or the Failed outcome saying why it cannot resume."""
    import nbformat

    from nbflow.deployments.resume import ResumeError, resumed_notebook
    from nbflow.store.debug_files import DebugDataError
    from nbflow.store.debug_sync import find

    try:
        manifests = find(task_run_id)
        if not manifests:
            raise DebugDataError(f"the inputs of failed task run {task_run_id} are no longer kept (pruned?)")
        notebook = resumed_notebook(source, manifests[0])
    except (DebugDataError, ResumeError) as exc:
        return "Failed", f"Could not resume at the failed task: {exc}"
    path = output.with_name(output.stem + ".resumed-source.ipynb")
    nbformat.write(notebook, str(path))
    return path


def run_flow(spec: dict[str, Any]) -> tuple[str, str]:
    """Import the entrypoint's file and call its flow (or plain function) with the parameters."""
    path_text, _, name = str(spec["entrypoint"]).rpartition(":")
    path = Path(path_text)
    parameters = spec.get("parameters") or {}
    try:
        module = _load(path)
    except (Exception, SystemExit) as exc:
        traceback.print_exc()
        return "Failed", (f"Could not import the flow file {path}: {type(exc).__name__}: {exc}. Fix the "
                          "error (the run's log has the traceback) or the deployment's entrypoint.")
    target = getattr(module, name, None)
    if target is None:
        found = sorted(k for k, v in vars(module).items() if not k.startswith("_") and (
            isinstance(v, Flow) or inspect.isfunction(v) and v.__module__ == ENTRYPOINT_MODULE))
        return "Failed", (f"{path} has no attribute {name!r}; its functions and flows are: "
                          f"{', '.join(found) or 'none'}. Fix the name after the ':' in the entrypoint.")
    if isinstance(target, Flow) and spec.get("resume_task_run_id"):
        refused = _resume_flow(spec["resume_task_run_id"])
        if refused is not None:
            return refused
    if not callable(target):
        return "Failed", (f"{name!r} in {path} is a {type(target).__name__}, not a flow or function; "
                          "point the entrypoint at a @flow function.")
    # A plain function runs as a flow of that name, as Prefect's workers run it.
    return _call_flow(target if isinstance(target, Flow) else Flow(target), parameters, spec)


def _resume_flow(task_run_id: str) -> tuple[str, str] | None:
    """A retry from the failed task: the task runs whose results fed it give them back (kept with the
    failure) instead of running again; None when set, else the Failed outcome saying why not."""
    from nbflow import api
    from nbflow.debugging.failed_runs import debug
    from nbflow.engine import resume
    from nbflow.store.debug_files import DebugDataError

    try:
        inputs = debug(task_run_id)
    except DebugDataError as exc:
        return "Failed", f"Could not resume at the failed task: {exc}"
    manifest = inputs.manifest
    old = api.task_runs(manifest["flow_run_id"]).sort_values("created")
    order: dict[str, list[str]] = {}
    for task_name, run_id in zip(old["task_name"], old["id"]):  # by name: fixing the code changes its key
        order.setdefault(task_name, []).append(run_id)
    values = {}
    for name, producer in (manifest.get("producers") or {}).items():
        runs = order.get(producer["task_name"], [])
        if name in inputs and producer["task_run_id"] in runs:
            values[(producer["task_name"], runs.index(producer["task_run_id"]))] = (inputs[name], producer["task_run_id"])
    resume.ACTIVE = resume.Resume(values, task_run_id)
    print(f"Resuming at failed task run {task_run_id} ({manifest['task_name']}): {len(values)} upstream "
          "result(s) come from its kept inputs.", flush=True)
    return None


def _call_flow(flow: Flow, parameters: dict[str, Any], spec: dict[str, Any]) -> tuple[str, str]:
    """Call the flow as the deployment's run itself (one record, the flow's task runs under it); map its
    final state."""
    adopted = adopt_flow_run(spec["run_id"], name=spec.get("deployment_name"),
                             deployment_id=spec.get("deployment_id"),
                             scheduled_time=_epoch(spec.get("scheduled_time")), created=_epoch(spec.get("created")))
    try:
        with adopted:
            state = flow(**parameters, return_state=True)
            if inspect.iscoroutine(state):  # an async flow called outside any flow
                state = asyncio.run(state)
    except ParameterBindError as exc:  # parameters the flow does not take (its file changed since deploying)
        return "Failed", str(exc)
    except (Exception, SystemExit) as exc:  # the engine records user errors as states: this is nbflow's
        traceback.print_exc()
        return "Crashed", f"nbflow could not finish flow {flow.name}: {type(exc).__name__}: {exc}"
    if state.is_completed():
        return "Completed", f"Flow {flow.name} completed"
    name = state.name if state.name in _FLOW_ENDINGS else "Failed"
    return name, state.message or f"Flow {flow.name} ended in state {state.name}"


def _epoch(iso: str | None) -> float | None:
    """Epoch seconds of an ISO time from the run's spec ("2026-01-02T03:04:05Z"), None if absent or bad."""
    if not iso:
        return None
    try:
        return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _load(path: Path) -> Any:
    """Import the file as a module, with its directory first on sys.path and as the working directory."""
    if not path.is_file():
        raise FileNotFoundError(f"there is no file {path}")
    directory = str(path.parent)
    sys.path.insert(0, directory)
    os.chdir(directory)
    spec = importlib.util.spec_from_file_location(ENTRYPOINT_MODULE, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[ENTRYPOINT_MODULE] = module  # pickling and dataclasses look classes up here
    spec.loader.exec_module(module)
    return module


def _write_outcome(path: Path, state: str, message: str) -> None:
    """Write then rename, so the parent never reads half an outcome."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"state": state, "message": message}), encoding="utf-8")
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main())
