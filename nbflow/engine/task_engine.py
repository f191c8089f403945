"""The task run loop: cache look-up, attempts, retries, timeouts, and how each ends.

`task_run_steps` reads like the description of a task run; success, retry,
failure and crash each have their own handler. It is driven by
`driver.drive_sync` or `driver.drive_async`.
"""

from __future__ import annotations

import logging
from types import GeneratorType
from typing import Any

from nbflow.engine import caching
from nbflow.engine.context import FlowRunContext, TaskRunContext, task_run_context
from nbflow.engine.driver import Call, Sleep, Steps
from nbflow.engine.futures import Inputs
from nbflow.engine.hooks import run_hooks
from nbflow.engine.models import TaskRun
from nbflow.engine.options import run_name
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import install_print_hook, log_prints_enabled, task_run_logger
from nbflow.engine.states import InvalidTransitionError, State, is_state_iterable, return_value_to_state
from nbflow.engine.transitions import enter_returned_state, enter_task_state
from nbflow.store.buffer import recorder
from nbflow.errors import ResultStorageError, TaskDefinitionError, SerializationError, TimedOutError, UpstreamFailedError

logger = logging.getLogger("nbflow.task_runs")

_SMALL_INTS = range(-5, 257)
_COLLECTIONS = (list, tuple, set, frozenset)


def task_run_steps(task: Any, run: TaskRun, inputs: Inputs, flow_ctx: FlowRunContext | None,
                   invoke: Any) -> Steps:
    """The life of one task run, from Pending to a final state."""
    if inputs.not_completed:
        return handle_upstream_failure(task, run, inputs)
    log_prints = task.log_prints if task.log_prints is not None else bool(flow_ctx and flow_ctx.log_prints)
    ctx = TaskRunContext(task, run, None, log_prints, inputs)
    cache_key = None
    if task.cache_policy is not None:
        ctx.parameters = task.bind(inputs.args, inputs.kwargs)
        if flow_ctx is not None and flow_ctx.results:
            ctx.upstream_cache_keys = _upstream_cache_keys(ctx.parameters, flow_ctx.results)
        cache_key = caching.compute_key(task, ctx, flow_ctx)
        run.cache_key = cache_key
        if cache_key is not None and not task.refresh_cache:
            hit = caching.lookup(task, run, cache_key)
            if hit is not caching.MISS:
                return handle_cache_hit(task, run, hit, flow_ctx)

    running = enter_task_state(run, "Running")
    token = task_run_context.set(ctx)
    prints = log_prints_enabled.set(log_prints)
    if log_prints:
        install_print_hook()
    try:
        if task.task_run_name is not None:
            try:
                name_run(task, run, ctx)
            except Exception as exc:
                return handle_failure(task, run, exc)
        _run_hooks(task, task.on_running_hooks, run, running)
        while True:
            run.run_count += 1
            ok, value = yield Call(invoke, task.fn, inputs.args, inputs.kwargs, task.is_async,
                                   task.timeout_seconds)
            if ok:
                if type(value) is State or (type(value) in _COLLECTIONS and is_state_iterable(value)):
                    if value_failed(value) and should_retry(task, run, value):
                        delay = retry_delay(task.retry_delays, run.run_count, task.retry_jitter_factor)
                        handle_retry(task, run, value, delay)
                        if delay > 0:
                            yield Sleep(delay)
                        continue
                    return handle_returned_state(task, run, value, flow_ctx)
                return handle_success(task, run, value, cache_key, flow_ctx)
            if not isinstance(value, Exception):
                return handle_crash(task, run, value)
            if should_retry(task, run, value):
                delay = retry_delay(task.retry_delays, run.run_count, task.retry_jitter_factor)
                handle_retry(task, run, value, delay)
                if delay > 0:
                    yield Sleep(delay)
                continue
            return handle_failure(task, run, value)
    finally:
        log_prints_enabled.reset(prints)
        task_run_context.reset(token)


def name_run(task: Any, run: TaskRun, ctx: TaskRunContext) -> None:
    """Name the run from task_run_name, once per call (retries keep the name), inside its context."""
    old = run.name
    run.name = run_name(f"@task {task.name!r}", "task_run_name", task.task_run_name, ctx.parameters)
    if logger.isEnabledFor(logging.DEBUG):
        task_run_logger(run).debug("Renamed task run %r to %r", old, run.name)


def handle_upstream_failure(task: Any, run: TaskRun, inputs: Inputs) -> State:
    upstream, state = inputs.not_completed[0]
    error = UpstreamFailedError(
        f"Task '{task.name}' did not start: upstream task run '{upstream.task_name}' "
        f"({upstream.id}) ended {state.name}: {state.message}"
    )
    run.error = f"UpstreamFailedError: {error}"
    return _finish(task, run, "Failed", str(error), exception=error)


def handle_cache_hit(task: Any, run: TaskRun, value: Any, flow_ctx: FlowRunContext | None) -> State:
    state = enter_task_state(run, "Cached", "Result loaded from cache", data=value)
    _remember_result(flow_ctx, value, run)
    _run_hooks(task, task.on_completion_hooks, run, state)
    return state


def value_failed(value: Any) -> bool:
    return value.is_failed() if type(value) is State else return_value_to_state(value).is_failed()


