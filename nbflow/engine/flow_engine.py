"""The flow run loop: run the body, wait for its task runs, decide the final state.

A flow's final state follows Prefect 3: an exception fails it; a returned state, future
or collection of them decides it (states.return_value_to_state); anything else completes
it, whatever happened to task runs it did not return.
"""

from __future__ import annotations

import inspect
from typing import Any

from nbflow.engine.context import NOT_SET, FlowRunContext, flow_run_context
from nbflow.engine.driver import Call, Sleep, Steps
from nbflow.engine.futures import FutureList, resolve_futures_to_states, wait
from nbflow.engine.hooks import run_hooks
from nbflow.engine.models import FlowRun
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import flow_run_logger, install_print_hook, log_prints_enabled
from nbflow.engine.states import InvalidTransitionError, State, StateList, return_value_to_state
from nbflow.engine.transitions import enter_flow_state, enter_returned_state
from nbflow.errors import TimedOutError
from nbflow.store.buffer import recorder


def flow_run_steps(flow: Any, run: FlowRun, args: tuple, kwargs: dict, ctx: FlowRunContext,
                   invoke: Any) -> Steps:
    """The life of one flow run, from Pending to a final state."""
    log = flow_run_logger(run)
    if run.state is None or run.state.name != "Running":  # an adopted run (a deployment's) runs already
        running = enter_flow_state(run, "Running")
    else:
        running = run.state
    log.info("Beginning flow run '%s' for flow '%s'", run.id[:8] if run.name == run.flow_name else run.name,
             flow.name)
    token = flow_run_context.set(ctx)
    prints = log_prints_enabled.set(True) if ctx.log_prints else None
    if ctx.log_prints:
        install_print_hook()
    try:
        _run_hooks(flow, flow.on_running_hooks, run, running)
        while True:
            run.run_count += 1
            ctx.return_value = NOT_SET
            ok, value = yield Call(invoke, flow.fn, args, kwargs, flow.is_async, flow.timeout_seconds)
            if ok and flow.is_async and inspect.iscoroutine(value):
                # `return child()` in an async flow: Prefect awaits the coroutine it returns.
                ok, value = yield Call(invoke, _awaited, (value,), {}, True, flow.timeout_seconds)
            if ok:
                state = final_state(run, value, ctx)
            elif not isinstance(value, Exception):
                return handle_crash(flow, run, ctx, value)
            else:
                state = failed_state(flow, run, value, ctx)
            if not state.is_failed() or run.run_count > flow.retries:
                return finish(flow, run, ctx, state)
            delay = retry_delay(flow.retry_delays, run.run_count, None)
            enter_flow_state(run, "Retrying", f"{state.message}; retry {run.run_count}/{flow.retries} in {delay:g} s")
            log.warning("Flow run failed: %s; retrying in %g s (%d/%d)", state.message, delay,
                        run.run_count, flow.retries)
            ctx.futures.clear()
            if delay > 0:
                yield Sleep(delay)
    finally:
        if prints is not None:
            log_prints_enabled.reset(prints)
        flow_run_context.reset(token)
        _close_runner(ctx)


def final_state(run: FlowRun, value: Any, ctx: FlowRunContext) -> State:
    """The state the flow's return value puts it in, by Prefect 3's rules (states.return_value_to_state):
    futures count as their final states; task runs it did not return do not decide it."""
    resolved = resolve_futures_to_states(value)
    if type(value) is FutureList:
        resolved = StateList(resolved)
    ctx.return_value = resolved
    return return_value_to_state(resolved)


def failed_state(flow: Any, run: FlowRun, exc: Exception, ctx: FlowRunContext) -> State:
    """The state an exception from the flow's body implies, logged as Prefect logs it."""
    log = flow_run_logger(run)
    if isinstance(exc, TimedOutError):
        message = f"Flow run exceeded timeout of {flow.timeout_seconds:g} second(s)"
        log.error(message)
        return State("TimedOut", message, exception=exc)
    log.error("Encountered exception during execution: %r", exc, exc_info=(type(exc), exc, exc.__traceback__))
    wait(ctx.futures)
    return State("Failed", f"Flow run encountered an exception: {type(exc).__name__}: {exc}", exception=exc)


def finish(flow: Any, run: FlowRun, ctx: FlowRunContext, outcome: State) -> State:
    wait(ctx.futures)  # nbflow waits for the task runs a flow leaves behind: none is lost
    try:
        state = enter_returned_state(run, outcome)
    except InvalidTransitionError:
        state = enter_flow_state(run, "Failed", f"The flow returned state {outcome}, which cannot end a run; "
                                 "return a final state (Completed, Failed, Cancelled) or Paused.")
    log = flow_run_logger(run)
    if state.is_completed():
        log.info("Finished in state %s", state)
    else:
        log.error("Finished in state %s", state)
    _run_hooks(flow, _hooks_for(flow, state), run, state)
    if run.parent_flow_run_id is None:
        recorder.flush_soon()
    return state


def handle_crash(flow: Any, run: FlowRun, ctx: FlowRunContext, exc: BaseException) -> State:
    """The flow was interrupted (KeyboardInterrupt, SystemExit...): Crashed, hooks, re-raise."""
    state = enter_flow_state(run, "Crashed", f"Interrupted by {type(exc).__name__}: {exc}", exception=exc)
    flow_run_logger(run).error("Crashed: interrupted by %s", type(exc).__name__)
    _run_hooks(flow, flow.on_crashed_hooks, run, state)
    recorder.flush_soon()
    raise exc


def _hooks_for(flow: Any, state: State) -> list:
    """The hooks a final state calls, as Prefect: Cancelling counts as cancelled; Paused calls none."""
    if state.is_completed():
        return flow.on_completion_hooks
    if state.is_cancelled() or state.is_cancelling():
        return flow.on_cancellation_hooks
    if state.is_crashed():
        return flow.on_crashed_hooks
    if state.is_failed():
        return flow.on_failure_hooks
    return []


async def _awaited(coro: Any) -> Any:
    return await coro


def _close_runner(ctx: FlowRunContext) -> None:
    if ctx._own_runner and ctx.task_runner is not None:
        # A timed-out flow does not wait for the task runs it leaves behind.
        state = ctx.flow_run.state
        ctx.task_runner.shutdown(wait=state is None or state.name != "TimedOut")


def _run_hooks(flow: Any, hooks: list, run: FlowRun, state: State) -> None:
    if hooks:
        run_hooks(flow, hooks, run, state, flow_run_logger(run))
