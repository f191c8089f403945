"""The engine's side of caching: compute a key, look it up, persist a result under it.

Look-ups read the file-based cache index under NBFLOW_HOME, or the folder a policy's
``key_storage`` names (never the database). A key that cannot be computed, or an entry
that fails its integrity check, means the task runs as if uncached, with a warning saying
why: never a false hit. Results go to the task's ``result_storage`` folder, else its
flow's (or a parent flow's), else ``NBFLOW_HOME/results``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nbflow import settings
from nbflow.engine.cache_policies import isolation_level_name
from nbflow.engine.context import FlowRunContext, TaskRunContext
from nbflow.engine.models import TaskRun
from nbflow.engine.result_options import storage_path
from nbflow.engine.run_logging import task_run_logger
from nbflow.errors import ConfigurationError, FingerprintError, ResultIntegrityError, TaskDefinitionError
from nbflow.runtime import deployment as runtime_deployment
from nbflow.runtime import flow_run as runtime_flow_run
from nbflow.store.buffer import recorder
from nbflow.store.cache_index import CacheIndex
from nbflow.store.results import ResultStore
from nbflow.store.serializers import resolve_serializer

MISS = object()
_HEX_KEY = re.compile(r"[0-9a-f]{16,128}")

_lock = threading.Lock()
_stores: dict[Path, tuple[ResultStore, CacheIndex]] = {}
#: result_storage folder -> its ResultStore; key_storage folder -> its CacheIndex.
_folder_stores: dict[tuple[Path, Path], ResultStore] = {}
_key_indexes: dict[Path, CacheIndex] = {}


def _stores_for_home() -> tuple[ResultStore, CacheIndex]:
    home = settings.home()
    found = _stores.get(home)
    if found is None:
        with _lock:
            found = _stores.get(home)
            if found is None:
                found = _stores[home] = (ResultStore(home / "results", key_path=home / "hmac.key"),
                                        CacheIndex(home / "cache"))
    return found


def result_store() -> ResultStore:
    """Where persisted results of this NBFLOW_HOME live."""
    return _stores_for_home()[0]


def cache_index() -> CacheIndex:
    """The cache index of this NBFLOW_HOME."""
    return _stores_for_home()[1]


def storage_for(task: Any, flow_ctx: FlowRunContext | None) -> Any:
    """The store the task's results go to: its result_store, its result_storage folder, the
    nearest enclosing flow's result_storage folder, else NBFLOW_HOME/results."""
    if task.result_store is not None:
        return task.result_store
    storage = task.result_storage
    ctx = flow_ctx
    while storage is None and ctx is not None:
        storage = getattr(ctx.flow, "result_storage", None)
        ctx = ctx.parent
    if storage is None:
        return result_store()
    folder = storage_path(storage)
    home = settings.home()
    found = _folder_stores.get((home, folder))
    if found is None:
        with _lock:
            found = _folder_stores.setdefault((home, folder), ResultStore(folder, key_path=home / "hmac.key"))
    return found


def serializer_for(task: Any, flow_ctx: FlowRunContext | None) -> Any:
    """The task's result_serializer, else the nearest enclosing flow's, resolved; None: by value."""
    chosen = task.result_serializer
    ctx = flow_ctx
    while chosen is None and ctx is not None:
        chosen = getattr(ctx.flow, "result_serializer", None)
        ctx = ctx.parent
    return None if chosen is None else resolve_serializer(chosen)


def index_for(task: Any) -> CacheIndex:
    """Where the task's cache entries live: its policy's key_storage folder, else NBFLOW_HOME/cache."""
    folder = getattr(task.cache_policy, "key_storage", None)
    if folder is None:
        return cache_index()
    path = storage_path(folder)
    found = _key_indexes.get(path)
    if found is None:
        with _lock:
            found = _key_indexes.setdefault(path, CacheIndex(path, flat=True))
    return found


def compute_key(task: Any, ctx: TaskRunContext, flow_ctx: FlowRunContext | None) -> str | None:
    """The task run's cache key, or None (uncached) with a warning if it cannot be computed.

    Without a cache policy, a result_storage_key is the key (as in Prefect: a result already
    stored under that name is reused).
    """
    policy = task.cache_policy
    if policy is None:
        if task.result_storage_key is None:
            return None
        where = storage_for(task, flow_ctx)
        name = storage_key(task, ctx)
        return hashlib.sha256(f"result_storage_key\0{getattr(where, 'root', '')}\0{name}".encode()).hexdigest()
    flow_parameters = flow_ctx.flow_run.parameters if flow_ctx is not None else {}
    try:
        key = policy.compute_key(ctx, ctx.parameters, flow_parameters)
    except FingerprintError as exc:
        task_run_logger(ctx.task_run).warning(
            "Error encountered when computing cache key - result will not be cached: %s", exc)
        return None
    if key is None or _HEX_KEY.fullmatch(key):
        return key
    # A custom policy may return any string; the index takes hex digests only.
    return hashlib.sha256(str(key).encode()).hexdigest()


