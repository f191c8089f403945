"""Which store this process talks to: a running server's API, or the embedded DuckDB file.

A process that owns the store (the server) uses the embedded file directly; any other
process uses the server it finds (`NBFLOW_API_URL`, else `$NBFLOW_HOME/server.json`),
and the embedded file when there is none. When the file turns out to be held by a live
server that had not advertised itself yet (it was starting), the embedded store says so at
once and using_store() goes to that server's API instead.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from nbflow import settings
from nbflow.errors import StoreHeldByServerError
from nbflow.store.records import Batch
from nbflow.store.server_info import find_server, server_off

T = TypeVar("T")

_stores: dict[str, Any] = {}
_lock = threading.Lock()
_owner = False


def current_store() -> Any:
    """The store to use now (one object per database path or server URL)."""
    info = None if _owner else find_server()
    if info is not None:
        return _api_store(info.url, info.token)
    return embedded_store()


def api_client(lock_timeout: float = 10.0) -> Any | None:
    """The server's API this process sends its records to, or None: it uses the embedded file. A client of
    its own, which gives up after `lock_timeout` s when the server does not answer."""
    from nbflow.store.api_store import ApiStore

    info = None if _owner else find_server()
    return ApiStore(info.url, info.token, lock_timeout) if info is not None else None


def using_store(operation: Callable[[Any], T]) -> T:
    """`operation(store)` on the store to use now; on the server's API when a live nbflow server
    turns out to hold the embedded file (rather than waiting for it to let go)."""
    store = current_store()
    try:
        return operation(store)
    except StoreHeldByServerError as exc:
        if _owner or server_off():
            raise  # its message says how to reach the server
        return operation(_api_store(exc.url, exc.token))


def write(batch: Batch, timeout: float | None = None) -> None:
    """Write `batch` to the store to use now, giving up after `timeout` s (default: the store's
    lock timeout) when the store stays locked or its server does not answer."""

    def write_to(store: Any) -> None:
        if timeout is None or timeout >= store.lock_timeout:
            store.write(batch)
            return
        # Shortened for this call only (exit flushes); a store object is shared by threads,
        # so this is for the end of a process, not for everyday calls.
        saved, store.lock_timeout = store.lock_timeout, timeout
        try:
            store.write(batch)
        finally:
            store.lock_timeout = saved

    using_store(write_to)


def embedded_store() -> Any:
    """The DuckDB file of the NBFLOW_HOME in force now."""
    from nbflow.store.embedded import EmbeddedStore

    path = settings.db_path()
    key = str(path)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = EmbeddedStore(path, settings.store_lock_timeout())
        store.lock_timeout = settings.store_lock_timeout()
        return store


def _api_store(url: str, token: str) -> Any:
    from nbflow.store.api_store import ApiStore

    key = f"{url}|{token}"
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = ApiStore(url, token, settings.store_lock_timeout())
        return store


def own_store() -> Any:
    """Make this process the store's owner (the server): it uses the file, never an API."""
    global _owner
    _owner = True
    return embedded_store()


def release_store() -> None:
    """This process no longer owns the store."""
    global _owner
    _owner = False
