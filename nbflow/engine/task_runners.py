"""Task runners: where `.submit()` and `.map()` run task runs.

The engine's bookkeeping (states, retries, caching, records) always runs in the
flow's own process, so the store has one writer per flow run. A runner decides
where the *user function* runs: threads of this process (the default), a pool of
processes, or a Dask cluster (see `nbflow.engine.dask_runner`).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextvars
import multiprocessing
import os
import queue
import threading
import weakref
from typing import Any, Callable, Iterable

from nbflow.engine.calls import call_sync
from nbflow.engine.context import flow_run_context
from nbflow.errors import TaskDefinitionError, TimedOutError


def _check_workers(owner: str, max_workers: Any) -> None:
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise TaskDefinitionError(f"{owner}: max_workers must be a whole number >= 1; got {max_workers!r}.")


class TaskRunner:
    """Base of the runners: a pool that drives task runs, and how user code is called.

    Prefect's interface works too: `with ThreadPoolTaskRunner() as runner: runner.submit(task,
    {"x": 1})`, `runner.map(task, {"x": [1, 2]})`; a subclass may override `submit(task,
    parameters, wait_for=None, dependencies=None)` to run task runs its own way.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        _check_workers(type(self).__name__, max_workers)
        self.max_workers = max_workers
        self._pool: DriverThreads | None = None

    @property
    def name(self) -> str:
        """The runner's name, as Prefect's: `threadpool`, `processpool`, `dask`."""
        return type(self).__name__.lower().replace("taskrunner", "")

    @property
    def _started(self) -> bool:
        return self._pool is not None

    def duplicate(self) -> "TaskRunner":
        """A fresh, unstarted runner with the same settings (each flow run gets its own)."""
        return type(self)(max_workers=self.max_workers)

    def start(self) -> "TaskRunner":
        if self._pool is None:
            self._pool = DriverThreads(self._driver_threads(), "nbflow-task")
        return self

    def _driver_threads(self) -> int:
        return self.max_workers or min(32, (os.cpu_count() or 1) + 4)

    def submit(self, task: Any, parameters: dict[str, Any] | None = None, wait_for: Iterable[Any] | None = None,
               dependencies: Any = None) -> Any:
        """Start a run of `task` with `parameters` (a dict by parameter name) on this runner; return
        its future. The runner must be started (`with runner:` or `runner.start()`)."""
        if self._pool is None:
            raise RuntimeError("Task runner is not started")
        args, kwargs = call_arguments(task, parameters or {})
        return task._submit(flow_run_context.get(), self, args, kwargs, wait_for, None)

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None) -> Any:
        """Submit one run of `task` per element of the iterable parameters (`unmapped(x)` whole)."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        return task._map_on(self, (), dict(parameters), wait_for)

    def _start_run(self, drive: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `drive` (a task run's engine loop, returning its final state) in the pool.

        The returned future can also be run by whoever waits for it first (see run_now()):
        a task that submits tasks and waits on them never waits for a pool thread it holds.
        """
        if self._pool is None:
            self.start()
        job = _Job(drive, contextvars.copy_context())
        self._pool.put(job)
        return job

    def call(self, fn: Callable, args: tuple, kwargs: dict, is_async: bool,
             timeout: float | None) -> Any:
        """Call the user function of a task run and return its value."""
        return call_sync(fn, args, kwargs, is_async, timeout)

    def shutdown(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait)
            self._pool = None

    def __enter__(self) -> "TaskRunner":
        if self._pool is not None:
            raise RuntimeError("This task runner is already started")
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return False
        return self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash((type(self), self._settings()))

    def _settings(self) -> tuple:
        return (self.max_workers,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_workers={self.max_workers})"


def call_arguments(task: Any, parameters: dict[str, Any]) -> tuple[tuple, dict]:
    """Positional and keyword arguments of a call from Prefect's parameters dict (by name; a
    *args parameter holds a sequence, a **kwargs parameter a dict)."""
    import inspect

    try:
        signature = inspect.signature(task.fn)
    except (TypeError, ValueError):
        return (), dict(parameters)
    args: list = []
    kwargs: dict[str, Any] = {}
    rest = dict(parameters)
    star = any(p.kind is p.VAR_POSITIONAL and rest.get(n) for n, p in signature.parameters.items())
    for name, param in signature.parameters.items():
        positional = param.kind is param.POSITIONAL_ONLY or (star and param.kind is param.POSITIONAL_OR_KEYWORD)
        if name not in rest:
            if positional and param.default is not param.empty:
                args.append(param.default)  # keeps the positions of the values after it
            continue
        value = rest.pop(name)
        if positional:
            args.append(value)
        elif param.kind is param.VAR_POSITIONAL:
            args.extend(value)
        elif param.kind is param.VAR_KEYWORD:
            kwargs.update(value)
        else:
            kwargs[name] = value
    kwargs.update(rest)  # unknown names: binding the call reports them
    return tuple(args), kwargs


class DriverThreads:
    """Threads that drive task runs from a queue, started as needed up to `max_workers`.

    Leaner than a ThreadPoolExecutor (whose own future per call would come on top of the
    task run's): a job is its own future. At interpreter exit the threads finish what they run.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._max = max_workers
        self._name = name
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False
        _live_pools.add(self)

    def put(self, job: "_Job") -> None:
        if self._closed:
            raise RuntimeError("This task runner was shut down; submit task runs from a running flow.")
        self._queue.put(job)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            if len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        take = self._queue.get
        while True:
            job = take()
            if job is None:
                return
            job.run()
            del job
            self._idle.release()

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
        _live_pools.discard(self)


_live_pools: "weakref.WeakSet[DriverThreads]" = weakref.WeakSet()


def _finish_at_exit() -> None:
    # As concurrent.futures does: runs under way finish before the interpreter goes.
    for pool in list(_live_pools):
        pool.shutdown(wait=True)


getattr(threading, "_register_atexit", atexit.register)(_finish_at_exit)


class _Job(concurrent.futures.Future):
    """A task run's drive and its future: run once, by a driver thread or by a task run waiting for it."""

    def __init__(self, drive: Callable[[], Any], ctx: contextvars.Context) -> None:
        super().__init__()
        self.drive = drive
        self.ctx = ctx
        self._token = threading.Lock()

    def run(self) -> None:
        if not self._token.acquire(blocking=False):
            return  # a waiter took it
        if not self.set_running_or_notify_cancel():
            return
        try:
            result = self.ctx.run(self._drive)
        except BaseException as exc:  # noqa: BLE001 - drive returns states; this is a bug's last word
            self.set_exception(exc)
        else:
            self.set_result(result)
        self.drive = self.ctx = None  # the run's closure is no longer needed

    def _drive(self) -> Any:
        _in_task_run.set(True)
        return self.drive()


#: True while a submitted task run executes (also in threads and coroutines it starts).
_in_task_run: contextvars.ContextVar[bool] = contextvars.ContextVar("nbflow_in_task_run", default=False)


def run_now(future: concurrent.futures.Future) -> None:
    """Inside a submitted task run: if `future` is a task run no thread has started yet, run it
    here, now. A pool thread that waits on work queued behind it would wait forever; the flow's
    own thread just waits (running runs there too would only fight the pool for the GIL)."""
    if type(future) is _Job and _in_task_run.get() and not future.done():
        future.run()


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

    from nbflow.engine.context import current_tags

    future = submit(cloudpickle.dumps((fn, args, kwargs, is_async, current_tags.get())))
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

    fn, args, kwargs, is_async, tags = cloudpickle.loads(payload)
    from nbflow.engine.context import current_tags

    current_tags.set(tags)  # `with tags(...)` around the call holds in the worker too
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
