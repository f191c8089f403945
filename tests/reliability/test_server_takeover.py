"""A client in embedded mode keeps recording when a server starts and takes the store's file.

The server holds the DuckDB file as soon as its extension loads and advertises itself in
server.json only once it listens; here that gap is stretched to 2 s (as a slow Jupyter start or
a restart can make it). A client that tries the file in that gap must not wait out its lock
timeout and print "held by another process ... start `nbflow server start`": it switches to the
server's API as soon as the holder is advertised.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

from live_server import LiveServer, free_port, stop_server

#: the real standalone server, its advertisement held back by ADVERTISE_DELAY seconds.
DELAYED_SERVER = textwrap.dedent("""
    import asyncio, sys
    from nbflow.server import app

    start = app.NbflowApp._start_jupyter_server_extension

    async def start_later(self, serverapp):
        await asyncio.sleep(float(sys.argv[3]))
        await start(self, serverapp)

    app.NbflowApp._start_jupyter_server_extension = start_later
    from nbflow.server.standalone import run_standalone
    run_standalone("127.0.0.1", int(sys.argv[1]), sys.argv[2])
""")
ADVERTISE_DELAY = 2.0

CLIENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nbflow import flow, task

    @task
    def one(i):
        return i

    @flow(name="steady")
    def steady(i: int):
        return one(i)

    stop = Path(sys.argv[1])
    i = 0
    while not stop.exists() and i < 300:
        steady(i)
        print("flow", i, flush=True)
        i += 1
        time.sleep(0.1)
    print("total", i, file=sys.stderr)
""")


def _start_delayed_server(home: Path, log: Path, token: str) -> LiveServer:
    port = free_port()
    env = {**os.environ, "NBFLOW_HOME": str(home), "NBFLOW_API_TOKEN": token}
    env.pop("NBFLOW_API_URL", None)
    out = open(log, "a")
    process = subprocess.Popen([sys.executable, "-c", DELAYED_SERVER, str(port), token, str(ADVERTISE_DELAY)],
                               env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while not (home / "server.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    while True:
        try:
            urllib.request.urlopen(url + "nbflow/api/health", timeout=2).read()
            break
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
    return LiveServer(url, token, home, process, log)


def _wait_for_line(proc: subprocess.Popen, prefix: str) -> str:
    while True:
        line = proc.stdout.readline()
        assert line, f"the client ended early: {proc.stderr.read()}"
        if line.startswith(prefix):
            return line


def test_a_client_switches_to_a_server_that_takes_the_file(nbflow_home: Path, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home), "NBFLOW_FLUSH_INTERVAL": "0.05",
           "NBFLOW_STORE_LOCK_TIMEOUT": "6"}
    env.pop("NBFLOW_API_URL", None)
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(stop)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    server = None
    try:
        _wait_for_line(client, "flow 3")  # recording in embedded mode
        server = _start_delayed_server(nbflow_home, tmp_path / "server.log", secrets.token_hex(16))
        advertised = time.monotonic()
        _wait_for_line(client, "flow")
        later = int(_wait_for_line(client, "flow").split()[1]) + 5
        _wait_for_line(client, f"flow {later}")  # flows recorded after the server took over
        stop.touch()
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert time.monotonic() - advertised < 30

        assert "held by" not in err and "nbflow server start" not in err, err
        assert "could not" not in err, err
        status, runs = server.request("GET", "flow_runs?limit=1000")
        assert status == 200, runs
        # Every flow the client ran, before and after the switch, once (the last ones after `later`).
        total = int(err.split("total ")[1].split()[0])
        assert total > later and {r["state"] for r in runs} == {"Completed"}
        assert sorted(r["parameters"]["i"] for r in runs) == list(range(total))
    finally:
        stop.touch()
        if client.poll() is None:
            client.kill()
            client.wait(timeout=30)
        if server is not None:
            stop_server(server)
