"""Where nbflow keeps its state and the knobs read from the environment."""

from __future__ import annotations

import os
from pathlib import Path


_homes: dict[str | None, Path] = {}


def home() -> Path:
    """The nbflow home: ``$NBFLOW_HOME``, else ``~/.nbflow``; created on first use."""
    raw = os.environ.get("NBFLOW_HOME")
    path = _homes.get(raw)
    if path is None:
        path = Path(raw or Path.home() / ".nbflow").expanduser()
        path.mkdir(parents=True, exist_ok=True)
        _homes[raw] = path
    return path


def db_path() -> Path:
    """The embedded DuckDB run store."""
    return home() / "nbflow.duckdb"


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; set it to seconds, e.g. {name}={default}") from None


def store_lock_timeout() -> float:
    """Seconds to wait for another process to release the store before giving up."""
    return _float_env("NBFLOW_STORE_LOCK_TIMEOUT", 30.0)


def flush_interval() -> float:
    """Seconds between background flushes of buffered run events to the store."""
    return _float_env("NBFLOW_FLUSH_INTERVAL", 0.5)
