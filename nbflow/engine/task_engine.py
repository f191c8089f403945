"""The task run loop: cache look-up, attempts, retries, timeouts, and how each ends.

`task_run_steps` reads like the description of a task run; success, retry,
failure and crash each have their own handler. It is driven by
`driver.drive_sync` or `driver.drive_async`.
"""

from __future__ import annotations

import logging
from typing import Any

from nbflow.engine import caching, failed_inputs, resume
from nbflow.engine.context import FlowRunContext, TaskRunContext, task_run_context
from nbflow.engine.driver import Call, Sleep, Steps
from nbflow.engine.futures import Inputs
from nbflow.engine.hooks import run_hooks
from nbflow.engine.models import TaskRun
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import install_print_hook, log_prints_enabled, task_run_logger
from nbflow.engine.states import State
from nbflow.engine.transitions import enter_task_state
from nbflow.errors import ResultStorageError, SerializationError, TimedOutError, UpstreamFailedError

logger = logging.getLogger("nbflow.task_runs")

_SMALL_INTS = range(-5, 257)


def task_run_steps(task: Any, run: TaskRun, inputs: Inputs, flow_ctx: FlowRunContext | None,
                   invoke: Any) -> Steps:
    """The life of one task run, from Pending to a final state."""
    if inputs.not_completed:
        return handle_upstream_failure(task, run, inputs)
    if resume.ACTIVE is not None:  # a retry from a failed task: this call's old result may be kept
        kept = resume.ACTIVE.take(run.task_key)
        if kept is not resume.MISS:
            return handle_kept_result(task, run, *kept, flow_ctx)
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

    enter_task_state(run, "Running")
    token = task_run_context.set(ctx)
    prints = log_prints_enabled.set(log_prints)
    if log_prints:
        install_print_hook()
    try:
        while True:
            run.run_count += 1
            ok, value = yield Call(invoke, task.fn, inputs.args, inputs.kwargs, task.is_async,
                                   task.timeout_seconds)
            if ok:
                return handle_success(task, run, value, cache_key, flow_ctx)
            if not isinstance(value, Exception):
                return handle_crash(task, run, value)
            if should_retry(task, run, value):
                delay = retry_delay(task.retry_delays, run.run_count, task.retry_jitter_factor)
                handle_retry(task, run, value, delay)
                if delay > 0:
                    yield Sleep(delay)
                continue
            return handle_failure(task, run, value, inputs)
    finally:
        log_prints_enabled.reset(prints)
        task_run_context.reset(token)


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


def handle_kept_result(task: Any, run: TaskRun, value: Any, old_run_id: str,
                       flow_ctx: FlowRunContext | None) -> State:
    state = enter_task_state(run, "Cached", f"Result of task run {old_run_id}, kept when the run it fed "
                                            "failed (a retry from the failed task)", data=value)
    _remember_result(flow_ctx, value, run)
    _run_hooks(task, task.on_completion_hooks, run, state)
    return state


def handle_success(task: Any, run: TaskRun, value: Any, cache_key: str | None,
                   flow_ctx: FlowRunContext | None) -> State:
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
    if logger.isEnabledFor(logging.DEBUG):
        task_run_logger(run).debug("Finished in state %r", state)
    _run_hooks(task, task.on_completion_hooks, run, state)
    return state


def should_retry(task: Any, run: TaskRun, exc: Exception) -> bool:
    if run.run_count > task.retries:
        return False
    if task.retry_condition_fn is None:
        return True
    attempt = State("Failed", f"{type(exc).__name__}: {exc}", exception=exc)
    try:
        return bool(task.retry_condition_fn(task, run, attempt))
    except Exception:
        task_run_logger(run).exception("retry_condition_fn raised; not retrying")
        return False


def handle_retry(task: Any, run: TaskRun, exc: Exception, delay: float) -> None:
    message = (f"Attempt {run.run_count} failed with {type(exc).__name__}: {exc}; "
               f"retry {run.run_count}/{task.retries} in {delay:g} s")
    enter_task_state(run, "Retrying", message)
    task_run_logger(run).warning(message)


def handle_failure(task: Any, run: TaskRun, exc: Exception, inputs: Inputs | None = None) -> State:
    name = "TimedOut" if isinstance(exc, TimedOutError) else "Failed"
    if inputs is not None and task.keep_failed_inputs:
        failed_inputs.keep(task, run, inputs, exc, name)  # for `%nbflow debug`; never on success
    run.error = f"{type(exc).__name__}: {exc}"
    retried = f" (after {run.run_count} attempts)" if run.run_count > 1 else ""
    # A timeout's traceback is nbflow's own waiting code: only the message helps.
    exc_info = None if name == "TimedOut" else (type(exc), exc, exc.__traceback__)
    task_run_logger(run).error("Task run failed%s with %s", retried, run.error, exc_info=exc_info)
    return _finish(task, run, name, run.error, exception=exc)


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
    run_hooks(task, hooks, run, state, task_run_logger(run))
