"""Prefect 3's rules for a task's cache policy and result persistence, and the result options.

A task's ``cache_policy`` defaults to DEFAULT (INPUTS + TASK_SOURCE + RUN_ID), but a key is
only computed, looked up and written when the task's results are persisted. Results persist
when ``persist_result=True``, or when it is left unset and the task sets a cache policy, a
``cache_key_fn``, ``result_storage``, ``result_serializer`` or ``result_storage_key`` (or
its flow persists results). ``persist_result=False`` turns caching off.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any, Callable

from nbflow.engine.cache_policies import DEFAULT, NO_CACHE, CacheKeyFnPolicy, CachePolicy, check_policy_settings
from nbflow.errors import TaskDefinitionError
from nbflow.store.serializers import resolve_serializer

logger = logging.getLogger("nbflow.tasks")


class _NotSetType:
    """An option left out (Prefect's ``NotSet``), told apart from an explicit None."""

    _instance: _NotSetType | None = None

    def __new__(cls) -> _NotSetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotSet"

    def __bool__(self) -> bool:
        return False


NotSet: Any = _NotSetType()


def task_cache_settings(owner: str, cache_policy: Any, cache_key_fn: Callable | None,
                        cache_expiration: dt.timedelta | None, persist_result: bool | None,
                        result_storage: Any, result_serializer: Any,
                        result_storage_key: str | None) -> tuple[CachePolicy | None, bool | None]:
    """The task's (cache_policy, persist_result) by Prefect's rules, with its warnings."""
    given = cache_policy
    if isinstance(cache_policy, type) and issubclass(cache_policy, CachePolicy):
        cache_policy = cache_policy()  # `cache_policy=INPUTS`'s class: an instance with no settings
    elif cache_policy is not NotSet and cache_policy is not None and not isinstance(cache_policy, CachePolicy):
        raise TaskDefinitionError(
            f"{owner}: cache_policy must be a cache policy such as INPUTS, TASK_SOURCE or "
            f"INPUTS + TASK_SOURCE (or NO_CACHE); got {cache_policy!r}.")
    problem = check_policy_settings(owner, cache_policy)
    if problem:
        raise TaskDefinitionError(problem)
    if cache_policy is not NotSet and cache_key_fn is not None:
        logger.warning("Both `cache_policy` and `cache_key_fn` are set on %s. `cache_key_fn` will be used.", owner)
    if cache_key_fn is not None:
        cache_policy = CacheKeyFnPolicy(cache_key_fn=cache_key_fn)
    if persist_result is None and (
            (given is not NotSet and given is not None and given != NO_CACHE) or cache_key_fn is not None
            or result_storage_key is not None or result_storage is not None or result_serializer is not None):
        persist_result = True
    if persist_result is False:
        if cache_policy is not NotSet and cache_policy is not None and cache_policy != NO_CACHE:
            logger.warning("Ignoring `cache_policy` because `persist_result` is False (%s).", owner)
        policy = None if cache_policy is None else NO_CACHE
    elif cache_policy is NotSet and result_storage_key is None:
        policy = DEFAULT
    elif cache_policy != NO_CACHE and result_storage_key:
        policy = None  # the result_storage_key is the key
    else:
        policy = cache_policy
    if cache_expiration is not None and (persist_result is not True or policy is None or policy == NO_CACHE) \
            and not result_storage_key:
        logger.warning(
            "%s: cache_expiration is set, but %s, so nothing is cached and it has no effect. To cache, "
            "give the task cache_key_fn=task_input_hash or a cache_policy (e.g. INPUTS + TASK_SOURCE), "
            "or set persist_result=True.", owner,
            "persist_result is False" if persist_result is False else "the task does not persist its results")
    return policy, persist_result


def check_result_options(owner: str, result_storage: Any, result_serializer: Any, result_storage_key: Any,
                         cache_result_in_memory: Any) -> None:
    """Raise TaskDefinitionError naming a result option that has the wrong shape."""
    if result_storage is not None and not isinstance(result_storage, (str, os.PathLike)):
        raise TaskDefinitionError(
            f"{owner}: result_storage must be a local folder (a str or pathlib.Path); got {result_storage!r}. "
            "nbflow writes results to the local or a shared filesystem, not to storage blocks.")
    if result_serializer is not None:
        try:
            resolve_serializer(result_serializer)
        except (TypeError, ValueError) as exc:
            raise TaskDefinitionError(f"{owner}: {exc}") from None
    if result_storage_key is not None and not isinstance(result_storage_key, str):
        raise TaskDefinitionError(
            f"{owner}: result_storage_key must be a str template such as '{{parameters[name]}}.pkl'; "
            f"got {result_storage_key!r}.")
    if not isinstance(cache_result_in_memory, bool):
        raise TaskDefinitionError(f"{owner}: cache_result_in_memory must be True or False; "
                                  f"got {cache_result_in_memory!r}.")


def flow_persist_result(persist_result: bool | None, result_storage: Any, result_serializer: Any) -> bool | None:
    """A flow's persist_result: True when left unset and it names a result storage or serializer."""
    if persist_result is None and (result_storage is not None or result_serializer is not None):
        return True
    return persist_result


def storage_path(result_storage: Any) -> Path:
    """The folder a result_storage option names, made absolute against the current directory."""
    return Path(os.fspath(result_storage)).absolute()
