"""Keep what a failed task run saw, so `%nbflow debug` can bring the failing moment back.

Called by the task engine once a run has ended Failed or TimedOut, never on success: a
task's bound arguments (or a %%task cell's input variables, and for a notebook run every
variable of its namespace) are written with the ResultStore's formats under
``<home>/debug/<flow_run_id>/<task_run_id>/``, within a size cap; what is not kept is
listed with the reason. A failure to keep them is a warning, never a change of the run's
outcome.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbflow import settings
from nbflow.engine.context import flow_run_context
from nbflow.engine.models import TaskRun
from nbflow.engine.run_logging import task_run_logger
from nbflow.errors import SerializationError, TimedOutError
from nbflow.store import debug_files

_NBFLOW_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: seconds between prunes of old debug data by one process.
_PRUNE_EVERY = 3600.0
#: what a value's file name keeps of its variable name (identifiers may be non-ASCII).
_FILE_NAME = re.compile(r"[^A-Za-z0-9_]")
_pruned_at: float | None = None
_prune_lock = threading.Lock()


@dataclass
class FailedRunCapture:
    """What a failed run of a task or cell offers for debugging."""

    #: "task" (a function's bound arguments) or "cell" (a %%task cell's variables).
    kind: str
    #: the inputs by name: the bound arguments, or the variables the cell reads.
    inputs: dict[str, Any]
    #: further variables of a notebook run's namespace (restored too, listed apart).
    namespace: dict[str, Any] = field(default_factory=dict)
    #: the code that failed: the function's or the cell's source.
    source: str | None = None
    #: the `%%task ...` line of a cell.
    header: str | None = None
    #: file and first line of the code (for a cell, the kernel's file of its code).
    filename: str | None = None
    firstlineno: int = 1
    #: the task's function, kept to re-run it under the debugger.
    function: Any = None
    #: the top-level import lines of the task's file, so its function can be defined again elsewhere.
    imports: list[str] = field(default_factory=list)
    #: argument name -> the task run (in this flow run) whose result it is, for a retry from here.
    producers: dict[str, dict[str, Any]] = field(default_factory=dict)


def task_capture(task: Any, inputs: Any) -> FailedRunCapture:
    """A @task's failed run: its arguments by parameter name, its function and source."""
    fn = task.fn
    code = getattr(fn, "__code__", None)
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = None
    arguments = dict(task.bind(inputs.args, inputs.kwargs))
    return FailedRunCapture("task", arguments, source=source, filename=code.co_filename if code else None,
                            firstlineno=code.co_firstlineno if code else 1, function=fn,
                            imports=_module_imports(code.co_filename if code else None),
                            producers=_producers(arguments))


