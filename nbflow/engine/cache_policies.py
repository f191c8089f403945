"""Cache policies, as in Prefect 3: small parts of a cache key, combined with ``+``.

``INPUTS + TASK_SOURCE`` keys a task run on its arguments and its code. A policy's
``compute_key`` returns a hex key, or None for "do not cache this run"; it raises
FingerprintError when an argument has no content to key on (the engine then runs the
task uncached and says why). Keys are hex sha256 digests, safe as file names.
"""

from __future__ import annotations

import hashlib
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbflow.engine.fingerprint import closure_fingerprint, fingerprint, fingerprint_arguments
from nbflow.engine.source_fingerprint import source_fingerprint
from nbflow.errors import FingerprintError

__all__ = [
    "DEFAULT", "FLOW_PARAMETERS", "INPUTS", "NO_CACHE", "RUN_ID", "TASK_SOURCE", "CacheKeyFnPolicy",
    "CachePolicy", "CompoundCachePolicy", "FlowParameters", "Inputs", "RunId", "TaskSource",
    "task_input_hash",
]

logger = logging.getLogger(__name__)


class CachePolicy:
    """A rule that turns a task run into a cache key; ``a + b`` keys on both."""

    #: Labels this policy's part in a compound key, so parts never stand in for each other.
    name = "policy"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        """The hex cache key of this run, or None to leave it uncached."""
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _NoCache):
            return other
        return CompoundCachePolicy((self, other))

    def __repr__(self) -> str:
        return self.name.upper()

    def __sub__(self, name: str) -> CachePolicy:
        raise TypeError(
            f"Cannot exclude {name!r} from {self!r}: only a policy with INPUTS in it keys on "
            f"arguments. Use INPUTS - {name!r}, or (INPUTS + TASK_SOURCE) - {name!r}.")


@dataclass(frozen=True, repr=False)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key of the keys of its parts, in order; parts that
    return None are left out, and all None gives None."""

    policies: tuple[CachePolicy, ...]
    name = "compound"

    def __post_init__(self) -> None:
        flat: list[CachePolicy] = []
        for policy in self.policies:
            flat.extend(policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,))
        object.__setattr__(self, "policies", tuple(flat))

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        parts = []
        for i, policy in enumerate(self.policies):
            key = policy.compute_key(task_ctx, inputs, flow_parameters)
            if key is not None:
                parts.append(f"{i}:{policy.name}:{len(key)}:{key}")
        if not parts:
            return None
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def __sub__(self, name: str) -> CachePolicy:
        if not any(isinstance(p, Inputs) for p in self.policies):
            return super().__sub__(name)
        return CompoundCachePolicy(tuple(p - name if isinstance(p, Inputs) else p for p in self.policies))

    def __repr__(self) -> str:
        return " + ".join(map(repr, self.policies))


@dataclass(frozen=True, repr=False)
class _NoCache(CachePolicy):
    """Never cache: the key is always None, and adding it to any policy gives NO_CACHE."""

    name = "no_cache"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return self

    def __radd__(self, other: CachePolicy) -> CachePolicy:
        return self


@dataclass(frozen=True, repr=False)
class Inputs(CachePolicy):
    """The run's bound arguments, by content (see ``nbflow.engine.fingerprint``).

    An argument without a fingerprint that an upstream task run produced is keyed by
    that run's cache key, when the engine passes ``task_ctx.upstream_cache_keys``
    ({argument name: cache key}).
    """

    exclude: frozenset[str] = frozenset()
    name = "inputs"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str:
        if self.exclude:
            inputs = {k: v for k, v in inputs.items() if k not in self.exclude}
        return fingerprint_arguments(inputs, known=getattr(task_ctx, "upstream_cache_keys", None))

    def __sub__(self, name: str) -> Inputs:
        if not isinstance(name, str):
            raise TypeError(f"INPUTS - x takes an argument name (a str); got {name!r}.")
        return Inputs(self.exclude | {name})

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in sorted(self.exclude))


@dataclass(frozen=True, repr=False)
class TaskSource(CachePolicy):
    """The task's code: its source (decorators, comments and docstrings left out), the
    user functions, classes and constants it reaches, and the values in its closure."""

    name = "task_source"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        if task_ctx is None:
            return None
        return code_fingerprint(task_ctx.task.fn)


@dataclass(frozen=True, repr=False)
class RunId(CachePolicy):
    """The flow run: reuse results only within one flow run (a lone task run: within itself)."""

    name = "run_id"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        if task_ctx is None:
            return None
        run_id = getattr(task_ctx, "flow_run_id", None) or task_ctx.task_run.flow_run_id or task_ctx.task_run.id
        return fingerprint(str(run_id))


@dataclass(frozen=True, repr=False)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in; None outside a flow or without any."""

    name = "flow_parameters"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        if not flow_parameters:
            return None
        return fingerprint_arguments(flow_parameters)


@dataclass(frozen=True)
class CacheKeyFnPolicy(CachePolicy):
    """A user's ``cache_key_fn(context, parameters) -> str | None``, as in Prefect.

    Its string is hashed into a hex key (so any string is a safe key); None means
    "do not cache this run".
    """

    cache_key_fn: Callable[[Any, dict[str, Any]], Any]
    name = "cache_key_fn"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any]) -> str | None:
        key = self.cache_key_fn(task_ctx, inputs)
        if key is None:
            return None
        try:
            return fingerprint(key)
        except FingerprintError:
            raise FingerprintError(
                f"cache_key_fn {_callable_name(self.cache_key_fn)} returned {key!r}, which has no "
                f"stable content to key on; make it return a str (or None to skip caching).") from None


NO_CACHE = _NoCache()
INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
#: Prefect's default: identical calls within one flow run share a result. nbflow's
#: tasks cache only when asked to (DESIGN: "no surprise caching").
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """Hex fingerprint of a task function's code and closure; other callables by content."""
    if not isinstance(fn, types.FunctionType):
        return fingerprint(fn, name=f"the task function {_callable_name(fn)}")
    source = source_fingerprint(fn)
    closure = closure_fingerprint(fn)
    if closure is None:
        return source
    return hashlib.sha256(f"{source}\n{closure}".encode()).hexdigest()


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's ``cache_key_fn``: the task's key, its code and its arguments.

    Returns None (the run is not cached) when an argument cannot be fingerprinted, as
    Prefect does; a debug log says which.
    """
    try:
        parts = (context.task.task_key, code_fingerprint(context.task.fn), fingerprint_arguments(arguments))
    except FingerprintError as exc:
        logger.debug("task_input_hash: not caching %s: %s", getattr(context.task, "name", "task"), exc)
        return None
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__