def storage_key(task: Any, ctx: TaskRunContext) -> str:
    """The task's result_storage_key filled in from its parameters and run, as Prefect does:
    ``{parameters[x]}``, ``{flow_run.id}``, ``{task_run.name}``, ``{deployment.name}``..."""
    run = ctx.task_run
    task_run = SimpleNamespace(id=run.id, name=run.name, task_name=run.task_name, parameters=ctx.parameters,
                               run_count=run.run_count, tags=list(run.tags))
    try:
        return task.result_storage_key.format(parameters=ctx.parameters, task_run=task_run,
                                              flow_run=runtime_flow_run, deployment=runtime_deployment)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise TaskDefinitionError(
            f"@task {task.name!r}: result_storage_key {task.result_storage_key!r} could not be filled in "
            f"({type(exc).__name__}: {exc}). It may use {{parameters[NAME]}} for the task's arguments "
            f"({', '.join(sorted(ctx.parameters)) or 'none'}), {{task_run.id}}, {{task_run.name}}, "
            "{flow_run.id}, {flow_run.name}, {deployment.name}.") from None


def lock_for(task: Any) -> Any:
    """The lock manager that serializes runs of one key, or None (READ_COMMITTED, the default).
    Raises ConfigurationError for SERIALIZABLE without a lock manager, as Prefect does."""
    policy = task.cache_policy
    if policy is None or isolation_level_name(policy) != "SERIALIZABLE":
        return None
    if policy.lock_manager is None:
        raise ConfigurationError(
            f"Isolation level SERIALIZABLE is not supported by provided configuration of task "
            f"'{task.name}': give its cache policy a lock manager, e.g. "
            "policy.configure(isolation_level='SERIALIZABLE', lock_manager=MemoryLockManager()).")
    return policy.lock_manager


def lookup(task: Any, run: TaskRun, key: str, flow_ctx: FlowRunContext | None) -> Any:
    """The cached value for `key`, or MISS."""
    index = index_for(task)
    entry = index.get(key)
    if entry is None:
        return MISS
    try:
        value = storage_for(task, flow_ctx).read(entry.ref, **_serializer_kw(task, flow_ctx, entry.ref.format))
    except ResultIntegrityError as exc:
        task_run_logger(run).warning("Cache entry refused, recomputing: %s", exc)
        index.delete(key)
        return MISS
    run.result_format = entry.ref.format
    run.result_path = entry.ref.path
    return value


def persist(task: Any, run: TaskRun, value: Any, key: str | None, ctx: TaskRunContext,
            flow_ctx: FlowRunContext | None, parent: TaskRunContext | None = None) -> Any:
    """Write the result to result storage and, with a key, add it to the cache index (once the
    enclosing task run `parent`, if any, completes); returns a reader of the stored result
    (for cache_result_in_memory=False)."""
    store = storage_for(task, flow_ctx)
    serializer = serializer_for(task, flow_ctx)
    options: dict[str, Any] = {}
    if serializer is not None:
        options["serializer"] = serializer
    if task.result_storage_key is not None:
        options["path"] = storage_key(task, ctx)
    ref = store.write(value, **options)
    run.result_format = ref.format
    run.result_path = ref.path
    if key is not None:
        expires = None
        if task.cache_expiration is not None:
            expires = time.time() + task.cache_expiration.total_seconds()
            run.cache_expiration = expires
        index = index_for(task)

        def commit() -> None:
            entry = index.put(key, ref, task_name=task.name, task_run_id=run.id, expires=expires)
            recorder.cache_entry(key, task.name, run.id, ref.format, ref.path, entry.created, expires)

        if parent is None or not defer_commit(parent, [commit]):
            commit()
    read_options = {"serializer": serializer} if ref.format == "custom" else {}
    return lambda: store.read(ref, **read_options)


#: a task run context's pending_commits once its run has ended: nested runs then commit directly.
CLOSED: tuple = ()
_commit_lock = threading.Lock()


def defer_commit(parent: TaskRunContext, commits: list[Any]) -> bool:
    """Hold `commits` until the task run of `parent` completes; False if it already ended."""
    with _commit_lock:
        pending = parent.pending_commits
        if pending is CLOSED:
            return False
        if pending is None:
            parent.pending_commits = pending = []
        pending.extend(commits)
    return True


def settle_commits(pending: list[Any], parent: TaskRunContext | None, completed: bool) -> None:
    """A task run ended with the cache entries of runs nested in it `pending`: write them if it
    completed (through its own parent, if nested too), else drop them.

    The run marks its context CLOSED without the lock (the hot path): a nested run finishing in
    another thread at that very moment may lose its entry, which costs a recomputation later,
    never a false hit.
    """
    if not completed:
        return
    if parent is not None and defer_commit(parent, pending):
        return
    for commit in pending:
        commit()


def _serializer_kw(task: Any, flow_ctx: FlowRunContext | None, fmt: str) -> dict[str, Any]:
    if fmt != "custom":
        return {}
    return {"serializer": serializer_for(task, flow_ctx)}
