"""Which store this process talks to: a running server's API, or the embedded DuckDB file.

A process that owns the store (the server) uses the embedded file directly; any other
process uses the server it finds (`NBFLOW_API_URL`, else `$NBFLOW_HOME/server.json`),
and the embedded file when there is none.
"""

from __future__ import annotations

import threading
from typing import Any

from nbflow import settings
from nbflow.store.server_info import find_server

_stores: dict[str, Any] = {}
_lock = threading.Lock()
_owner = False


def current_store() -> Any:
    """The store to use now (one object per database path or server URL)."""
    info = None if _owner else find_server()
    if info is not None:
        return _api_store(info.url, info.token)
    return embedded_store()


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
