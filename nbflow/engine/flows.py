"""@flow: a function whose calls are tracked flow runs that group their task runs."""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from typing import Any, Callable, Iterable

from nbflow.engine.adoption import take_adopted_run
from nbflow.engine.calls import call_sync, run_coro_sync
from nbflow.engine.context import NOT_SET, FlowRunContext, flow_run_context, task_run_context, with_tags
from nbflow.engine.deployer import deployer
from nbflow.engine.driver import drive_async, drive_sync
from nbflow.engine.flow_engine import finish, flow_run_steps
from nbflow.engine.models import FlowRun, new_run_id
from nbflow.engine.options import (check_flow_name, check_hooks, check_reserved, check_run_name, check_tags,
                                   check_timeout, decorator_signature, run_name, with_options_signature)
from nbflow.engine.generators import FlowLife, astream, check_return_state, stream
from nbflow.engine.hooks import HookDecorators
from nbflow.engine.futures import resolve_inputs
from nbflow.engine.methods import MethodBinding, unwrap_method
from nbflow.engine.parameters import FlowParameters
from nbflow.engine.result_options import check_result_options, flow_persist_result
from nbflow.engine.retries import check_retry_options
from nbflow.engine.run_logging import flow_run_logger
from nbflow.engine.states import State
from nbflow.engine.task_runners import TaskRunner
from nbflow.engine.transitions import enter_flow_state
from nbflow.errors import ParameterTypeError, TaskDefinitionError


