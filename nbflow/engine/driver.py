"""One run loop, two ways to drive it: from sync code and from async code.

A run's logic is a generator that yields what it needs done — call the user's
function, or sleep before a retry — and receives the outcome. `drive_sync` and
`drive_async` carry those out; the logic itself exists once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Generator

from nbflow.engine.calls import call_async


class Call:
    """Ask the driver to call user code; the generator receives (ok, value_or_exception)."""

    __slots__ = ("invoke", "fn", "args", "kwargs", "is_async", "timeout")

    def __init__(self, invoke: Callable, fn: Callable, args: tuple, kwargs: dict, is_async: bool,
                 timeout: float | None) -> None:
        self.invoke = invoke  # the task runner's `call`, or calls.call_sync
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async
        self.timeout = timeout


class Sleep:
    """Ask the driver to wait before the next attempt."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Steps = Generator[Any, Any, Any]


def drive_sync(steps: Steps) -> Any:
    """Run a run-loop generator to its end from sync code; return what it returns."""
    outcome: Any = None
    try:
        while True:
            step = steps.send(outcome)
            if type(step) is Call:
                try:
                    outcome = (True, step.invoke(step.fn, step.args, step.kwargs, step.is_async, step.timeout))
                except BaseException as exc:  # the run loop decides: failure, retry or crash
                    outcome = (False, exc)
            else:
                time.sleep(step.seconds)
                outcome = None
    except StopIteration as stop:
        return stop.value


async def drive_async(steps: Steps) -> Any:
    """Run a run-loop generator to its end from async code, awaiting coroutines."""
    outcome: Any = None
    try:
        while True:
            step = steps.send(outcome)
            if type(step) is Call:
                try:
                    if step.is_async:
                        value = await call_async(step.fn, step.args, step.kwargs, True, step.timeout)
                    else:
                        value = step.invoke(step.fn, step.args, step.kwargs, False, step.timeout)
                    outcome = (True, value)
                except BaseException as exc:  # the run loop decides: failure, retry or crash
                    outcome = (False, exc)
            else:
                await asyncio.sleep(step.seconds)
                outcome = None
    except StopIteration as stop:
        return stop.value
