"""@flow: a function whose calls are tracked flow runs that group their task runs."""

from __future__ import annotations

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
from nbflow.engine.options import check_hooks, check_reserved, check_run_name, check_tags, check_timeout, run_name
from nbflow.engine.hooks import HookDecorators
from nbflow.engine.parameters import FlowParameters
from nbflow.engine.result_options import check_result_options, flow_persist_result
from nbflow.engine.retries import check_retry_options
from nbflow.engine.run_logging import flow_run_logger
from nbflow.engine.states import State
from nbflow.engine.task_runners import TaskRunner
from nbflow.engine.transitions import enter_flow_state
from nbflow.errors import ParameterTypeError, TaskDefinitionError


class Flow(HookDecorators):
    """A function whose calls are recorded as flow runs; tasks called inside belong to them."""

    def __init__(self, fn: Callable, *, name: str | None = None, version: str | None = None,
                 description: str | None = None, retries: int = 0, retry_delay_seconds: Any = None,
                 timeout_seconds: float | None = None, task_runner: TaskRunner | None = None,
                 log_prints: bool = False, validate_parameters: bool = True,
                 tags: Iterable[str] | None = None, on_completion: list[Callable] | None = None,
                 on_failure: list[Callable] | None = None, on_crashed: list[Callable] | None = None,
                 on_cancellation: list[Callable] | None = None, on_running: list[Callable] | None = None,
                 flow_run_name: str | Callable[..., str] | None = None, persist_result: bool | None = None,
                 result_storage: str | os.PathLike | None = None, result_serializer: Any = None,
                 cache_result_in_memory: bool = True) -> None:
        if not callable(fn):
            raise TaskDefinitionError(f"@flow needs a function; got {type(fn).__name__} {fn!r}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
        owner = f"@flow {self.name!r}"
        check_reserved(owner, fn)
        self.version = version
        self.description = description or inspect.getdoc(fn)
        self.retries = retries
        self.retry_delays = check_retry_options(owner, retries, retry_delay_seconds, None)
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
        self.on_completion_hooks = check_hooks(owner, "on_completion", on_completion)
        self.on_failure_hooks = check_hooks(owner, "on_failure", on_failure)
        self.on_crashed_hooks = check_hooks(owner, "on_crashed", on_crashed)
        self.on_cancellation_hooks = check_hooks(owner, "on_cancellation", on_cancellation)
        self.on_running_hooks = check_hooks(owner, "on_running", on_running)
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
        return Flow(self.fn, **{**self._options, **options})

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

    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow and return its result (or its final state with return_state=True).

        An async flow returns a coroutine to await, except when called inside a sync flow
        or task, where it runs to completion.
        """
        parent = flow_run_context.get()
        if self.is_async:
            coro = self._run_async(parent, args, kwargs, return_state)
            if parent is not None and not parent.is_async:
                return run_coro_sync(coro)
            return coro
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
                         return_state: bool) -> Any:
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
        if self.flow_run_name is not None:
            run.name = run_name(f"@flow {self.name!r}", "flow_run_name", self.flow_run_name, run.parameters)
        if run.state is None:
            enter_flow_state(run, "Pending")
        return run, ctx, bound

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
