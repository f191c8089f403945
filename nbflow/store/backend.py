"""Which store this process talks to: the embedded DuckDB file under NBFLOW_HOME."""

from __future__ import annotations

import threading
from typing import Any

from nbflow import settings

_stores: dict[str, Any] = {}
_lock = threading.Lock()


def current_store() -> Any:
    """The store for the NBFLOW_HOME in force now (one object per database path)."""
    from nbflow.store.embedded import EmbeddedStore

    path = settings.db_path()
    key = str(path)
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = EmbeddedStore(path, settings.store_lock_timeout())
        store.lock_timeout = settings.store_lock_timeout()
        return store