class Flow(MethodBinding, HookDecorators):
    """A function whose calls are recorded as flow runs; tasks called inside belong to them."""

    _hook_kind = "flow"

    def __init__(self, fn: Callable, *, name: str | None = None, version: str | None = None,
                 description: str | None = None, retries: int | None = 0, retry_delay_seconds: Any = None,
                 timeout_seconds: float | None = None, task_runner: TaskRunner | None = None,
                 log_prints: bool = False, validate_parameters: bool = True,
                 tags: Iterable[str] | None = None, on_completion: list[Callable] | None = None,
                 on_failure: list[Callable] | None = None, on_crashed: list[Callable] | None = None,
                 on_cancellation: list[Callable] | None = None, on_running: list[Callable] | None = None,
                 flow_run_name: str | Callable[..., str] | None = None, persist_result: bool | None = None,
                 result_storage: str | os.PathLike | None = None, result_serializer: Any = None,
                 cache_result_in_memory: bool = True) -> None:
        fn, method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TaskDefinitionError(f"'fn' must be callable: @flow needs a function; got {type(fn).__name__} {fn!r}.")
        self.name = check_flow_name(name, fn)
        if method_kind is not None:
            self._method_kind = method_kind
        self.fn = fn
        owner = f"@flow {self.name!r}"
        check_reserved(owner, fn)
        self.version = version or source_file_hash(fn)
        self.description = description or inspect.getdoc(fn)
        self.retries = retries = 0 if retries is None else retries
        self.retry_delay_seconds, self.retry_delays = check_retry_options(owner, retries, retry_delay_seconds, None)
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            if isinstance(task_runner, type) and issubclass(task_runner, TaskRunner):
                task_runner = task_runner()
            else:
                raise TaskDefinitionError(
                    f"{owner}: task_runner must be a task runner such as ThreadPoolTaskRunner(8); "
                    f"got {task_runner!r}.")
        self.task_runner = task_runner
        self.log_prints = bool(log_prints)
        self.should_validate_parameters = bool(validate_parameters)
        self.tags = check_tags(owner, tags)
        self.on_completion_hooks = check_hooks(owner, "on_completion", on_completion, "flow")
        self.on_failure_hooks = check_hooks(owner, "on_failure", on_failure, "flow")
        self.on_crashed_hooks = check_hooks(owner, "on_crashed", on_crashed, "flow")
        self.on_cancellation_hooks = check_hooks(owner, "on_cancellation", on_cancellation, "flow")
        self.on_running_hooks = check_hooks(owner, "on_running", on_running, "flow")
        check_run_name(owner, "flow_run_name", flow_run_name)
        self.flow_run_name = flow_run_name
        check_result_options(owner, result_storage, result_serializer, None, cache_result_in_memory)
        #: the default of its tasks' persist_result (and its subflows'); results go to
        #: result_storage, written with result_serializer, unless a task names its own.
        self.persist_result = flow_persist_result(persist_result, result_storage, result_serializer)
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.is_async = inspect.iscoroutinefunction(fn)
        #: a generator function's runs stream its values (engine/generators.py).
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.isasync = self.is_async or inspect.isasyncgenfunction(fn)
        self.signature = inspect.signature(fn)
        self._parameters = FlowParameters(fn, self.signature)
        self._options = dict(
            name=name, version=version, description=description, retries=retries,
            retry_delay_seconds=retry_delay_seconds, timeout_seconds=timeout_seconds,
            task_runner=task_runner, log_prints=log_prints, validate_parameters=validate_parameters,
            tags=tags, on_completion=on_completion, on_failure=on_failure, on_crashed=on_crashed,
            on_cancellation=on_cancellation, on_running=on_running,
            flow_run_name=flow_run_name, persist_result=persist_result, result_storage=result_storage,
            result_serializer=result_serializer, cache_result_in_memory=cache_result_in_memory)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__wrapped__ = fn

    def with_options(self, **options: Any) -> "Flow":
        """A copy of this flow with some options changed."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TaskDefinitionError(
                f"with_options() got unknown option(s) {sorted(unknown)}; valid: {sorted(self._options)}.")
        return self._carry_binding(Flow(self.fn, **{**self._options, **options}))

    def serve(self, name: str, **options: Any) -> None:
        """Deploy this flow as `name` (cron=, interval=, parameters=, ...) and run its runs here until Ctrl-C."""
        deployer("serve")(self, name, **options)

    def deploy(self, name: str, **options: Any) -> dict[str, Any]:
        """Deploy this flow as `name` on the server (cron=, interval=, parameters=, work_pool=, ...)."""
        return deployer("deploy")(self, name, **options)

    @classmethod
    def from_source(cls, source: Any, entrypoint: str) -> "Flow":
        """The flow at `entrypoint` ("file.py:flow") in the local directory `source` (Prefect's from_source)."""
        return deployer("from_source")(source, entrypoint)

    @property
    def parameters(self) -> Any:
        """The flow's parameter schema (Prefect's ParameterSchema), from its hints and docstring."""
        from nbflow.engine.parameter_schema import parameter_schema  # pydantic loads here, when asked

        return parameter_schema(self.fn)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validate a parameters dict against the flow's hints; a new dict of coerced values
        (ParameterTypeError if one does not fit)."""
        return self._parameters.validate_dict(parameters)

    def validate(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        """Bind (ParameterBindError) and, unless validate_parameters=False, validate a call's parameters."""
        bound = self._parameters.bind(args, kwargs)
        if self.should_validate_parameters:
            self._parameters.validate(bound)
        return bound

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Iterable[Any] | None = None,
                 **kwargs: Any) -> Any:
        """Run the flow and return its result (or its final state with return_state=True).

        An async flow returns a coroutine to await, except when called inside a sync flow
        or task, where it runs to completion. A subflow waits for `wait_for` futures and for
        futures among its arguments, which pass their results (as in Prefect).
        """
        if self._bound_self is not None:
            args = (self._bound_self, *args)
        parent = flow_run_context.get()
        if self.isgenerator:
            check_return_state("flow", return_state)
            if self.isasync:
                return astream(FlowLife(self, parent, args, kwargs, wait_for, is_async=True))
            return stream(FlowLife(self, parent, args, kwargs, wait_for, is_async=False))
        if self.is_async:
            coro = self._run_async(parent, args, kwargs, return_state, wait_for)
            if parent is not None and not parent.is_async:
                return run_coro_sync(coro)
            return coro
        if parent is not None or wait_for is not None:
            args, kwargs, not_ready = self._upstream(parent, args, kwargs, wait_for)
            if not_ready is not None:
                return self._outcome(not_ready, return_state)
        run, ctx, bound = self._start(parent, args, kwargs, is_async=False)
        if bound is None:
            return self._outcome(run.state, return_state)
        try:
            state = drive_sync(flow_run_steps(self, run, bound.args, bound.kwargs, ctx, call_sync))
        except BaseException as exc:
            _crashed(run, exc)
            raise
        return self._outcome(state, return_state, ctx)

    async def _run_async(self, parent: FlowRunContext | None, args: tuple, kwargs: dict,
                         return_state: bool, wait_for: Iterable[Any] | None = None) -> Any:
        if parent is not None or wait_for is not None:
            args, kwargs, not_ready = self._upstream(parent, args, kwargs, wait_for)
            if not_ready is not None:
                return self._outcome(not_ready, return_state)
        run, ctx, bound = self._start(parent, args, kwargs, is_async=True)
        if bound is None:
            return self._outcome(run.state, return_state)
        try:
            state = await drive_async(flow_run_steps(self, run, bound.args, bound.kwargs, ctx, call_sync))
        except BaseException as exc:
            _crashed(run, exc)
            raise
        return self._outcome(state, return_state, ctx)

    def _start(self, parent: FlowRunContext | None, args: tuple, kwargs: dict,
               is_async: bool) -> tuple[FlowRun, FlowRunContext, inspect.BoundArguments | None]:
        task_ctx = task_run_context.get()
        bound = self._parameters.bind(args, kwargs)  # as in Prefect, a call that does not bind raises: no run
        # A flow deployment's run (made by the scheduler) is adopted: one record, not a wrapper and a child.
        run = take_adopted_run(self.name, self.version, with_tags(self.tags)) if parent is None else None
        if run is None:
            # A process started for a flow run (a notebook run by `nbflow run` or a deployment)
            # is told its id: top-level flows it calls are that run's children.
            parent_id = parent.flow_run.id if parent else os.environ.get("NBFLOW_FLOW_RUN_ID") or None
            run = FlowRun(new_run_id(), self.name, parameters={}, flow_version=self.version,
                          parent_flow_run_id=parent_id,
                          parent_task_run_id=task_ctx.task_run.id if task_ctx else None,
                          tags=with_tags(self.tags), created=time.time())
        ctx = FlowRunContext(self, run, task_runner=None, log_prints=self.log_prints, parent=parent,
                             is_async=is_async)
        try:
            if self.should_validate_parameters:
                self._parameters.validate(bound)
        except ParameterTypeError as exc:
            run.parameters = dict(bound.arguments)
            if run.state is None:
                enter_flow_state(run, "Pending")
                enter_flow_state(run, "Running")
            message = "Validation of flow parameters failed with error:"
            flow_run_logger(run).error("%s %s", message, exc)
            finish(self, run, ctx, State("Failed", f"{message} {type(exc).__name__}: {exc}", exception=exc))
            return run, ctx, None
        run.parameters = dict(bound.arguments)
        if self._bound_self is not None:  # the instance or class a method is bound to is no parameter
            run.parameters.pop(next(iter(self.signature.parameters)), None)
        if self.flow_run_name is not None:
            run.name = run_name(f"@flow {self.name!r}", "flow_run_name", self.flow_run_name, run.parameters)
        if run.state is None:
            enter_flow_state(run, "Pending")
        return run, ctx, bound

    def _upstream(self, parent: FlowRunContext | None, args: tuple, kwargs: dict,
                  wait_for: Iterable[Any] | None) -> tuple[tuple, dict, State | None]:
        """A subflow's arguments with futures and states replaced by their results, after waiting for
        `wait_for`; when an upstream run did not complete, the run's state instead: Pending
        "NotReady", as Prefect leaves a subflow whose upstream failed (its body never runs)."""
        inputs = resolve_inputs(args, kwargs, None, list(wait_for) if wait_for is not None else None)
        args, kwargs = inputs.args, inputs.kwargs  # states among them are their results already
        if not inputs.not_completed:
            return args, kwargs, None
        upstream, state = inputs.not_completed[0]
        task_ctx = task_run_context.get()
        run = FlowRun(new_run_id(), self.name, parameters={}, flow_version=self.version,
                      parent_flow_run_id=parent.flow_run.id if parent else None,
                      parent_task_run_id=task_ctx.task_run.id if task_ctx else None,
                      tags=with_tags(self.tags), created=time.time())
        message = (f"Upstream task run '{upstream.id}' did not reach a 'COMPLETED' state: task "
                   f"'{upstream.task_name}' ended {state.name}. Flow '{self.name}' did not start.")
        enter_flow_state(run, "Pending")
        return args, kwargs, enter_flow_state(run, "NotReady", message)

    @staticmethod
    def _outcome(state: Any, return_state: bool, ctx: FlowRunContext | None = None) -> Any:
        """What a call hands back: the state; else what the body returned (futures as states, as
        Prefect does) unless that was a state; else the state's result."""
        if return_state:
            return state
        returned = ctx.return_value if ctx is not None else NOT_SET
        if returned is not NOT_SET and not isinstance(returned, State):
            return returned
        return state._result(True)

    def on_crashed(self, fn: Callable) -> Callable:
        """Add a hook called when a run crashes: `@my_flow.on_crashed`."""
        return self._add_hook("on_crashed", fn)

    def on_cancellation(self, fn: Callable) -> Callable:
        """Add a hook called when a run is cancelled: `@my_flow.on_cancellation`."""
        return self._add_hook("on_cancellation", fn)

    def __class_getitem__(cls, params: Any) -> type:
        """`Flow[P, R]` in type hints, as Prefect's generic Flow allows."""
        return cls

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"


def source_file_hash(fn: Callable) -> str | None:
    """Prefect's default flow version: an MD5 hash of the file defining the function (None when
    there is no such file, e.g. code typed at a prompt)."""
    try:
        path = inspect.getsourcefile(fn)
        if path is None:
            return None
        with open(path, "rb") as handle:
            return hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
    except (TypeError, OSError):
        return None


def _crashed(run: FlowRun, exc: BaseException) -> None:
    """Record a flow run that nbflow itself could not finish as Crashed (if not final yet)."""
    if run.state is None or not run.state.is_final():
        enter_flow_state(run, "Crashed", f"nbflow could not finish the run: {type(exc).__name__}: {exc}",
                         exception=exc)


def flow(__fn: Callable | None = None, **options: Any) -> Any:
    """Decorate a function as a flow: `@flow` or `@flow(name=..., retries=..., ...)`."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


flow.__signature__ = decorator_signature(Flow)  # type: ignore[attr-defined]
Flow.with_options.__signature__ = with_options_signature(Flow)  # type: ignore[attr-defined]
