"""The task run loop: cache look-up, attempts, retries, timeouts, and how each ends.

`task_run_steps` reads like the description of a task run; success, retry,
failure and crash each have their own handler. It is driven by
`driver.drive_sync` or `driver.drive_async`.
"""

from __future__ import annotations

import logging
from types import GeneratorType
from typing import Any

from nbflow.engine import caching, failed_inputs, resume, transactions
from nbflow.engine.context import FlowRunContext, TaskRunContext, task_run_context
from nbflow.engine.driver import Call, Sleep, Steps
from nbflow.engine.futures import Inputs
from nbflow.engine.hooks import run_hooks
from nbflow.engine.models import TaskRun
from nbflow.engine.options import run_name
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import install_print_hook, log_prints_enabled, task_run_logger
from nbflow.engine.states import (InvalidTransitionError, State, StoredResult, is_state_iterable,
                                  return_value_to_state)
from nbflow.engine.transitions import enter_returned_state, enter_task_state
from nbflow.store.buffer import recorder
from nbflow.errors import ResultStorageError, TaskDefinitionError, SerializationError, TimedOutError

logger = logging.getLogger("nbflow.task_runs")

_SMALL_INTS = range(-5, 257)
_COLLECTIONS = (list, tuple, set, frozenset)


def task_run_steps(task: Any, run: TaskRun, inputs: Inputs, flow_ctx: FlowRunContext | None,
                   invoke: Any) -> Steps:
    """The life of one task run, from Pending to a final state."""
    if inputs.not_completed:
        return handle_upstream_failure(task, run, inputs)
    if resume.ACTIVE is not None:  # a retry from a failed task: this call's old result may be kept
        kept = resume.ACTIVE.take(run.task_name)  # by name: a fix to the task's code changes its key
        if kept is not resume.MISS:
            return handle_kept_result(task, run, *kept, flow_ctx)
    log_prints = task.log_prints if task.log_prints is not None else bool(flow_ctx and flow_ctx.log_prints)
    ctx = TaskRunContext(task, run, None, log_prints, inputs)
    parent = task_run_context.get()
    persist = task.persist_result
    if persist is None:
        persist = flow_ctx.persist_result if flow_ctx is not None else False
    cache_key = lock = None
    if persist:  # Prefect's rule: without persisted results, no key is computed, nothing is cached
        try:
            cache_key, lock, hit = look_up_cache(task, run, ctx, inputs, flow_ctx)
        except TaskDefinitionError as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            return _finish(task, run, "Failed", str(exc), exception=exc)
        if hit is not caching.MISS:
            return handle_cache_hit(task, run, hit, flow_ctx)

    try:
        running = enter_task_state(run, "Running")
    except BaseException:
        _release(lock, cache_key, run)
        raise
    token = task_run_context.set(ctx)
    prints = log_prints_enabled.set(log_prints)
    if log_prints:
        install_print_hook()
    txn = None
    if task.on_commit_hooks or task.on_rollback_hooks or transactions.current() is not None:
        txn = transactions.Transaction(key=cache_key, logger=task_run_logger(run)).__enter__()
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
            if ok and (type(value) is State or (type(value) in _COLLECTIONS and is_state_iterable(value))):
                if not (value_failed(value) and should_retry(task, run, value)):
                    return handle_returned_state(task, run, value, flow_ctx)
            elif ok:
                state = handle_success(task, run, value, cache_key, flow_ctx, persist, ctx, parent)
                if txn is not None and state.is_completed():
                    txn.stage(value, on_rollback_hooks=task.on_rollback_hooks, on_commit_hooks=task.on_commit_hooks)
                return state
            elif not isinstance(value, Exception):
                return handle_crash(task, run, value)
            elif not should_retry(task, run, value):
                return handle_failure(task, run, value, inputs)
            # the attempt raised, or returned a failed state, and a retry follows
            delay = retry_delay(task.retry_delays, run.run_count, task.retry_jitter_factor)
            handle_retry(task, run, value, delay)
            if delay > 0:
                yield Sleep(delay)
    finally:
        if txn is not None:
            txn.__exit__(None, None, None)  # commits now, or leaves it to the enclosing transaction
        log_prints_enabled.reset(prints)
        task_run_context.reset(token)
        if lock is not None:
            _release(lock, cache_key, run)
        pending = ctx.pending_commits
        ctx.pending_commits = caching.CLOSED
        if pending:
            caching.settle_commits(pending, parent, run.state is not None and run.state.is_completed())


