"""Task runners: where `.submit()` and `.map()` run task runs.

The engine's bookkeeping (states, retries, caching, records) always runs in the
flow's own process, so the store has one writer per flow run. A runner decides
where the *user function* runs: threads of this process (the default), a pool of
processes, or a Dask cluster (see `nbflow.engine.dask_runner`).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import multiprocessing
import os
import threading
from typing import Any, Callable

from nbflow.engine.calls import call_sync
from nbflow.errors import TaskDefinitionError, TimedOutError


def _check_workers(owner: str, max_workers: Any) -> None:
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise TaskDefinitionError(f"{owner}: max_workers must be a whole number >= 1; got {max_workers!r}.")


class TaskRunner:
    """Base of the runners: a pool that drives task runs, and how user code is called."""

    def __init__(self, max_workers: int | None = None) -> None:
        _check_workers(type(self).__name__, max_workers)
        self.max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def duplicate(self) -> "TaskRunner":
        """A fresh, unstarted runner with the same settings (each flow run gets its own)."""
        return type(self)(max_workers=self.max_workers)

    def start(self) -> "TaskRunner":
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._driver_threads(), thread_name_prefix="nbflow-task")
        return self

    def _driver_threads(self) -> int:
        return self.max_workers or min(32, (os.cpu_count() or 1) + 4)

    def submit(self, drive: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `drive` (a task run's engine loop, returning its final state) in the pool.

        The returned future can also be run by whoever waits for it first (see run_now()):
        a task that submits tasks and waits on them never waits for a pool thread it holds.
        """
        if self._pool is None:
            self.start()
        job = _Job(drive, contextvars.copy_context())
        self._pool.submit(job.run)
        return job.future

    def call(self, fn: Callable, args: tuple, kwargs: dict, is_async: bool,
             timeout: float | None) -> Any:
        """Call the user function of a task run and return its value."""
        return call_sync(fn, args, kwargs, is_async, timeout)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None

    def __enter__(self) -> "TaskRunner":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


class _Job:
    """A task run's drive, run once: by a pool thread, or by a thread waiting for its future."""

    __slots__ = ("drive", "ctx", "future", "_token")

    def __init__(self, drive: Callable[[], Any], ctx: contextvars.Context) -> None:
        self.drive = drive
        self.ctx = ctx
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.future._nbflow_job = self  # type: ignore[attr-defined]
        self._token = threading.Lock()

    def run(self) -> None:
        if not self._token.acquire(blocking=False):
            return  # a waiter took it
        future = self.future
        del future._nbflow_job  # no cycle left for the garbage collector (it cost ~30 µs a task)
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = self.ctx.run(self._drive)
        except BaseException as exc:  # noqa: BLE001 - drive returns states; this is a bug's last word
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _drive(self) -> Any:
        _in_task_run.set(True)
        return self.drive()


#: True while a submitted task run executes (also in threads and coroutines it starts).
_in_task_run: contextvars.ContextVar[bool] = contextvars.ContextVar("nbflow_in_task_run", default=False)


def run_now(future: concurrent.futures.Future) -> None:
    """Inside a submitted task run: if `future` is a task run no thread has started yet, run it
    here, now. A pool thread that waits on work queued behind it would wait forever; the flow's
    own thread just waits (running runs there too would only fight the pool for the GIL)."""
    if not _in_task_run.get():
        return
    job = getattr(future, "_nbflow_job", None)
    if job is not None and not future.done():
        job.run()


class ThreadPoolTaskRunner(TaskRunner):
    """Runs task runs on a pool of threads in this process (the default)."""


class ProcessPoolTaskRunner(TaskRunner):
    """Runs the user code of task runs in a pool of worker processes (for CPU-bound tasks).

    Functions and arguments travel with cloudpickle, so tasks defined in a notebook or
    `__main__` work. Workers are started with `spawn`: safe in a process with threads.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers)
        self._processes: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> "ProcessPoolTaskRunner":
        super().start()
        if self._processes is None:
            self._processes = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.max_workers or os.cpu_count() or 1,
                mp_context=multiprocessing.get_context("spawn"))
        return self

    def call(self, fn: Callable, args: tuple, kwargs: dict, is_async: bool,
             timeout: float | None) -> Any:
        if self._processes is None:
            self.start()
        return call_pickled(lambda payload: self._processes.submit(run_pickled_call, payload),
                            fn, args, kwargs, is_async, timeout)

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)
        if self._processes is not None:
            self._processes.shutdown(wait=wait, cancel_futures=not wait)
            self._processes = None


def call_pickled(submit: Callable[[bytes], Any], fn: Callable, args: tuple, kwargs: dict,
                 is_async: bool, timeout: float | None) -> Any:
    """Send a call to another process as cloudpickle through `submit` (which returns a future of
    `run_pickled_call`'s answer), wait up to `timeout`, and return its value or raise its error."""
    import cloudpickle

    future = submit(cloudpickle.dumps((fn, args, kwargs, is_async)))
    try:
        ok, blob = future.result(timeout=timeout)
    except (concurrent.futures.TimeoutError, TimeoutError):
        future.cancel()
        raise TimedOutError(f"Timed out after {timeout:g} s (timeout_seconds={timeout:g}).") from None
    value = cloudpickle.loads(blob)
    if ok:
        return value
    raise value


def run_pickled_call(payload: bytes) -> tuple[bool, bytes]:
    """In a worker process: call a cloudpickled function; return its pickled value or error."""
    import cloudpickle

    fn, args, kwargs, is_async = cloudpickle.loads(payload)
    try:
        value = fn(*args, **kwargs)
        if is_async:
            import asyncio

            value = asyncio.run(value)
        return True, cloudpickle.dumps(value)
    except Exception as exc:  # the parent records it as the task's failure
        try:
            return False, cloudpickle.dumps(exc)
        except Exception:
            return False, cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
