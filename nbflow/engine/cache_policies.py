"""Cache policies, as in Prefect 3: small parts of a cache key, combined with ``+``.

``INPUTS + TASK_SOURCE`` keys a task run on its arguments and its code; ``DEFAULT`` (every
task's policy unless told otherwise) adds ``RUN_ID``. A policy's
``compute_key(task_ctx, inputs, flow_parameters, **kwargs)`` returns a hex key, or None for
"do not cache this run"; it raises FingerprintError when an argument has no content to key
on (the engine then runs the task uncached and says why). A key is only used when the
task's results are persisted (Prefect's rule, see ``Task``). ``.configure(key_storage=...)``
keeps a policy's cache entries in a folder of their own.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbflow.engine.fingerprint import fingerprint, fingerprint_arguments
from nbflow.engine.source_fingerprint import is_user_object, source_fingerprint
from nbflow.errors import FingerprintError

__all__ = [
    "DEFAULT", "FLOW_PARAMETERS", "INPUTS", "NO_CACHE", "NONE", "RUN_ID", "TASK_SOURCE",
    "CacheKeyFnPolicy", "CachePolicy", "CompoundCachePolicy", "FlowParameters", "Inputs", "RunId",
    "TaskSource", "task_input_hash",
]

logger = logging.getLogger(__name__)

ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")


@dataclass(repr=False)
class CachePolicy:
    """A rule that turns a task run into a cache key; ``a + b`` keys on both.

    ``key_storage`` (a folder) holds this policy's cache entries instead of NBFLOW_HOME's
    cache index; ``isolation_level="SERIALIZABLE"`` with a ``lock_manager`` lets one run at a
    time compute a key's result while identical runs wait for it.
    """

    key_storage: str | Path | None = field(default=None, kw_only=True)
    isolation_level: Any = field(default=None, kw_only=True)
    lock_manager: Any = field(default=None, kw_only=True)

    #: Labels this policy's part in a compound key, so parts never stand in for each other.
    name = "policy"

    @classmethod
    def from_cache_key_fn(cls, cache_key_fn: Callable[[Any, dict[str, Any]], Any]) -> CacheKeyFnPolicy:
        """The policy of a ``cache_key_fn(context, parameters)``."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(self, key_storage: str | Path | None = None, lock_manager: Any = None,
                  isolation_level: Any = None) -> CachePolicy:
        """A copy of this policy with the given settings (None keeps the current one)."""
        new = copy.copy(self)
        if key_storage is not None:
            new.key_storage = key_storage
        if lock_manager is not None:
            new.lock_manager = lock_manager
        if isolation_level is not None:
            new.isolation_level = isolation_level
        return new

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        """The hex cache key of this run, or None to leave it uncached."""
        raise NotImplementedError

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _None):
            return self
        return CompoundCachePolicy(policies=[self, other], **_merged_settings(self, other))

    def __sub__(self, name: str) -> CachePolicy:
        """Leave argument ``name`` out of the key; only INPUTS keys on arguments, so for other
        policies this changes nothing (as in Prefect)."""
        _check_argument_name(name)
        return self

    def __repr__(self) -> str:
        return self.name.upper() + _settings_repr(self)


