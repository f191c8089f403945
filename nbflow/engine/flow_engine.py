"""The flow run loop: run the body, wait for its task runs, decide the final state.

A flow's final state follows Prefect: an exception fails it; a returned state or
future (or a list of them) decides it; a flow that returns nothing fails when a
task run it submitted failed and nothing handled it; otherwise it completed.
"""

from __future__ import annotations

from typing import Any

from nbflow.engine.context import FlowRunContext, flow_run_context
from nbflow.engine.driver import Call, Sleep, Steps
from nbflow.engine.futures import TaskRunFuture, wait
from nbflow.engine.hooks import run_hooks
from nbflow.engine.models import FlowRun
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import flow_run_logger, install_print_hook, log_prints_enabled
from nbflow.engine.states import State
from nbflow.engine.transitions import enter_flow_state
from nbflow.errors import TimedOutError
from nbflow.store.buffer import recorder


def flow_run_steps(flow: Any, run: FlowRun, args: tuple, kwargs: dict, ctx: FlowRunContext,
                   invoke: Any) -> Steps:
    """The life of one flow run, from Pending to a final state."""
    log = flow_run_logger(run)
    if run.state is None or run.state.name != "Running":  # an adopted run (a deployment's) runs already
        enter_flow_state(run, "Running")
    log.info("Beginning flow run '%s' for flow '%s'", run.id[:8] if run.name == run.flow_name else run.name,
             flow.name)
    token = flow_run_context.set(ctx)
    prints = log_prints_enabled.set(True) if ctx.log_prints else None
    if ctx.log_prints:
        install_print_hook()
    try:
        while True:
            run.run_count += 1
            ok, value = yield Call(invoke, flow.fn, args, kwargs, flow.is_async, flow.timeout_seconds)
            if ok:
                state = final_state(run, value, ctx)
            elif not isinstance(value, Exception):
                return handle_crash(flow, run, ctx, value)
            else:
                state = failed_state(run, value, ctx)
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
    """The state a flow's return value (and its unhandled task runs) imply."""
    wait(ctx.futures)
    returned = _states_in(value)
    if returned is not None:
        bad = [s for s in returned if not s.is_completed()]
        if bad:
            worst = bad[0]
            return State("Failed", f"{len(bad)}/{len(returned)} returned states did not complete: "
                         f"{worst.name}: {worst.message}", exception=worst.exception)
        return State("Completed", data=value if not isinstance(value, State) else value.result(False))
    if value is None:
        failed = [f for f in ctx.futures if not f.state.is_completed()]
        if failed:
            first = failed[0]
            return State("Failed", f"{len(failed)}/{len(ctx.futures)} task runs did not complete; "
                         f"first: '{first.task_run.task_name}' {first.state.name}: {first.state.message}",
                         exception=first.state.exception)
    return State("Completed", data=value)


def failed_state(run: FlowRun, exc: Exception, ctx: FlowRunContext) -> State:
    name = "TimedOut" if isinstance(exc, TimedOutError) else "Failed"
    if name == "Failed":
        wait(ctx.futures)
    return State(name, f"{type(exc).__name__}: {exc}", exception=exc)


def finish(flow: Any, run: FlowRun, ctx: FlowRunContext, outcome: State) -> State:
    state = enter_flow_state(run, outcome.name, outcome.message, data=outcome._data,
                             exception=outcome.exception)
    log = flow_run_logger(run)
    if state.is_completed():
        log.info("Finished in state %r", state)
        _run_hooks(flow, flow.on_completion_hooks, run, state)
    else:
        exc = state.exception
        log.error("Finished in state %r", state,
                  exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
        _run_hooks(flow, flow.on_failure_hooks, run, state)
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


def _states_in(value: Any) -> list[State] | None:
    """States a flow returned (directly, as futures, or in a list/tuple), else None."""
    if isinstance(value, State):
        return [value]
    if isinstance(value, TaskRunFuture):
        return [value.final_state()]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (State, TaskRunFuture)) for v in value):
        return [v if isinstance(v, State) else v.final_state() for v in value]
    return None


def _close_runner(ctx: FlowRunContext) -> None:
    if ctx._own_runner and ctx.task_runner is not None:
        # A timed-out flow does not wait for the task runs it leaves behind.
        state = ctx.flow_run.state
        ctx.task_runner.shutdown(wait=state is None or state.name != "TimedOut")


def _run_hooks(flow: Any, hooks: list, run: FlowRun, state: State) -> None:
    run_hooks(flow, hooks, run, state, flow_run_logger(run))
