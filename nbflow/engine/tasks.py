"""@task: a function whose calls become tracked task runs."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import os
import threading
import types
import time
from typing import Any, Callable, Iterable

from nbflow.engine.cache_policies import CachePolicy
from nbflow.engine.calls import call_sync
from nbflow.engine.context import FlowRunContext, flow_run_context, task_run_context, with_tags
from nbflow.engine.driver import drive_async, drive_sync
from nbflow.engine.annotations import BaseAnnotation, unmapped
from nbflow.engine.generators import TaskLife, astream, check_return_state, stream
from nbflow.engine.hooks import HookDecorators
from nbflow.engine.methods import MethodBinding, unwrap_method
from nbflow.engine.futures import FutureList, PrefectFuture, TaskRunFuture, resolve_inputs, submitted_upstream
from nbflow.engine.models import TaskRun, new_run_id
from nbflow.engine.options import (check_callable, check_flag, check_hooks, check_reserved, check_run_name,
                                   check_tags, check_timeout, decorator_signature, with_options_signature)
from nbflow.engine.result_options import NotSet, check_result_options, task_cache_settings
from nbflow.engine.retries import check_retry_options
from nbflow.engine.states import State
from nbflow.engine.task_engine import task_run_steps
from nbflow.engine.task_runners import TaskRunner, ThreadPoolTaskRunner
from nbflow.engine.transitions import enter_task_state
from nbflow.errors import MappingLengthMismatch, MappingMissingIterable, TaskDefinitionError

_runner_lock = threading.Lock()
_default_runner: TaskRunner | None = None


class Task(MethodBinding, HookDecorators):
    """A function whose calls are recorded as task runs, with retries, timeouts and caching."""

    def __init__(self, fn: Callable, *, name: str | None = None, description: str | None = None,
                 tags: Iterable[str] | None = None, version: str | None = None, retries: int | None = 0,
                 retry_delay_seconds: Any = None, retry_jitter_factor: float | None = None,
                 retry_condition_fn: Callable | None = None, timeout_seconds: float | None = None,
                 cache_key_fn: Callable | None = None, cache_expiration: dt.timedelta | None = None,
                 cache_policy: CachePolicy | None = NotSet, refresh_cache: bool | None = None,
                 persist_result: bool | None = None, result_storage: str | os.PathLike | None = None,
                 result_serializer: Any = None, result_storage_key: str | None = None,
                 cache_result_in_memory: bool = True, log_prints: bool | None = None,
                 on_completion: list[Callable] | None = None,
                 on_failure: list[Callable] | None = None, on_running: list[Callable] | None = None,
                 task_run_name: str | Callable[..., str] | None = None,
                 on_commit: list[Callable] | None = None, on_rollback: list[Callable] | None = None,
                 keep_failed_inputs: bool = True) -> None:
        fn, method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TaskDefinitionError(f"'fn' must be callable: @task needs a function; got {type(fn).__name__} {fn!r}.")
        if method_kind is not None:
            self._method_kind = method_kind
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        owner = f"@task {self.name!r}"
        check_reserved(owner, fn)
        self.description = description or inspect.getdoc(fn)
        self.tags = set(check_tags(owner, tags))  # a set, as Prefect's (my_task.tags.add(...))
        self.version = version
        self.retries = retries = 0 if retries is None else retries
        self.retry_delay_seconds, self.retry_delays = check_retry_options(
            owner, retries, retry_delay_seconds, retry_jitter_factor)
        self.retry_jitter_factor = retry_jitter_factor
        check_callable(owner, "retry_condition_fn", retry_condition_fn)
        self.retry_condition_fn = retry_condition_fn
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        check_callable(owner, "cache_key_fn", cache_key_fn)
        if cache_expiration is not None and not isinstance(cache_expiration, dt.timedelta):
            raise TaskDefinitionError(
                f"{owner}: cache_expiration must be a datetime.timedelta; got {cache_expiration!r}.")
        check_result_options(owner, result_storage, result_serializer, result_storage_key, cache_result_in_memory)
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.cache_policy, self.persist_result = task_cache_settings(
            owner, cache_policy, cache_key_fn, cache_expiration, persist_result, result_storage,
            result_serializer, result_storage_key)
        self.refresh_cache = refresh_cache
        #: where results are written (a folder; None: the flow's, else NBFLOW_HOME/results) and how.
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.result_storage_key = result_storage_key
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.on_completion_hooks = check_hooks(owner, "on_completion", on_completion, "task")
        self.on_failure_hooks = check_hooks(owner, "on_failure", on_failure, "task")
        self.on_running_hooks = check_hooks(owner, "on_running", on_running, "task")
        self.on_commit_hooks = check_hooks(owner, "on_commit", on_commit, "task")
        self.on_rollback_hooks = check_hooks(owner, "on_rollback", on_rollback, "task")
        check_run_name(owner, "task_run_name", task_run_name)
        self.task_run_name = task_run_name
        #: whether a failed run keeps its arguments for `%nbflow debug` (off for sensitive data).
        self.keep_failed_inputs = check_flag(owner, "keep_failed_inputs", keep_failed_inputs)
        self.is_async = inspect.iscoroutinefunction(fn)
        #: a generator function's runs stream its values (engine/generators.py).
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.isasync = self.is_async or inspect.isasyncgenfunction(fn)
        self.task_key = task_key(fn)
        self._signature: inspect.Signature | None = None
        #: an object with write(value)/read(ref) that stores results instead of result_storage
        #: (the notebook layer keeps a cell's outputs one file per variable through this).
        self.result_store: Any = None
        self._options = dict(
            name=name, description=description, tags=tags, version=version, retries=retries,
            retry_delay_seconds=retry_delay_seconds, retry_jitter_factor=retry_jitter_factor,
            retry_condition_fn=retry_condition_fn, timeout_seconds=timeout_seconds,
            cache_key_fn=cache_key_fn, cache_expiration=cache_expiration, cache_policy=cache_policy,
            refresh_cache=refresh_cache, persist_result=persist_result, result_storage=result_storage,
            result_serializer=result_serializer, result_storage_key=result_storage_key,
            cache_result_in_memory=cache_result_in_memory, log_prints=log_prints,
            on_completion=on_completion, on_failure=on_failure, on_running=on_running,
            task_run_name=task_run_name, on_commit=on_commit, on_rollback=on_rollback,
            keep_failed_inputs=keep_failed_inputs)
        self.__doc__ = fn.__doc__
        self.__name__ = self.name
        self.__wrapped__ = fn

    # -- definition -------------------------------------------------------------------------

    @functools.cached_property
    def source_code(self) -> str | None:
        """The function's source (None for a callable object or code without a file); kept on the
        task once read, so it travels with a pickled task."""
        try:
            return inspect.getsource(self.fn)
        except (TypeError, OSError):
            return None

    def with_options(self, **options: Any) -> "Task":
        """A copy of this task with some options changed."""
        unknown = set(options) - set(self._options) | ({"version"} & set(options))
        if unknown:
            raise TaskDefinitionError(
                f"with_options() got unknown option(s) {sorted(unknown)}; valid: "
                f"{sorted(set(self._options) - {'version'})}.")
        return self._carry_binding(Task(self.fn, **{**self._options, **options}))

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The call's arguments by parameter name, defaults filled in."""
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    # -- running ----------------------------------------------------------------------------

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None,
                 **kwargs: Any) -> Any:
        """Run the task now and return its result (or its final state with return_state=True)."""
        if self._bound_self is not None:
            args = (self._bound_self, *args)
        flow_ctx = flow_run_context.get()
        if self.isgenerator:
            check_return_state("task", return_state)
            life = TaskLife(self, flow_ctx, args, kwargs, wait_for)
            return astream(life) if self.isasync else stream(life)
        if self.is_async and (flow_ctx is None or flow_ctx.is_async):
            return self._call_async(flow_ctx, args, kwargs, return_state, wait_for)
        run = self._new_run(flow_ctx)
        inputs = resolve_inputs(args, kwargs, flow_ctx.results if flow_ctx else None, wait_for)
        _merge_upstream(run, inputs.upstream)
        try:
            state = drive_sync(task_run_steps(self, run, inputs, flow_ctx, call_sync))
        except BaseException as exc:
            _crashed(run, exc)
            raise
        return state if return_state else (run.returned if run.returned is not None else state._result(True))

    async def _call_async(self, flow_ctx: FlowRunContext | None, args: tuple, kwargs: dict,
                          return_state: bool, wait_for: Iterable[Any] | None) -> Any:
        run = self._new_run(flow_ctx)
        inputs = resolve_inputs(args, kwargs, flow_ctx.results if flow_ctx else None, wait_for)
        _merge_upstream(run, inputs.upstream)
        try:
            state = await drive_async(task_run_steps(self, run, inputs, flow_ctx, call_sync))
        except BaseException as exc:
            _crashed(run, exc)
            raise
        return state if return_state else (run.returned if run.returned is not None else state._result(True))

    def submit(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None,
               **kwargs: Any) -> Any:
        """Start a task run on the flow's task runner; return its future at once (with
        return_state=True: wait, and return its final state)."""
        if self._bound_self is not None:
            args = (self._bound_self, *args)
        flow_ctx = _submitting_context("submit", "submitting a task")
        runner = _runner_for(flow_ctx)
        if type(runner).submit is not TaskRunner.submit:  # a runner of the user's own (Prefect's interface)
            future = runner.submit(self, self.bind(args, kwargs), wait_for)
        else:
            future = self._submit(flow_ctx, runner, args, kwargs, wait_for, None)
        if return_state:
            future.wait()
            return future.state
        return future

    def map(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None,
            **kwargs: Any) -> Any:
        """Submit one task run per element of the iterable arguments; `unmapped(x)` is passed whole
        (with return_state=True: wait, and return their final states)."""
        if self._bound_self is not None:
            args = (unmapped(self._bound_self), *args)
        flow_ctx = _submitting_context("map", "mapping a task")
        futures = self._map_on(_runner_for(flow_ctx), args, kwargs, wait_for)
        if return_state:
            futures.wait()
            return [f.state for f in futures]
        return futures

    def _map_on(self, runner: TaskRunner, args: tuple, kwargs: dict, wait_for: Iterable[Any] | None) -> FutureList:
        flow_ctx = flow_run_context.get()
        calls = _mapped_calls(self, args, kwargs)
        if type(runner).submit is not TaskRunner.submit:
            return FutureList(runner.submit(self, self.bind(a, k), wait_for) for a, k in calls)
        return FutureList(self._submit(flow_ctx, runner, a, k, wait_for, i) for i, (a, k) in enumerate(calls))

    def _submit(self, flow_ctx: FlowRunContext | None, runner: TaskRunner, args: tuple, kwargs: dict,
                wait_for: Iterable[Any] | None, dynamic_key: int | None) -> TaskRunFuture:
        run = self._new_run(flow_ctx, dynamic_key)
        results = flow_ctx.results if flow_ctx else None
        wait_for = list(wait_for) if wait_for is not None else None
        run.upstream = submitted_upstream(args, kwargs, wait_for)

        def drive() -> State:
            try:
                inputs = resolve_inputs(args, kwargs, results, wait_for)
                _merge_upstream(run, inputs.upstream)
                return drive_sync(task_run_steps(self, run, inputs, flow_ctx, runner.call))
            except BaseException as exc:  # noqa: BLE001 - a future must always end in a state
                return _crashed(run, exc)

        future = TaskRunFuture(run, runner._start_run(drive))
        if flow_ctx is not None:
            flow_ctx.futures.append(future)
        return future

    def _new_run(self, flow_ctx: FlowRunContext | None, dynamic_key: int | None = None) -> TaskRun:
        run = TaskRun(new_run_id(), flow_ctx.flow_run.id if flow_ctx else None, self.name,
                      self.task_key, dynamic_key=dynamic_key,
                      tags=with_tags(tuple(sorted(self.tags)) if self.tags else ()), created=time.time())
        enter_task_state(run, "Pending")
        return run

    def on_commit(self, fn: Callable) -> Callable:
        """Add a hook called with the transaction when the task run's transaction commits."""
        return self._add_hook("on_commit", fn)

    def on_rollback(self, fn: Callable) -> Callable:
        """Add a hook called with the transaction when the task run's transaction rolls back."""
        return self._add_hook("on_rollback", fn)

    def __class_getitem__(cls, params: Any) -> type:
        """`Task[P, R]` in type hints, as Prefect's generic Task allows."""
        return cls

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