@dataclass(repr=False)
class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key of the keys of its parts; parts that return None
    are left out, and all None gives None. Nested compounds are flattened and every INPUTS
    part is merged into one that excludes what any of them excluded."""

    policies: list[CachePolicy] = field(default_factory=list)
    name = "compound"

    def __post_init__(self) -> None:
        flat: list[CachePolicy] = []
        for policy in self.policies:
            flat.extend(policy.policies if isinstance(policy, CompoundCachePolicy) else (policy,))
        inputs = [p for p in flat if isinstance(p, Inputs)]
        self.policies = [p for p in flat if not isinstance(p, Inputs)]
        if inputs:
            excluded = dict.fromkeys(name for p in inputs for name in p.exclude)
            self.policies.append(Inputs(exclude=list(excluded)))

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        parts = []
        for policy in self.policies:
            key = policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
            if key is not None:
                parts.append(f"{policy.name}:{len(key)}:{key}")
        if not parts:
            return None
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _None):
            return self
        return CompoundCachePolicy(policies=[*self.policies, other], **_merged_settings(self, other))

    def __sub__(self, name: str) -> CachePolicy:
        _check_argument_name(name)
        if not any(isinstance(p, Inputs) for p in self.policies):
            return self
        return CompoundCachePolicy(policies=[*self.policies, Inputs(exclude=[name])],
                                   **_settings(self))

    def __repr__(self) -> str:
        ordered = sorted(self.policies, key=lambda p: not isinstance(p, Inputs))
        return " + ".join(map(repr, ordered)) + _settings_repr(self)


@dataclass(repr=False)
class _None(CachePolicy):
    """Never cache: the key is always None; adding it to a policy leaves that policy as it is."""

    name = "no_cache"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return other

    def __repr__(self) -> str:
        return "NO_CACHE"


@dataclass(repr=False)
class Inputs(CachePolicy):
    """The run's bound arguments, by content (see ``nbflow.engine.fingerprint``); None when
    the task takes none.

    An argument without a fingerprint that an upstream task run produced is keyed by
    that run's cache key, when the engine passes ``task_ctx.upstream_cache_keys``
    ({argument name: cache key}).
    """

    exclude: list[str] = field(default_factory=list)
    name = "inputs"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if not inputs:
            return None
        if self.exclude:
            inputs = {k: v for k, v in inputs.items() if k not in self.exclude}
        try:
            return fingerprint_arguments(inputs, known=getattr(task_ctx, "upstream_cache_keys", None))
        except FingerprintError as exc:
            name = getattr(exc, "argument", "name")
            raise FingerprintError(
                f"{getattr(exc, 'what', exc)}\n\nThis often occurs when task inputs contain objects that "
                "cannot be cached like locks, file handles, or other system resources.\n\n"
                "To resolve this, you can:\n"
                "  1. Exclude these arguments by defining a custom `cache_key_fn`\n"
                "  2. Disable caching by passing `cache_policy=NO_CACHE`\n"
                f"  3. Leave the argument out of the key: `cache_policy=DEFAULT - {name!r}` "
                f"(or INPUTS - {name!r})") from None

    def __sub__(self, name: str) -> Inputs:
        _check_argument_name(name)
        return dataclasses.replace(self, exclude=[*self.exclude, name])

    def __repr__(self) -> str:
        return "INPUTS" + "".join(f" - {n!r}" for n in self.exclude) + _settings_repr(self)


@dataclass(repr=False)
class TaskSource(CachePolicy):
    """The task's code: its source (decorators, comments, docstrings and its own name left
    out) and the user functions, classes and constants it reaches (see
    ``nbflow.engine.source_fingerprint``)."""

    name = "task_source"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        task = task_ctx.task
        fn = getattr(task, "fn", None)
        if isinstance(fn, (types.FunctionType, types.MethodType)):
            return code_fingerprint(fn)
        stored = getattr(task, "source_code", None)  # a task whose source was kept as text
        if isinstance(stored, str):
            return hashlib.sha256(stored.encode()).hexdigest()
        return code_fingerprint(fn if callable(fn) else task)


@dataclass(repr=False)
class RunId(CachePolicy):
    """The flow run: reuse results only within one flow run (a lone task run: within itself)."""

    name = "run_id"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if not task_ctx:
            return None
        run_id = getattr(task_ctx, "flow_run_id", None) or task_ctx.task_run.flow_run_id or task_ctx.task_run.id
        return fingerprint(str(run_id))


@dataclass(repr=False)
class FlowParameters(CachePolicy):
    """The parameters of the flow run the task runs in; None outside a flow or without any."""

    name = "flow_parameters"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if not flow_parameters:
            return None
        return fingerprint_arguments(flow_parameters)


@dataclass(repr=False)
class CacheKeyFnPolicy(CachePolicy):
    """A user's ``cache_key_fn(context, parameters) -> str | None``, as in Prefect.

    Its string is hashed into a hex key (so any string is a safe key); None means
    "do not cache this run".
    """

    cache_key_fn: Callable[[Any, dict[str, Any]], Any] | None = None
    name = "cache_key_fn"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str | None:
        if self.cache_key_fn is None:
            return None
        key = self.cache_key_fn(task_ctx, inputs)
        if key is None:
            return None
        try:
            return fingerprint(key)
        except FingerprintError:
            raise FingerprintError(
                f"cache_key_fn {_callable_name(self.cache_key_fn)} returned {key!r}, which has no "
                f"stable content to key on; make it return a str (or None to skip caching).") from None

    def __repr__(self) -> str:
        return f"CacheKeyFnPolicy({_callable_name(self.cache_key_fn)})" + _settings_repr(self)


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """Hex fingerprint of a task function's code (see ``source_fingerprint``): its source and
    the user code and constants it reaches, not the data its closure or globals hold."""
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if isinstance(fn, types.FunctionType):
        return source_fingerprint(fn)
    if is_user_object(type(fn)) and not isinstance(fn, type):
        return source_fingerprint(type(fn))  # a callable object of the user's class: its code
    return fingerprint(fn, name=f"the task function {_callable_name(fn)}")


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's ``cache_key_fn``: the task's key, its code and its arguments, nothing else.

    Returns None (the run is not cached) when an argument cannot be fingerprinted, as
    Prefect does; a debug log says which.
    """
    try:
        parts = (context.task.task_key, code_fingerprint(context.task.fn), fingerprint_arguments(arguments))
    except FingerprintError as exc:
        logger.debug("task_input_hash: not caching %s: %s", getattr(context.task, "name", "task"), exc)
        return None
    return hashlib.sha256("\n".join(map(str, parts)).encode()).hexdigest()