def look_up_cache(task: Any, run: TaskRun, ctx: TaskRunContext, inputs: Inputs,
                  flow_ctx: FlowRunContext | None) -> tuple[str | None, Any, Any]:
    """(cache key, the lock held on it or None, the cached value or MISS) of a persisting run."""
    ctx.parameters = task.bind(inputs.args, inputs.kwargs)
    if flow_ctx is not None and flow_ctx.results:
        ctx.upstream_cache_keys = _upstream_cache_keys(ctx.parameters, flow_ctx.results)
    cache_key = run.cache_key = caching.compute_key(task, ctx, flow_ctx)
    if cache_key is None:
        return None, None, caching.MISS
    lock = caching.lock_for(task)
    if lock is not None:
        lock.acquire_lock(cache_key, holder=run.id)
    if task.refresh_cache:
        return cache_key, lock, caching.MISS
    try:
        hit = caching.lookup(task, run, cache_key, flow_ctx)
    except BaseException:
        _release(lock, cache_key, run)
        raise
    if hit is not caching.MISS:
        _release(lock, cache_key, run)
    return cache_key, lock, hit


def name_run(task: Any, run: TaskRun, ctx: TaskRunContext) -> None:
    """Name the run from task_run_name, once per call (retries keep the name), inside its context."""
    old = run.name
    run.name = run_name(f"@task {task.name!r}", "task_run_name", task.task_run_name, ctx.parameters)
    if logger.isEnabledFor(logging.DEBUG):
        task_run_logger(run).debug("Renamed task run %r to %r", old, run.name)


def handle_upstream_failure(task: Any, run: TaskRun, inputs: Inputs) -> State:
    """An upstream run did not complete: the run does not start and stays NotReady (a kind of
    Pending), as in Prefect 3."""
    upstream, state = inputs.not_completed[0]
    message = (f"Upstream task run '{upstream.id}' did not reach a 'COMPLETED' state: '{upstream.task_name}' "
               f"ended {state.name}" + (f": {state.message}" if state.message else "."))
    run.error = f"UpstreamFailedError: {message}"
    state = enter_task_state(run, "NotReady", message)
    task_run_logger(run).error("Finished in state %s", state)
    return state


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


def handle_kept_result(task: Any, run: TaskRun, value: Any, old_run_id: str,
                       flow_ctx: FlowRunContext | None) -> State:
    state = enter_task_state(run, "Cached", f"Result of task run {old_run_id}, kept when the run it fed "
                                            "failed (a retry from the failed task)", data=value)
    _remember_result(flow_ctx, value, run)
    _run_hooks(task, task.on_completion_hooks, run, state)
    return state


def handle_success(task: Any, run: TaskRun, value: Any, cache_key: str | None,
                   flow_ctx: FlowRunContext | None, persist: bool = False, ctx: Any = None,
                   parent: TaskRunContext | None = None) -> State:
    if type(value) is GeneratorType:
        value = list(value)  # a returned generator is run through, as Prefect does (it cannot be stored)
    data = value
    if persist:
        try:
            reader = caching.persist(task, run, value, cache_key, ctx, flow_ctx, parent)
            if not task.cache_result_in_memory:
                data = StoredResult(reader)
        except SerializationError as exc:
            # Prefect's rule: the run still completes, only its result is not kept
            task_run_logger(run).warning(
                "Encountered an error while serializing result for task '%s': %s Code execution will "
                "continue; the result is not persisted, so it is not cached.", task.name, exc)
        except OSError as exc:
            where = getattr(caching.storage_for(task, flow_ctx), "root", "the result storage")
            exc = ResultStorageError(
                f"Could not write the result of task '{task.name}' under {where}: "
                f"{exc.strerror or exc}. Free disk space or fix the folder's permissions, or set "
                "persist_result=False.")
            run.error = f"{type(exc).__name__}: {exc}"
            return _finish(task, run, "Failed", str(exc), exception=exc)
    state = enter_task_state(run, "Completed", data=data)
    if data is value:
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


def handle_failure(task: Any, run: TaskRun, exc: Exception, inputs: Inputs | None = None) -> State:
    """The last attempt failed: Failed (TimedOut for a timeout), with Prefect's message and log line;
    the run's inputs are kept for `%nbflow debug` (never on success)."""
    if inputs is not None and task.keep_failed_inputs:
        failed_inputs.keep(task, run, inputs, exc, "TimedOut" if isinstance(exc, TimedOutError) else "Failed")
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


def _release(lock: Any, key: str | None, run: TaskRun) -> None:
    if lock is not None:
        try:
            lock.release_lock(key, holder=run.id)
        except Exception:  # noqa: BLE001 - a lock we no longer hold (expired) is not an error
            pass


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
