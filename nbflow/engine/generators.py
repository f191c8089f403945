"""Generator and async-generator tasks and flows: the run streams what the function yields.

Calling one returns a generator (an async generator for `async def ... yield`) that runs the
function as its values are asked for, inside the run's context, as Prefect 3 does: each value
reaches the caller at once; a `return` ends the run Completed (the value travels in
StopIteration, as Python's generators do); an exception fails it, or starts it again from the
beginning when retries are left (values are then yielded again); `timeout_seconds` bounds the
whole attempt. The run's states, hooks and log lines are those of an ordinary run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Iterator

from nbflow.engine.calls import call_sync
from nbflow.engine.context import FlowRunContext, TaskRunContext, flow_run_context, task_run_context
from nbflow.engine.futures import resolve_inputs
from nbflow.engine.retries import retry_delay
from nbflow.engine.run_logging import flow_run_logger, install_print_hook, log_prints_enabled
from nbflow.engine.transitions import enter_flow_state, enter_task_state
from nbflow.errors import TimedOutError


def check_return_state(kind: str, return_state: bool) -> None:
    """A generator's values stream to the caller: there is no single final state to return."""
    if return_state:
        raise ValueError(f"The return_type for a generator {kind} must be 'result'; iterate over the call "
                         f"instead of passing return_state=True.")


class TaskLife:
    """One generator task run's states, context, retries and hooks (task_engine's handlers)."""

    def __init__(self, task: Any, flow_ctx: FlowRunContext | None, args: tuple, kwargs: dict,
                 wait_for: Any) -> None:
        self.definition, self.flow_ctx = task, flow_ctx
        self.args, self.kwargs, self.wait_for = args, kwargs, wait_for
        self.timeout = task.timeout_seconds

    def begin(self) -> None:
        from nbflow.engine import task_engine as engine
        from nbflow.engine.tasks import _merge_upstream

        task, flow_ctx = self.definition, self.flow_ctx
        self.run = run = task._new_run(flow_ctx)
        inputs = resolve_inputs(self.args, self.kwargs, flow_ctx.results if flow_ctx else None, self.wait_for)
        _merge_upstream(run, inputs.upstream)
        if inputs.not_completed:
            engine.handle_upstream_failure(task, run, inputs)._result(True)
        self.args, self.kwargs = inputs.args, inputs.kwargs
        log_prints = task.log_prints if task.log_prints is not None else bool(flow_ctx and flow_ctx.log_prints)
        self.log_prints = log_prints
        self.ctx = TaskRunContext(task, run, None, log_prints, inputs)
        running = enter_task_state(run, "Running")
        if task.task_run_name is not None:
            engine.name_run(task, run, self.ctx)
        engine._run_hooks(task, task.on_running_hooks, run, running)

    def enter(self) -> Any:
        if self.log_prints:
            install_print_hook()
        return task_run_context.set(self.ctx), log_prints_enabled.set(self.log_prints)

    def exit(self, tokens: Any) -> None:
        log_prints_enabled.reset(tokens[1])
        task_run_context.reset(tokens[0])

    def start_attempt(self) -> Any:
        self.run.run_count += 1
        return self.definition.fn(*self.args, **self.kwargs)

    def succeed(self, value: Any) -> None:
        from nbflow.engine.task_engine import handle_success

        handle_success(self.definition, self.run, value, None, self.flow_ctx)

    def retry_after(self, exc: Exception) -> float | None:
        """Seconds until the next attempt, or None when the run fails now (and is marked so)."""
        from nbflow.engine.task_engine import handle_failure, handle_retry, should_retry

        task, run = self.definition, self.run
        if not should_retry(task, run, exc):
            handle_failure(task, run, exc)
            return None
        delay = retry_delay(task.retry_delays, run.run_count, task.retry_jitter_factor)
        handle_retry(task, run, exc, delay)
        return delay

    def crash(self, exc: BaseException) -> None:
        run = self.run
        run.error = f"{type(exc).__name__}: {exc}"
        enter_task_state(run, "Crashed", f"Interrupted by {run.error}", exception=exc)

    def close(self) -> None:
        pass


