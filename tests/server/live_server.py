"""A live `nbflow server start` process on a free port, with its own NBFLOW_HOME and token."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    token: str
    home: Path
    process: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "default",
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or raw bytes) of a request to nbflow/api/<path>."""
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"token {self.token if token == 'default' else token}"
        request = urllib.request.Request(f"{self.url}nbflow/api/{path}", data=data, method=method,
                                         headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw, status, kind = response.read(), response.status, response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        if "json" in kind:
            return status, json.loads(raw or b"null")
        return status, raw

    def client_env(self) -> dict[str, str]:
        return {**os.environ, "NBFLOW_HOME": str(self.home), "NBFLOW_API_URL": self.url,
                "NBFLOW_API_TOKEN": self.token}


def start_server(home: Path, log: Path, token: str, extra_env: dict[str, str] | None = None,
                 port: int | None = None) -> LiveServer:
    port = port or free_port()
    env = {**os.environ, "NBFLOW_HOME": str(home), "NBFLOW_API_TOKEN": token, **(extra_env or {})}
    env.pop("NBFLOW_API_URL", None)
    out = open(log, "a")
    process = subprocess.Popen([sys.executable, "-m", "nbflow", "server", "start", "--port", str(port)],
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "nbflow/api/health", timeout=2).read()
            break
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"nbflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
    return LiveServer(url, token, home, process, log)


def stop_server(server: LiveServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("server-home")
    server = start_server(home, home / "server.log", secrets.token_hex(16))
    try:
        yield server
    finally:
        stop_server(server)