def check_policy_settings(owner: str, policy: Any) -> str | None:
    """What is wrong with a policy's key_storage / isolation_level, or None."""
    storage = getattr(policy, "key_storage", None)
    if storage is not None and not isinstance(storage, (str, Path)):
        return (f"{owner}: the cache policy's key_storage must be a folder (a str or pathlib.Path); got "
                f"{storage!r}. nbflow keeps cache entries on the local or a shared filesystem.")
    level = isolation_level_name(policy)
    if level is not None and level not in ISOLATION_LEVELS:
        return (f"{owner}: the cache policy's isolation_level must be 'READ_COMMITTED' or 'SERIALIZABLE'; "
                f"got {getattr(policy, 'isolation_level', None)!r}.")
    return None


def isolation_level_name(policy: Any) -> str | None:
    """'READ_COMMITTED', 'SERIALIZABLE' (from a str or an enum member), or None."""
    level = getattr(policy, "isolation_level", None)
    if level is None:
        return None
    return str(getattr(level, "value", level)).upper()


def _check_argument_name(name: Any) -> None:
    if not isinstance(name, str):
        raise TypeError(f"A cache policy can only leave out an argument name (a str), as in "
                        f"INPUTS - 'x'; got {name!r}.")


def _settings(policy: CachePolicy) -> dict[str, Any]:
    return {"key_storage": policy.key_storage, "isolation_level": policy.isolation_level,
            "lock_manager": policy.lock_manager}


def _merged_settings(a: CachePolicy, b: CachePolicy) -> dict[str, Any]:
    """The settings of ``a + b``: each one from whichever side sets it; both may not differ."""
    for attr, what in (("key_storage", "storage locations"), ("isolation_level", "isolation levels"),
                       ("lock_manager", "lock implementations")):
        x, y = getattr(a, attr), getattr(b, attr)
        if x is not None and y is not None and x != y:
            raise ValueError(f"Cannot add CachePolicies with different {what}. ({attr} {x!r} on one "
                             f"side, {y!r} on the other: configure the sum once, e.g. "
                             f"(INPUTS + TASK_SOURCE).configure({attr}=...))")
    return {attr: getattr(a, attr) if getattr(a, attr) is not None else getattr(b, attr)
            for attr in ("key_storage", "isolation_level", "lock_manager")}


def _settings_repr(policy: CachePolicy) -> str:
    given = {k: v for k, v in _settings(policy).items() if v is not None}
    if not given:
        return ""
    return ".configure(" + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")"


def _callable_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


NO_CACHE = _None()
NONE = NO_CACHE
INPUTS = Inputs()
TASK_SOURCE = TaskSource()
RUN_ID = RunId()
FLOW_PARAMETERS = FlowParameters()
#: Every task's policy unless told otherwise (Prefect's DEFAULT): used only when the task's
#: results are persisted, so by default nothing is cached.
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID
