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


def _interval_env(name: str, default: float) -> float:
    """A loop's period from the environment: at least 0.05 s; text that is no number gives the default."""
    try:
        return max(float(os.environ.get(name, default)), 0.05)
    except ValueError:
        return default


def scheduler_seconds() -> float:
    """Seconds between the server's scheduler passes (NBFLOW_SCHEDULER_SECONDS, default 5)."""
    return _interval_env("NBFLOW_SCHEDULER_SECONDS", 5.0)


def heartbeat_seconds() -> float:
    """How often a worker heartbeats (NBFLOW_HEARTBEAT_SECONDS, default 10)."""
    return _interval_env("NBFLOW_HEARTBEAT_SECONDS", 10.0)


def worker_poll_seconds() -> float:
    """How often a worker asks for due runs when nothing wakes it (NBFLOW_WORKER_POLL_SECONDS, default 1)."""
    return _interval_env("NBFLOW_WORKER_POLL_SECONDS", 1.0)


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a worker's runs are Crashed (NBFLOW_HEARTBEAT_TIMEOUT, 60)."""
    return _float_env("NBFLOW_HEARTBEAT_TIMEOUT", 60.0)


def query_timeout() -> float:
    """Seconds a query over the run store may run before it is interrupted (NBFLOW_QUERY_TIMEOUT, 30; 0: none)."""
    return _float_env("NBFLOW_QUERY_TIMEOUT", 30.0)


def allowed_roots() -> list[Path]:
    """Extra directories deployments may use files from and the dashboard may serve output notebooks
    from (NBFLOW_ALLOWED_ROOTS, separated by os.pathsep), beside the server's root dir and NBFLOW_HOME."""
    raw = os.environ.get("NBFLOW_ALLOWED_ROOTS") or ""
    return [Path(part.strip()).expanduser().absolute() for part in raw.split(os.pathsep) if part.strip()]


def exit_flush_seconds() -> float:
    """How long a process's exit waits for an unreachable store before it spools its unsaved run
    records to a file instead (NBFLOW_EXIT_TIMEOUT, default 5)."""
    return max(_float_env("NBFLOW_EXIT_TIMEOUT", 5.0), 0.0)


def keep_failed_inputs() -> bool:
    """Whether failed task runs keep their inputs for `%nbflow debug` (NBFLOW_KEEP_FAILED_INPUTS,
    default 1; 0, false, no or off turn it off, e.g. for sensitive data)."""
    return os.environ.get("NBFLOW_KEEP_FAILED_INPUTS", "1").strip().lower() not in ("0", "false", "no", "off")


def failed_inputs_max_bytes() -> int:
    """The most bytes of inputs one failed task run keeps; over it the largest values are skipped and
    listed (NBFLOW_FAILED_INPUTS_MAX_BYTES, default 1 GiB)."""
    raw = os.environ.get("NBFLOW_FAILED_INPUTS_MAX_BYTES")
    if not raw:
        return 1 << 30
    try:
        return max(int(float(raw)), 0)
    except ValueError:
        raise ValueError(f"NBFLOW_FAILED_INPUTS_MAX_BYTES={raw!r} is not a number; set it to bytes, "
                         "e.g. NBFLOW_FAILED_INPUTS_MAX_BYTES=1073741824 (1 GiB)") from None


def failed_inputs_days() -> float:
    """Days the inputs of failed task runs are kept before they are pruned (NBFLOW_FAILED_INPUTS_DAYS,
    default 14)."""
    raw = os.environ.get("NBFLOW_FAILED_INPUTS_DAYS")
    try:
        return max(float(raw), 0.0) if raw else 14.0
    except ValueError:
        raise ValueError(f"NBFLOW_FAILED_INPUTS_DAYS={raw!r} is not a number; set it to days, "
                         "e.g. NBFLOW_FAILED_INPUTS_DAYS=14") from None
