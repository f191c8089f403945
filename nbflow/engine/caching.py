"""The engine's side of caching: compute a key, look it up, persist a result under it.

Look-ups read the file-based cache index under NBFLOW_HOME (never the database).
A key that cannot be computed, or an entry that fails its integrity check, means
the task runs as if uncached, with a warning saying why: never a false hit.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Any

from nbflow import settings
from nbflow.engine.context import FlowRunContext, TaskRunContext
from nbflow.engine.models import TaskRun
from nbflow.engine.run_logging import task_run_logger
from nbflow.errors import FingerprintError, ResultIntegrityError
from nbflow.store.buffer import recorder
from nbflow.store.cache_index import CacheIndex
from nbflow.store.results import ResultStore

MISS = object()
_HEX_KEY = re.compile(r"[0-9a-f]{16,128}")

_lock = threading.Lock()
_stores: dict[Path, tuple[ResultStore, CacheIndex]] = {}


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


def compute_key(task: Any, ctx: TaskRunContext, flow_ctx: FlowRunContext | None) -> str | None:
    """The task run's cache key, or None (uncached) with a warning if it cannot be computed."""
    flow_parameters = flow_ctx.flow_run.parameters if flow_ctx is not None else {}
    try:
        key = task.cache_policy.compute_key(ctx, ctx.parameters, flow_parameters)
    except FingerprintError as exc:
        task_run_logger(ctx.task_run).warning("Not caching this run: %s", exc)
        return None
    if key is None or _HEX_KEY.fullmatch(key):
        return key
    # A custom policy may return any string; the index takes hex digests only.
    return hashlib.sha256(str(key).encode()).hexdigest()


def lookup(task: Any, run: TaskRun, key: str) -> Any:
    """The cached value for `key`, or MISS."""
    entry = cache_index().get(key)
    if entry is None:
        return MISS
    try:
        value = (task.result_storage or result_store()).read(entry.ref)
    except ResultIntegrityError as exc:
        task_run_logger(run).warning("Cache entry refused, recomputing: %s", exc)
        cache_index().delete(key)
        return MISS
    run.result_format = entry.ref.format
    run.result_path = entry.ref.path
    return value


def persist(task: Any, run: TaskRun, value: Any, key: str | None) -> None:
    """Write the result to result storage and, with a key, add it to the cache index."""
    ref = (task.result_storage or result_store()).write(value)
    run.result_format = ref.format
    run.result_path = ref.path
    if key is None:
        return
    expires = None
    if task.cache_expiration is not None:
        expires = time.time() + task.cache_expiration.total_seconds()
        run.cache_expiration = expires
    entry = cache_index().put(key, ref, task_name=task.name, task_run_id=run.id, expires=expires)
    recorder.cache_entry(key, task.name, run.id, ref.format, ref.path, entry.created, expires)