class FlowLife:
    """One generator flow run's states, context, retries and hooks (flow_engine's handlers)."""

    def __init__(self, flow: Any, parent: FlowRunContext | None, args: tuple, kwargs: dict,
                 wait_for: Any, is_async: bool) -> None:
        self.definition, self.parent = flow, parent
        self.args, self.kwargs, self.wait_for, self.is_async = args, kwargs, wait_for, is_async
        self.timeout = flow.timeout_seconds
        self.ctx: FlowRunContext | None = None

    def begin(self) -> None:
        from nbflow.engine.flow_engine import _run_hooks

        flow, args, kwargs = self.definition, self.args, self.kwargs
        if self.parent is not None or self.wait_for is not None:
            args, kwargs, not_ready = flow._upstream(self.parent, args, kwargs, self.wait_for)
            if not_ready is not None:
                not_ready._result(True)
        self.run, self.ctx, bound = flow._start(self.parent, args, kwargs, is_async=self.is_async)
        if bound is None:
            self.run.state._result(True)  # parameters did not fit: raise why
        self.args, self.kwargs = bound.args, bound.kwargs
        running = enter_flow_state(self.run, "Running")
        flow_run_logger(self.run).info("Beginning flow run '%s' for flow '%s'", self.run.id[:8], flow.name)
        _run_hooks(flow, flow.on_running_hooks, self.run, running)

    def enter(self) -> Any:
        if self.ctx.log_prints:
            install_print_hook()
        return flow_run_context.set(self.ctx), log_prints_enabled.set(self.ctx.log_prints)

    def exit(self, tokens: Any) -> None:
        log_prints_enabled.reset(tokens[1])
        flow_run_context.reset(tokens[0])

    def start_attempt(self) -> Any:
        self.run.run_count += 1
        self.ctx.futures.clear()
        return self.definition.fn(*self.args, **self.kwargs)

    def succeed(self, value: Any) -> None:
        from nbflow.engine.flow_engine import final_state, finish

        finish(self.definition, self.run, self.ctx, final_state(self.run, value, self.ctx))

    def retry_after(self, exc: Exception) -> float | None:
        from nbflow.engine.flow_engine import failed_state, finish

        flow, run = self.definition, self.run
        state = failed_state(flow, run, exc, self.ctx)
        if run.run_count > flow.retries:
            finish(flow, run, self.ctx, state)
            return None
        delay = retry_delay(flow.retry_delays, run.run_count, None)
        enter_flow_state(run, "Retrying", f"{state.message}; retry {run.run_count}/{flow.retries} in {delay:g} s")
        return delay

    def crash(self, exc: BaseException) -> None:
        from nbflow.engine.flow_engine import handle_crash

        try:
            handle_crash(self.definition, self.run, self.ctx, exc)
        except BaseException:  # noqa: BLE001 - it re-raises `exc`, which the stream raises itself
            pass

    def close(self) -> None:
        from nbflow.engine.flow_engine import _close_runner

        if self.ctx is not None:
            _close_runner(self.ctx)


def _step(gen: Iterator) -> tuple[bool, Any]:
    """Advance the user's generator: (True, value) or (False, what it returned)."""
    try:
        return True, next(gen)
    except StopIteration as stop:
        return False, stop.value


def stream(life: TaskLife | FlowLife) -> Iterator[Any]:
    """Run a generator task or flow, yielding its values as they come."""
    life.begin()
    try:
        while True:
            tokens = life.enter()
            try:
                gen = life.start_attempt()
            finally:
                life.exit(tokens)
            deadline = time.monotonic() + life.timeout if life.timeout else None
            while True:
                tokens = life.enter()
                try:
                    if deadline is None:
                        more, value = _step(gen)
                    else:
                        try:
                            more, value = call_sync(_step, (gen,), {}, False, _remaining(deadline, life.timeout))
                        except TimedOutError:
                            raise _timed_out(life.timeout) from None
                except Exception as exc:  # noqa: BLE001 - the run decides: retry or fail
                    delay = life.retry_after(exc)
                    if delay is None:
                        raise
                    if delay > 0:
                        time.sleep(delay)
                    break
                except BaseException as exc:
                    life.crash(exc)
                    raise
                finally:
                    life.exit(tokens)
                if not more:
                    life.succeed(value)
                    return value
                try:
                    yield value
                except GeneratorExit:  # the caller stopped iterating: the run ends there
                    gen.close()
                    life.succeed(None)
                    raise
    finally:
        life.close()


async def astream(life: TaskLife | FlowLife) -> AsyncIterator[Any]:
    """Run an async-generator task or flow, yielding its values as they come."""
    life.begin()
    try:
        while True:
            tokens = life.enter()
            try:
                agen = life.start_attempt()
            finally:
                life.exit(tokens)
            deadline = time.monotonic() + life.timeout if life.timeout else None
            while True:
                tokens = life.enter()
                try:
                    if deadline is None:
                        value = await agen.__anext__()
                    else:
                        try:
                            value = await asyncio.wait_for(agen.__anext__(), _remaining(deadline, life.timeout))
                        except asyncio.TimeoutError:
                            raise _timed_out(life.timeout) from None
                except StopAsyncIteration:
                    life.succeed(None)
                    return
                except Exception as exc:  # noqa: BLE001 - the run decides: retry or fail
                    delay = life.retry_after(exc)
                    if delay is None:
                        raise
                    if delay > 0:
                        await asyncio.sleep(delay)
                    break
                except BaseException as exc:
                    life.crash(exc)
                    raise
                finally:
                    life.exit(tokens)
                try:
                    yield value
                except GeneratorExit:
                    await agen.aclose()
                    life.succeed(None)
                    raise
    finally:
        life.close()


def _remaining(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(timeout)
    return left


def _timed_out(timeout: float) -> TimedOutError:
    return TimedOutError(f"Timed out after {timeout:g} s (timeout_seconds={timeout:g}).")
