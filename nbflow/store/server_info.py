"""How a process finds a running nbflow server: its environment, else the runtime file.

A server that owns the store advertises itself in `$NBFLOW_HOME/server.json` (URL,
token, pid) and passes `NBFLOW_API_URL`/`NBFLOW_API_TOKEN` to the kernels and runs
it starts. Every other process then sends its run events and queries to that server
instead of opening the DuckDB file, which the server holds.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nbflow import settings
from nbflow.store.liveness import is_process_alive

RUNTIME_FILE = "server.json"


@dataclass(frozen=True)
class ServerInfo:
    """Where the server answers and how to authenticate to it."""

    url: str  # the server's base URL, e.g. http://127.0.0.1:4200/ (its API is under nbflow/api/)
    token: str
    pid: int | None = None


def runtime_file() -> Path:
    return settings.home() / RUNTIME_FILE


def write_runtime_file(info: ServerInfo) -> Path:
    """Advertise a server (written with mode 0600: it holds the token)."""
    path = runtime_file()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": info.url, "token": info.token, "pid": info.pid}, f)
    os.replace(tmp, path)
    return path


def remove_runtime_file(pid: int) -> None:
    """Remove the runtime file if it still advertises the server with this pid."""
    path = runtime_file()
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def find_server() -> ServerInfo | None:
    """The server this process should use, or None for the embedded store.

    `NBFLOW_API_URL` wins (with `NBFLOW_API_TOKEN`); else a runtime file whose process is alive.
    `NBFLOW_SERVER=off` forces the embedded store (the server itself runs that way).
    """
    if server_off():
        return None
    url = os.environ.get("NBFLOW_API_URL")
    if url:
        return ServerInfo(url, os.environ.get("NBFLOW_API_TOKEN", ""))
    info = _advertised(settings.home())
    if info is None or info.pid == os.getpid() or not is_process_alive(info.pid or 0, None):
        return None
    return info


def server_off() -> bool:
    """Whether NBFLOW_SERVER=off tells this process to use the embedded store, server or not."""
    return os.environ.get("NBFLOW_SERVER", "").lower() == "off"


def advertised_server(pid: int, home: Path) -> ServerInfo | None:
    """The server advertised in `home` when it is the live process `pid`, else None.

    Tells whoever holds a store's file apart: a live nbflow server can be reached through its API.
    """
    info = _advertised(home)
    if info is None or info.pid != pid or not is_process_alive(pid, None):
        return None
    return info


def _advertised(home: Path) -> ServerInfo | None:
    try:
        data = json.loads((home / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int):
        return None
    return ServerInfo(str(data.get("url", "")), str(data.get("token", "")), pid)
