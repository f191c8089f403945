"""Run a %%task cell as a task run: retries, timeout, caching, output replay, clean tracebacks."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import inspect
import logging
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any

from nbflow.engine import caching
from nbflow.engine.calls import run_coro_sync
from nbflow.engine.context import FlowRunContext, flow_run_context
from nbflow.engine.failed_inputs import FailedRunCapture
from nbflow.engine.states import State
from nbflow.engine.tasks import Task
from nbflow.errors import FingerprintError
from nbflow.notebook.capture import OutputCapture, replay
from nbflow.notebook.cell_analysis import CellNames, analyze, free_callables
from nbflow.notebook.cell_cache import CellCachePolicy, input_fingerprints
from nbflow.notebook.cell_results import CellResult, CellResultStorage, ShownValue
from nbflow.notebook.session import current_session
from nbflow.store.buffer import recorder

#: Names IPython keeps in the user namespace that are never a cell's data inputs.
IGNORED_NAMES = frozenset({"In", "Out", "_", "__", "___", "_ih", "_oh", "_dh", "get_ipython",
                           "exit", "quit", "_i", "_ii", "_iii"})


@dataclass
class CellOptions:
    """What the %%task line asked for."""

    name: str | None = None
    retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None
    cache: bool = False
    cache_expiration: dt.timedelta | None = None
    inputs: frozenset[str] | None = None
    outputs: frozenset[str] | None = None
    #: False (`--no-keep`): a failed run keeps none of its variables for `%nbflow debug`.
    keep_failed_inputs: bool = True
    #: the `%%task ...` line as typed, so `%nbflow debug` can hand the cell back whole.
    line: str = ""


@dataclass(eq=False)
class CellRecord:
    """A task cell this kernel has run: what `%nbflow run` re-runs when it is stale."""

    name: str
    source: str
    options: CellOptions
    inputs: frozenset[str]
    outputs: frozenset[str]
    last_key: str | None = None
    last_state: str | None = None
    history: list[str] = field(default_factory=list)


class CellTask(Task):
    """The task of one %%task cell run: its edges come from the cells that made its inputs."""

    def __init__(self, fn: Any, *, upstream: list[str], **options: Any) -> None:
        super().__init__(fn, **options)
        self.cell_upstream = upstream
        self.last_run: Any = None
        #: what a failed run keeps: set by run_cell (the namespace, the cell's code and inputs).
        self.debug: dict[str, Any] = {}
        #: the input variables as the cell found them, taken (by reference) as it starts.
        self.seen: dict[str, Any] = {}

    def failed_run_capture(self) -> FailedRunCapture:
        """A failed cell keeps the variables it read and, in a notebook run, the whole namespace."""
        debug = self.debug
        namespace = debug["namespace"]
        extra = {}
        if debug["whole_namespace"]:
            hidden = debug["hidden"]  # what IPython put there itself (open, exit, In...)
            extra = {n: v for n, v in namespace.items() if not n.startswith("_") and n not in IGNORED_NAMES
                     and n not in self.seen and not (n in hidden and hidden[n] is v)}
        return FailedRunCapture("cell", dict(self.seen), extra, source=debug["source"], header=debug["header"],
                                filename=debug["filename"])

    def _new_run(self, flow_ctx: Any, dynamic_key: int | None = None) -> Any:
        run = super()._new_run(flow_ctx, dynamic_key)
        run.upstream = list(self.cell_upstream)
        self.last_run = run
        return run


def cell_name(options: CellOptions, names: CellNames, execution_count: int | None) -> str:
    """The cell's task name: given, else from what it defines, else its execution count."""
    if options.name:
        return options.name
    outputs = sorted(options.outputs if options.outputs is not None else names.outputs)
    if outputs:
        shown = ", ".join(outputs[:3]) + (", ..." if len(outputs) > 3 else "")
        return f"cell[{shown}]"
    return f"cell-{execution_count or 0}"