def task_key(fn: Callable) -> str:
    """Prefect's task key: the function's own name and a short hash of its code, so two tasks of
    one name differ and an edited function gets a new key. The hash leaves out file names and
    line numbers: a task defined again in a restarted notebook kernel keeps its key."""
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        return f"{type(fn).__module__}.{type(fn).__qualname__}"
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    if code is None:
        return f"{qualname.split('.')[-1]}-unknown"
    digest = hashlib.md5(usedforsecurity=False)
    _feed_code(digest, code)
    return f"{qualname.split('.')[-1]}-{digest.hexdigest()[:8]}"


def _feed_code(digest: Any, code: types.CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(digest, const)
        elif isinstance(const, frozenset):  # its order varies between processes
            digest.update(repr(sorted(map(repr, const))).encode())
        else:
            digest.update(repr(const).encode())


def _merge_upstream(run: TaskRun, found: list[str]) -> None:
    """Add the edges found among the inputs to those known before (at submit, or set by a subclass)."""
    if not run.upstream:
        run.upstream = found
    else:
        run.upstream = run.upstream + [u for u in found if u not in run.upstream]


def _crashed(run: TaskRun, exc: BaseException) -> State:
    run.error = f"{type(exc).__name__}: {exc}"
    if run.state is not None and run.state.is_final():
        return run.state
    return enter_task_state(run, "Crashed", f"nbflow could not run the task: {run.error}", exception=exc)


def _submitting_context(method: str, doing: str) -> FlowRunContext | None:
    """The flow run a .submit()/.map() belongs to; as in Prefect 3, RuntimeError outside any flow
    or task run (there is no task runner to use)."""
    flow_ctx = flow_run_context.get()
    if flow_ctx is None and task_run_context.get() is None:
        raise RuntimeError(
            f"Unable to determine task runner to use for {'mapped task runs' if method == 'map' else 'submission'}. "
            f"If you are {doing} outside of a flow, call it inside a @flow function (or call the task "
            f"directly to run it now): .{method}() runs on the flow's task runner.")
    return flow_ctx


def _runner_for(flow_ctx: FlowRunContext | None) -> TaskRunner:
    global _default_runner
    if flow_ctx is not None and flow_ctx.task_runner is not None:
        return flow_ctx.task_runner
    with _runner_lock:
        if flow_ctx is not None:
            if flow_ctx.task_runner is None:
                template = flow_ctx.flow.task_runner or ThreadPoolTaskRunner()
                flow_ctx.task_runner = template.duplicate().start()
                flow_ctx._own_runner = True
            return flow_ctx.task_runner
        if _default_runner is None:
            _default_runner = ThreadPoolTaskRunner().start()
        return _default_runner


def _is_mappable(value: Any) -> bool:
    if isinstance(value, BaseAnnotation):  # allow_failure([...]) and quote([...]) map what they wrap
        return type(value) is not unmapped and _is_mappable(value.unwrap())
    if isinstance(value, (str, bytes, bytearray, dict)):
        return False
    return hasattr(value, "__iter__")


def _elements(value: Any) -> list:
    """The items `.map()` iterates; an annotation wraps each item (allow_failure([f1, f2]))."""
    if isinstance(value, BaseAnnotation):
        return [value.rewrap(item) for item in value.unwrap()]
    return list(value)


def _mapped_calls(task: Task, args: tuple, kwargs: dict) -> list[tuple[tuple, dict]]:
    """Split .map() arguments into one (args, kwargs) per element, as Prefect does: futures and
    states among them stand for their results, `**kwargs` entries map like named parameters,
    and the iterables must have one length."""
    if task._signature is None:
        task._signature = inspect.signature(task.fn)
    try:
        bound = task._signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{task.name}.map(): {exc}") from None
    arguments = dict(bound.arguments)
    for name, parameter in task._signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and name in arguments:
            arguments.update(arguments.pop(name))  # each call passes them by name again
    for name, value in arguments.items():
        if isinstance(value, PrefectFuture):  # a future of a list maps over the list
            arguments[name] = value.result()
        elif isinstance(value, State):
            arguments[name] = value._result(True)
    mapped = {n: _elements(v) for n, v in arguments.items() if _is_mappable(v)}
    if not mapped:
        raise MappingMissingIterable(
            f"No iterable parameters were received. Parameters for map must include at least one iterable. "
            f"Parameters: {arguments}. ({task.name}.map() needs an iterable argument to map over; call "
            f"{task.name}.submit() for a single run.)")
    lengths = {n: len(v) for n, v in mapped.items()}
    if len(set(lengths.values())) > 1:
        raise MappingLengthMismatch(
            f"Received iterable parameters with different lengths. Parameters for map must all be the same "
            f"length. Got lengths: {lengths}. ({task.name}.map(): make them equal, or wrap arguments that "
            "should be passed whole in unmapped(...).)")
    static = {n: (v.unwrap() if type(v) is unmapped else v) for n, v in arguments.items() if n not in mapped}
    count = next(iter(lengths.values()))
    calls = []
    for i in range(count):
        call_args = {**static, **{n: v[i] for n, v in mapped.items()}}
        calls.append(((), call_args))
    return calls


def task(__fn: Callable | None = None, **options: Any) -> Any:
    """Decorate a function as a task: `@task` or `@task(retries=3, ...)`."""
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)


task.__signature__ = decorator_signature(Task)  # type: ignore[attr-defined]
# A definition's version stays with it (Prefect's with_options takes no version either).
Task.with_options.__signature__ = with_options_signature(Task, drop=("version",))  # type: ignore[attr-defined]