def handle_returned_state(task: Any, run: TaskRun, value: Any, flow_ctx: FlowRunContext | None) -> State:
    """The task returned a state (or states): its run ends as Prefect's rules say; calling the task
    hands the returned value back as it is."""
    run.returned = value
    outcome = return_value_to_state(value)
    try:
        state = enter_returned_state(run, outcome)
    except InvalidTransitionError:
        message = f"The task returned state {outcome}, which cannot end a run; return a final state."
        return _finish(task, run, "Failed", message, exception=TaskDefinitionError(message))
    if state.is_completed():
        _remember_result(flow_ctx, state.data, run)
        _log_finished(run, state)
        _run_hooks(task, task.on_completion_hooks, run, state)
    else:
        run.error = f"{state.name}: {state.message}"
        task_run_logger(run).error("Finished in state %s", state)
        _run_hooks(task, task.on_failure_hooks, run, state)
    return state


def handle_success(task: Any, run: TaskRun, value: Any, cache_key: str | None,
                   flow_ctx: FlowRunContext | None) -> State:
    if type(value) is GeneratorType:
        value = list(value)  # a returned generator is run through, as Prefect does (it cannot be stored)
    if task.persist_result or (task.persist_result is None and cache_key is not None):
        try:
            caching.persist(task, run, value, cache_key)
        except (SerializationError, OSError) as exc:
            if isinstance(exc, OSError):
                exc = ResultStorageError(
                    f"Could not write the result of task '{task.name}' under "
                    f"{caching.result_store().root}: {exc.strerror or exc}. Free disk space or "
                    "fix the permissions of NBFLOW_HOME, or set persist_result=False.")
            if task.persist_result:
                run.error = f"{type(exc).__name__}: {exc}"
                return _finish(task, run, "Failed", str(exc), exception=exc)
            task_run_logger(run).warning("Result not cached: %s", exc)
    state = enter_task_state(run, "Completed", data=value)
    _remember_result(flow_ctx, value, run)
    _log_finished(run, state)
    _run_hooks(task, task.on_completion_hooks, run, state)
    return state


def _log_finished(run: TaskRun, state: State) -> None:
    """Prefect's "Finished in state Completed()" line: always stored with the run, shown on the
    console only at DEBUG (a line per successful task would cost more than the task run itself)."""
    if logger.isEnabledFor(logging.DEBUG):
        task_run_logger(run).info("Finished in state %s", state)
    elif logger.isEnabledFor(logging.INFO):
        recorder.log(run, run.flow_run_id, run.id, logging.INFO, "nbflow.task_runs",
                     f"Finished in state {state}", state.timestamp)


def should_retry(task: Any, run: TaskRun, failure: Any) -> bool:
    if run.run_count > task.retries:
        return False
    if task.retry_condition_fn is None:
        return True
    if isinstance(failure, BaseException):
        attempt = State("Failed", f"Task run encountered an exception {type(failure).__name__}: {failure}",
                        exception=failure)
    else:
        attempt = return_value_to_state(failure)
    try:
        return bool(task.retry_condition_fn(task, run, attempt))
    except Exception:
        task_run_logger(run).exception("retry_condition_fn raised; not retrying")
        return False


def handle_retry(task: Any, run: TaskRun, failure: Any, delay: float) -> None:
    """Another attempt follows (`failure`: the exception raised, or the failed state returned)."""
    when = f"{delay:g} second(s) from now" if delay > 0 else "immediately"
    message = f"Retry {run.run_count}/{task.retries} will start {when}"
    enter_task_state(run, "Retrying", message)
    kind = "exception" if isinstance(failure, BaseException) else "state"
    task_run_logger(run).info("Task run failed with %s: %r - %s", kind, failure, message)
    _run_hooks(task, task.on_running_hooks, run, run.state)


def handle_failure(task: Any, run: TaskRun, exc: Exception) -> State:
    """The last attempt failed: Failed (TimedOut for a timeout), with Prefect's message and log line."""
    run.error = f"{type(exc).__name__}: {exc}"
    log = task_run_logger(run)
    if isinstance(exc, TimedOutError):
        # A timeout's traceback is nbflow's own waiting code: only the message helps.
        message = f"Task run exceeded timeout of {task.timeout_seconds:g} second(s)"
        log.error(message)
        return _finish(task, run, "TimedOut", message, exception=exc)
    exhausted = " - Retries are exhausted" if task.retries > 0 else ""
    log.error("Task run failed with exception: %r%s", exc, exhausted, exc_info=(type(exc), exc, exc.__traceback__))
    return _finish(task, run, "Failed", f"Task run encountered an exception {run.error}", exception=exc)


def handle_crash(task: Any, run: TaskRun, exc: BaseException) -> State:
    """User code was interrupted (KeyboardInterrupt, SystemExit...): Crashed, then re-raise."""
    run.error = f"{type(exc).__name__}: {exc}"
    enter_task_state(run, "Crashed", f"Interrupted by {run.error}", exception=exc)
    raise exc


def _finish(task: Any, run: TaskRun, name: str, message: str, *, exception: BaseException) -> State:
    state = enter_task_state(run, name, message, exception=exception)
    _run_hooks(task, task.on_failure_hooks, run, state)
    return state


def _remember_result(flow_ctx: FlowRunContext | None, value: Any, run: TaskRun) -> None:
    if flow_ctx is None or value is None or value is True or value is False:
        return
    if type(value) is int and value in _SMALL_INTS:
        return  # shared small-int objects would give false edges
    flow_ctx.results[id(value)] = (value, run)


def _upstream_cache_keys(parameters: dict[str, Any], results: dict[int, tuple[Any, Any]]) -> dict[str, str]:
    keys = {}
    for name, value in parameters.items():
        hit = results.get(id(value))
        if hit is not None and hit[0] is value and hit[1].cache_key:
            keys[name] = hit[1].cache_key
    return keys


def _run_hooks(task: Any, hooks: list, run: TaskRun, state: State) -> None:
    if hooks:
        run_hooks(task, hooks, run, state, task_run_logger(run))
