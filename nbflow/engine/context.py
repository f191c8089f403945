"""What the code running inside a flow or task can see: the run it belongs to."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator

from nbflow.errors import NbflowError

if TYPE_CHECKING:
    from nbflow.engine.models import FlowRun, TaskRun


NOT_SET = object()


class FlowRunContext:
    """The flow run being executed, with what its tasks share."""

    __slots__ = ("flow", "flow_run", "task_runner", "futures", "results", "log_prints",
                 "parent", "is_async", "_own_runner", "return_value", "persist_result")

    def __init__(self, flow: Any, flow_run: "FlowRun", *, task_runner: Any, log_prints: bool,
                 parent: "FlowRunContext | None", is_async: bool) -> None:
        self.flow = flow
        self.flow_run = flow_run
        #: the runner .submit()/.map() use; started on first use.
        self.task_runner = task_runner
        #: futures submitted in this run; waited for before the flow finishes.
        self.futures: list = []
        #: id(result) -> (result, task_run): recognises task results passed on to other tasks.
        self.results: dict[int, tuple[Any, Any]] = {}
        self.log_prints = log_prints
        self.parent = parent
        self.is_async = is_async
        self._own_runner = False
        #: what the flow's body returned, futures replaced by their states (NOT_SET until then).
        self.return_value: Any = NOT_SET
        #: whether its tasks persist results unless they say otherwise: the flow's persist_result,
        #: else its parent flow's, else False (Prefect's default).
        own = getattr(flow, "persist_result", None)
        self.persist_result: bool = own if own is not None else (parent.persist_result if parent else False)

    @property
    def flow_run_id(self) -> str:
        return self.flow_run.id

    @classmethod
    def get(cls) -> "FlowRunContext | None":
        """The flow run being executed here, or None (Prefect's FlowRunContext.get())."""
        return flow_run_context.get()


class TaskRunContext:
    """The task run being executed: passed to cache_key_fn and cache policies."""

    __slots__ = ("task", "task_run", "flow_run_id", "_parameters", "_inputs", "log_prints",
                 "upstream_cache_keys", "pending_commits")

    def __init__(self, task: Any, task_run: "TaskRun", parameters: dict[str, Any] | None,
                 log_prints: bool, inputs: Any = None) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run_id = task_run.flow_run_id
        #: the call's arguments by name; bound from `inputs` only when asked (it costs µs).
        self._parameters = parameters
        self._inputs = inputs
        self.log_prints = log_prints
        #: argument name -> cache key of the upstream run that produced it (for INPUTS when a
        #: value has no fingerprint of its own).
        self.upstream_cache_keys: dict[str, str] = {}
        #: cache entries of task runs nested in this one, written when it completes (Prefect's
        #: lazy commit: an outer task that fails leaves no cache entries of its inner tasks).
        self.pending_commits: Any = None

    @classmethod
    def model_construct(cls, **fields: Any) -> "TaskRunContext":
        """A context with just the given fields (others None), as Prefect's pydantic contexts
        allow: for calling cache policies and cache_key_fn outside a run."""
        ctx = cls.__new__(cls)
        for name in cls.__slots__:
            object.__setattr__(ctx, name, None)
        ctx.upstream_cache_keys = {}
        for name, value in fields.items():
            setattr(ctx, name, value)
        return ctx

    @property
    def parameters(self) -> dict[str, Any]:
        if self._parameters is None:
            inputs = self._inputs
            self._parameters = self.task.bind(inputs.args, inputs.kwargs) if inputs is not None else {}
        return self._parameters

    @parameters.setter
    def parameters(self, value: dict[str, Any]) -> None:
        self._parameters = value

    @classmethod
    def get(cls) -> "TaskRunContext | None":
        """The task run being executed here, or None (Prefect's TaskRunContext.get())."""
        return task_run_context.get()


flow_run_context: ContextVar[FlowRunContext | None] = ContextVar("nbflow_flow_run", default=None)
task_run_context: ContextVar[TaskRunContext | None] = ContextVar("nbflow_task_run", default=None)


#: tags that `with tags(...)` adds to the runs created inside the block.
current_tags: ContextVar[tuple[str, ...]] = ContextVar("nbflow_tags", default=())


@contextlib.contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add tags to every flow and task run created inside the block (nested blocks combine);
    yields the tags in force."""
    if not all(isinstance(t, str) for t in new_tags):
        raise TypeError(f"tags(...) takes strings; got {new_tags!r}.")
    merged = tuple(dict.fromkeys((*current_tags.get(), *new_tags)))
    token = current_tags.set(merged)
    try:
        yield set(merged)
    finally:
        current_tags.reset(token)


def with_tags(own: tuple[str, ...]) -> tuple[str, ...]:
    """A run's tags: its task's or flow's own and those of enclosing `with tags(...)` blocks."""
    extra = current_tags.get()
    if not extra:
        return own
    return tuple(dict.fromkeys((*own, *extra)))


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The innermost run context: the task run if inside one, else the flow run."""
    ctx = task_run_context.get() or flow_run_context.get()
    if ctx is None:
        raise NbflowError("No run context: get_run_context() works only inside a flow or task run.")
    return ctx


class TagsContext:
    """The tags of enclosing `with tags(...)` blocks (Prefect's TagsContext): `TagsContext.get().current_tags`."""

    __slots__ = ("current_tags",)

    def __init__(self, current_tags: set[str] | None = None) -> None:
        self.current_tags = set(current_tags or ())

    @classmethod
    def get(cls) -> "TagsContext":
        return cls(set(current_tags.get()))
