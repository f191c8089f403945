"""How user code is called: sync or async, on time or stopped at its timeout.

Sync code never gets a coroutine back: coroutines are run to completion on one
background event loop, so this works also in a Jupyter kernel whose loop is
already running. A timeout runs the call on a reusable worker thread, stops
waiting when time is up and raises inside the worker so the code really stops
at its next Python instruction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import threading
from typing import Any, Callable

from nbflow.errors import TimedOutError

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()
_timeout_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="nbflow-async", daemon=True).start()
            _loop = loop
        return _loop


def run_coro_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, whether or not a loop is running here.

    Never on a loop that may be blocked by a caller waiting for this very call: a thread
    without a loop runs the coroutine on a loop of its own; the main thread of a notebook
    (whose loop runs) hands it to nbflow's background loop; a coroutine that blocks its own
    loop while waiting (a task waiting on tasks it submitted) gets a fresh thread and loop.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        return asyncio.run(coro)
    if threading.current_thread() is threading.main_thread() and loop is not _loop:
        ctx = contextvars.copy_context()
        future = asyncio.run_coroutine_threadsafe(_in_context(coro, ctx), _background_loop())
        return future.result()
    return _run_in_new_thread(coro)


def _run_in_new_thread(coro: Any) -> Any:
    ctx = contextvars.copy_context()
    outcome: list = []

    def target() -> None:
        try:
            outcome.append((True, ctx.run(asyncio.run, coro)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="nbflow-async-nested", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if ok:
        return value
    raise value


async def _in_context(coro: Any, ctx: contextvars.Context) -> Any:
    # The coroutine runs as a task of the background loop; give it the caller's context vars.
    task = ctx.run(asyncio.ensure_future, coro)
    return await task


def call_sync(fn: Callable, args: tuple, kwargs: dict, is_async: bool, timeout: float | None) -> Any:
    """Call `fn` from sync code and return its value, within `timeout` seconds if given."""
    if is_async:
        coro = fn(*args, **kwargs)
        if timeout is None:
            return run_coro_sync(coro)
        return run_coro_sync(call_async_with_timeout(coro, timeout))
    if timeout is None:
        return fn(*args, **kwargs)
    return _call_with_timeout(fn, args, kwargs, timeout)


async def call_async(fn: Callable, args: tuple, kwargs: dict, is_async: bool,
                     timeout: float | None) -> Any:
    """Call `fn` from async code: await coroutines, call sync functions in place."""
    if not is_async:
        return call_sync(fn, args, kwargs, False, timeout)
    coro = fn(*args, **kwargs)
    if timeout is None:
        return await coro
    return await call_async_with_timeout(coro, timeout)


async def call_async_with_timeout(coro: Any, timeout: float) -> Any:
    """Await `coro`; cancel it and raise TimedOutError after `timeout` seconds."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        raise TimedOutError(f"Timed out after {timeout:g} s (timeout_seconds={timeout:g}).")
    return task.result()


def _call_with_timeout(fn: Callable, args: tuple, kwargs: dict, timeout: float) -> Any:
    global _timeout_pool
    if _timeout_pool is None:
        _timeout_pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="nbflow-timeout")
    ctx = contextvars.copy_context()
    holder: dict[str, int] = {}

    def target() -> Any:
        holder["thread"] = threading.get_ident()
        return ctx.run(fn, *args, **kwargs)

    future = _timeout_pool.submit(target)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        if not future.done() and "thread" in holder:
            _interrupt(holder["thread"], timeout)
        raise TimedOutError(f"Timed out after {timeout:g} s (timeout_seconds={timeout:g}).") from None


def _interrupt(thread_id: int, timeout: float) -> None:
    """Raise TimedOutError inside the worker so the abandoned call stops running."""
    exc_type = type("TaskTimedOut", (TimedOutError,), {})
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type))