def _module_imports(filename: str | None) -> list[str]:
    """The `import`/`from ... import` statements at the top level of a task's file."""
    if not filename or not os.path.isfile(filename):
        return []
    try:
        with open(filename, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return []
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def _producers(arguments: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Which arguments are results of earlier task runs of the flow run (as the engine draws edges)."""
    ctx = flow_run_context.get()
    if ctx is None or not ctx.results:
        return {}
    found = {}
    for name, value in arguments.items():
        hit = ctx.results.get(id(value))
        if hit is not None and hit[0] is value:
            upstream = hit[1]
            found[name] = {"task_run_id": upstream.id, "task_key": upstream.task_key,
                           "task_name": upstream.task_name}
    return found


def keep(task: Any, run: TaskRun, inputs: Any, exc: BaseException, state_name: str) -> None:
    """Write the failed run's inputs and failure under its debug folder (unless turned off)."""
    if not settings.keep_failed_inputs():
        return
    try:
        make = getattr(task, "failed_run_capture", None)
        capture = make() if make is not None else task_capture(task, inputs)
        folder, skipped = write(run, task, capture, exc, state_name)
    except Exception as error:  # noqa: BLE001 - keeping inputs must never change how the run ends
        task_run_logger(run).warning("The inputs of this failed run were not kept for debugging: %s: %s",
                                     type(error).__name__, error)
        return
    if skipped:
        listed = "; ".join(f"{s['name']} ({s['reason']})" for s in skipped)
        task_run_logger(run).warning("Kept for debugging without: %s", listed)
    _share(run, folder)
    _prune_now_and_then()


def _share(run: TaskRun, folder: Path) -> None:
    """Send the kept data to the server this process reports to (a worker with its own NBFLOW_HOME), so
    that debugging works where the server runs; it stays here when that fails."""
    try:
        from nbflow.store import debug_sync

        debug_sync.share(folder)
    except Exception as error:  # noqa: BLE001 - sending it must never change how the run ends
        task_run_logger(run).warning(
            "The inputs of this failed run are kept for debugging only on this machine (%s), not on the nbflow "
            "server: %s: %s", folder, type(error).__name__, error)


def write(run: TaskRun, task: Any, capture: FailedRunCapture, exc: BaseException,
          state_name: str) -> tuple[Path, list[dict[str, str]]]:
    """Encode, cap and write the values, then the signed manifest; return the folder and what was skipped."""
    root = _root_flow_run_id(run)
    folder = debug_files.run_folder(root, run.id)
    store = debug_files.value_store(folder)
    cap = settings.failed_inputs_max_bytes()
    skipped: list[dict[str, str]] = []
    modules: dict[str, str] = {}
    encoded = []
    candidates = [(n, v, "input") for n, v in capture.inputs.items()]
    candidates += [(n, v, "namespace") for n, v in capture.namespace.items() if n not in capture.inputs]
    for name, value, role in candidates:
        if isinstance(value, types.ModuleType):
            modules[name] = value.__name__
            continue
        reason, item = _encode(store, value, cap)
        if reason is not None:
            skipped.append({"name": name, "type": _type_name(value), "reason": reason})
        else:
            encoded.append((name, role, _type_name(value), item))
    encoded.sort(key=lambda e: (e[1] != "input", len(e[3][1])))
    values: dict[str, Any] = {}
    total = 0
    for index, (name, role, type_name, (fmt, data, digest, inline)) in enumerate(encoded):
        size = len(data)
        if total + size > cap:
            skipped.append({"name": name, "type": type_name, "reason": (
                f"{size:,} bytes would take the run's debug data past the size cap of {cap:,} bytes "
                "(NBFLOW_FAILED_INPUTS_MAX_BYTES)")})
            continue
        total += size
        path = store.place(data, fmt, digest, f"{index}-{_FILE_NAME.sub('_', name)[:60]}")
        ref = {"format": fmt, "path": os.path.basename(path), "digest": digest}
        values[name] = {"ref": ref, "role": role, "type": type_name, "bytes": size}
    order = {name: i for i, (name, _, _) in enumerate(candidates)}
    values = dict(sorted(values.items(), key=lambda item: order[item[0]]))
    function_ref = _keep_function(store, capture.function)
    manifest = {
        "version": 1, "kind": capture.kind, "task_run_id": run.id, "flow_run_id": run.flow_run_id,
        "root_flow_run_id": root,
        "task_name": run.task_name, "task_key": run.task_key, "state": state_name,
        "qualname": getattr(getattr(task, "fn", None), "__qualname__", run.task_name),
        "error": f"{type(exc).__name__}: {exc}", "exception_type": type(exc).__name__,
        "message": str(exc), "traceback": _user_traceback(exc, capture, run.task_name),
        "raised_at": _raised_at(exc, capture.filename), "source": capture.source, "header": capture.header,
        "filename": capture.filename, "firstlineno": capture.firstlineno, "imports": capture.imports,
        "parameters": list(capture.inputs), "producers": capture.producers, "values": values,
        "modules": modules, "skipped": skipped, "function": function_ref, "size_cap": cap, "failed_at": time.time(),
    }
    debug_files.write_manifest(folder, manifest, store)
    return folder, skipped


def _root_flow_run_id(run: TaskRun) -> str | None:
    """The outermost flow run around the task run (a deployment's or `nbflow run`'s run, whose id this
    process was given), so debugging that run finds failures in the flows it called."""
    given = os.environ.get("NBFLOW_FLOW_RUN_ID")
    if given:
        return given
    ctx = flow_run_context.get()
    if ctx is None:
        return run.flow_run_id
    while ctx.parent is not None:
        ctx = ctx.parent
    return ctx.flow_run.id


def _encode(store: Any, value: Any, cap: int) -> tuple[str | None, Any]:
    """(None, encoded) or (why the value is not kept, None)."""
    estimate = _memory_estimate(value)
    if estimate is not None and estimate > cap:
        return (f"about {estimate:,} bytes in memory, over the size cap of {cap:,} bytes "
                "(NBFLOW_FAILED_INPUTS_MAX_BYTES)"), None
    try:
        return None, store.encode(value)
    except SerializationError as exc:
        cause = exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return f"cannot be stored (cloudpickle: {detail})", None
    except Exception as exc:  # noqa: BLE001 - any value may fail to serialise in its own way
        return f"cannot be stored ({type(exc).__name__}: {exc})", None


def _memory_estimate(value: Any) -> int | None:
    """Bytes a large array-like value holds, known without serialising it (None: not known)."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
        usage = value.memory_usage(index=True, deep=False)
        return int(usage.sum()) if hasattr(usage, "sum") else int(usage)
    nbytes = getattr(value, "nbytes", None)
    return nbytes if isinstance(nbytes, int) else None


def _keep_function(store: Any, fn: Any) -> dict[str, str] | None:
    if fn is None:
        return None
    try:
        fmt, data, digest, _ = store.encode(fn)
    except Exception:  # noqa: BLE001 - then `--pdb` imports it from its file
        return None
    if fmt != "pickle":
        return None
    path = store.place(data, fmt, digest, "__function__")
    return {"format": fmt, "path": os.path.basename(path), "digest": digest}


def _type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _user_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_NBFLOW_DIR)]


def _user_traceback(exc: BaseException, capture: FailedRunCapture, name: str) -> str:
    """The traceback without nbflow's own frames (a timeout's is only its message); a cell's
    frames named after the cell, not the kernel's temporary file."""
    lines = ["Traceback (most recent call last):\n"] if not isinstance(exc, TimedOutError) else []
    if lines:
        frames = _user_frames(exc)
        if capture.kind == "cell":
            for frame in frames:
                if frame.filename == capture.filename:
                    frame.filename = f"<%%task cell {name}>"
        lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def _raised_at(exc: BaseException, filename: str | None) -> dict[str, Any] | None:
    """Where the failing code raised: the innermost frame in the task's own file, else in user code."""
    frames = _user_frames(exc)
    own = [f for f in frames if filename and f.filename == filename]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return None
    return {"filename": frame.filename, "line": frame.lineno, "function": frame.name, "code": frame.line}


def _prune_now_and_then() -> None:
    global _pruned_at
    now = time.monotonic()
    if _pruned_at is not None and now - _pruned_at < _PRUNE_EVERY:
        return
    with _prune_lock:
        if _pruned_at is not None and now - _pruned_at < _PRUNE_EVERY:
            return
        _pruned_at = now
    try:
        debug_files.prune(settings.failed_inputs_days())
    except OSError:
        pass