@dataclass
class PreparedCell:
    """A cell's code and names, worked out before it runs."""

    python_source: str
    names: CellNames
    inputs: frozenset[str]
    outputs: frozenset[str]
    policy: CellCachePolicy


def prepare_cell(shell: Any, source: str, options: CellOptions) -> PreparedCell:
    """Analyse a cell against the current namespace: its inputs, outputs and cache policy."""
    python_source = shell.transform_cell(source)
    names = analyze(source)
    namespace = shell.user_ns
    if options.inputs is not None:
        inputs = options.inputs
    else:
        inputs = frozenset(n for n in names.inputs if n in namespace and n not in IGNORED_NAMES)
    outputs = options.outputs if options.outputs is not None else names.outputs
    called = free_callables(source) | frozenset(n for n in names.inputs if n in namespace)
    policy = CellCachePolicy(python_source, namespace, inputs, called)
    return PreparedCell(python_source, names, inputs, outputs, policy)


def run_cell(shell: Any, source: str, options: CellOptions,
             flow_context: FlowRunContext | None = None) -> State:
    """Execute `source` in the user namespace as a task run of the session (or given) flow run."""
    prepared = prepare_cell(shell, source, options)
    python_source, names, policy = prepared.python_source, prepared.names, prepared.policy
    inputs, outputs = prepared.inputs, prepared.outputs
    namespace = shell.user_ns
    name = cell_name(options, names, shell.execution_count)
    code, last_expression = _compile(shell, python_source)
    deleted = sorted(names.deleted)

    capture = OutputCapture(shell)

    def execute() -> CellResult:
        capture.reset()
        task.seen = {n: namespace[n] for n in inputs if n in namespace}
        _run_code(code, namespace)
        value = shown = None
        if last_expression is not None:  # the cell's Out[n], as a plain cell's (kept for a cache hit)
            value = _run_code(last_expression, namespace)
            if value is not None and options.cache:
                shown = _jsonable_bundle(*shell.display_formatter.format(value))
        kept = {n: namespace[n] for n in sorted(outputs) if n in namespace}
        stdout, stderr, displays = capture.snapshot()
        return CellResult(kept, deleted, stdout, stderr, displays, shown, value)

    execute.__qualname__ = execute.__name__ = name
    key_before = None if options.cache else policy.key_or_none()  # for %nbflow run's staleness
    session = current_session()
    upstream = sorted({session.producers[n] for n in inputs if n in session.producers})
    task = CellTask(execute, upstream=upstream, name=name, retries=options.retries,
                    retry_delay_seconds=options.retry_delay, timeout_seconds=options.timeout,
                    cache_policy=policy if options.cache else None,
                    cache_expiration=options.cache_expiration, keep_failed_inputs=options.keep_failed_inputs)
    task.task_key = f"cell:{name}"
    task.debug = {"namespace": namespace, "whole_namespace": session.adopted, "source": source,
                  "hidden": getattr(shell, "user_ns_hidden", {}),
                  "header": f"%%task {options.line}".rstrip(), "filename": code.co_filename}
    task.result_store = CellResultStorage(caching.result_store())

    context = flow_context or session.begin_cell()
    token = flow_run_context.set(context)
    try:
        with capture:
            state = task(return_state=True)
    finally:
        flow_run_context.reset(token)

    if state.name != "Cached" and task.last_run is not None:
        _record_output(task.last_run, *capture.snapshot()[:2])

    record = session.cells.get(name)
    if record is None:
        record = session.cells[name] = CellRecord(name, source, options, inputs, outputs)
    record.source, record.options, record.inputs, record.outputs = source, options, inputs, outputs
    record.last_state = state.name
    record.history.append(state.name)
    session.cell_finished(name, state)

    record.last_key = policy.last_key if options.cache else key_before
    if state.is_completed() and task.last_run is not None:
        for output in outputs:
            session.producers[output] = task.last_run.id
    if state.name == "Cached":
        _restore(shell, state._result(True))
    elif state.is_completed():
        if options.cache:
            record.last_key = _check_mutations(policy, namespace, inputs - outputs, name)
    else:
        _raise_user_error(shell, state, code.co_filename)
    return state


def cell_output(state: State) -> Any:
    """What the cell shows as its Out[n]: its last expression's value (None: nothing)."""
    if not state.is_completed():
        return None
    result = state.result()
    if not isinstance(result, CellResult):
        return None
    if state.name == "Cached":
        return ShownValue(*result.shown) if result.shown is not None else None
    return result.value


def _jsonable_bundle(data: dict, metadata: dict) -> tuple[dict, dict]:
    """A mimebundle as the kernel sends it: binary data (a PNG) as base64 text."""
    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in data.items()}, metadata


def _record_output(run: Any, stdout: str, stderr: str) -> None:
    """Keep what the cell printed with its task run (store only: it was already shown)."""
    now = time.time()
    for stream, text, level in (("stdout", stdout, logging.INFO), ("stderr", stderr, logging.WARNING)):
        if text.strip():
            recorder.log(run, run.flow_run_id, run.id, level, f"nbflow.cell.{stream}", text.rstrip("\n"), now)


def _compile(shell: Any, python_source: str) -> tuple[types.CodeType, types.CodeType | None]:
    """The cell's code, and its last line separately when that is an expression to show."""
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    filename = shell.compile.cache(python_source, shell.execution_count)
    tree = ast.parse(python_source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not python_source.rstrip().endswith(";"):
        last = compile(ast.Expression(tree.body.pop().value), filename, "eval", flags=flags, dont_inherit=True)
    return compile(tree, filename, "exec", flags=flags, dont_inherit=True), last


def _run_code(code: types.CodeType, namespace: dict) -> Any:
    value = eval(code, namespace)  # noqa: S307 - running the user's own cell is the point
    if inspect.iscoroutine(value):
        value = run_coro_sync(value)
    return value


def _restore(shell: Any, result: CellResult) -> None:
    shell.user_ns.update(result.outputs)
    for name in result.deleted:
        shell.user_ns.pop(name, None)
    replay(shell, result.stdout, result.stderr, result.displays)


def _check_mutations(policy: CellCachePolicy, namespace: dict, watched: frozenset[str],
                     name: str) -> str | None:
    """Warn, and drop the cache entry, when the cell changed one of its inputs in place."""
    run_key = policy.last_key
    try:
        after = input_fingerprints(namespace, watched)
    except FingerprintError:
        return run_key
    changed = sorted(n for n, fp in after.items() if policy.last_inputs.get(n) != fp)
    if not changed:
        return run_key
    if run_key:
        caching.cache_index().delete(run_key)
    listed = ", ".join(repr(n) for n in changed)
    message = (f"Cell '{name}' changed its input(s) {listed} in place, so re-running it would not "
               "give the same result: it was not cached. Work on a copy (e.g. df = df.copy()) "
               "or declare the variable as an output with --outputs.")
    print(f"nbflow warning: {message}", file=sys.stderr)
    return None


def _raise_user_error(shell: Any, state: State, cell_filename: str) -> None:
    """Re-raise the cell's exception showing the user's frames only, not nbflow's."""
    exc = state.exception
    if exc is None:
        raise RuntimeError(state.message or f"The cell ended {state.name}")
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != cell_filename:
        tb = tb.tb_next
    etype, trimmed = type(exc), tb

    def render() -> list[str]:
        if trimmed is None:  # e.g. a timeout: nothing of the user's to show but the error
            return [f"{etype.__name__}: {exc}"]
        return shell.InteractiveTB.structured_traceback(etype, exc, trimmed)

    try:
        exc._render_traceback_ = render  # IPython shows this instead of the full traceback
    except AttributeError:
        pass
    raise exc
