"""Stopping a busy server: SIGTERM or SIGINT at varying moments, while its worker claims and runs
an every-second deployment. The server exits within seconds, claims and starts nothing after the
signal, and the runs it was executing end Crashed. Ctrl-C while the server starts stops it too."""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from live_server import free_port, start_server

#: a server whose scheduler makes the every-second runs at once and whose worker heartbeats often.
FAST = {"NBFLOW_SCHEDULER_SECONDS": "0.2", "NBFLOW_HEARTBEAT_SECONDS": "0.3"}
EXIT_WITHIN = 5.0
_STARTED = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) .*nbflow worker \S+ started flow run (\w+)", re.M)
_STOPPING = re.compile(r"^(\d\d:\d\d:\d\d\.\d\d\d) .*the server is stopping: no flow run is claimed", re.M)


def _busy_server(base: Path, index: int):
    """A live server with an every-second deployment of a short flow and a queue of due runs."""
    home = base / f"home{index}"
    home.mkdir()
    flow_file = home / "nap.py"
    flow_file.write_text(textwrap.dedent("""
        import time
        from nbflow import flow

        @flow
        def nap(seconds: float = 0.6):
            time.sleep(seconds)
    """))
    server = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    status, body = server.request("POST", "deployments", {"name": "nap", "entrypoint": f"{flow_file}:nap",
                                                          "schedule": {"interval": 1}})
    assert status == 201, body
    for _ in range(6):  # due at once: the worker (4 at a time) claims some as others end
        assert server.request("POST", "deployments/nap/runs", {})[0] == 201
    return server


def _deployment_runs(home: Path) -> tuple[list[tuple], list[tuple]]:
    """(runs: id, state, message; state history: run id, state, timestamp) of the deployment's runs."""
    con = duckdb.connect(str(home / "nbflow.duckdb"), read_only=True)
    try:
        runs = con.execute("SELECT id, state, state_message FROM flow_runs WHERE deployment_id IS NOT NULL"
                           ).fetchall()
        history = con.execute("SELECT h.run_id, h.state, h.timestamp FROM state_history h JOIN flow_runs f "
                              "ON f.id = h.run_id WHERE f.deployment_id IS NOT NULL").fetchall()
    finally:
        con.close()
    return runs, history


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_busy_server_stops_within_seconds_and_starts_no_run_after_the_signal(tmp_path, signum) -> None:
    delays = [0.0, 0.35, 0.7, 1.1] if signum == signal.SIGTERM else [0.15, 0.5, 0.9, 1.3]
    executing_runs_crashed = 0
    for index, delay in enumerate(delays):
        server = _busy_server(tmp_path, index)
        assert f"{server.url}nbflow/?token={server.token}" in server.log.read_text()  # a link that logs in
        time.sleep(delay)
        sent = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        server.process.send_signal(signum)
        began = time.monotonic()
        try:
            server.process.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
            pytest.fail(f"the server did not exit within {EXIT_WITHIN} s of {signum.name} (sent after "
                        f"{delay} s):\n{server.log.read_text()[-3000:]}")
        took = time.monotonic() - began
        log = server.log.read_text()
        runs, history = _deployment_runs(server.home)

        unfinished = [(run[:8], state) for run, state, _ in runs if state in ("Pending", "Running")]
        assert not unfinished, f"runs left unfinished after the server stopped: {unfinished}\n{log[-3000:]}"
        late = [(run[:8], state, at) for run, state, at in history
                if state in ("Pending", "Running") and at > sent + dt.timedelta(seconds=0.5)]
        assert not late, f"runs claimed or started more than 0.5 s after {signum.name}: {late}\n{log[-3000:]}"
        # Exactly: the worker stamps "started" while it holds the gate that the stop closes.
        stopping = _STOPPING.findall(log)
        assert stopping, f"no stop line after {signum.name} ({took:.2f} s):\n{log[-3000:]}"
        late_starts = [(at, run) for at, run in _STARTED.findall(log) if at > stopping[0]]
        assert not late_starts, f"runs started after the server began to stop at {stopping[0]}: {late_starts}"
        for run, _, _ in runs:
            if f"started flow run {run[:8]}" in log:  # each run the worker took is named in its log
                assert f"took flow run {run} of deployment 'nap': flow nap (" in log
        executing_runs_crashed += sum(1 for _, state, message in runs
                                      if state == "Crashed" and "while the run was executing" in (message or ""))
    assert executing_runs_crashed, "no run was executing at any of the signals: the test tested nothing"


def test_ctrl_c_while_the_server_starts_stops_it(tmp_path) -> None:
    """Ctrl-C at any moment of the start (imports, opening the store, the extension's start) ends it."""
    for after in (0.3, 0.5, 0.6, 0.7, 0.8, 1.0, 1.3):
        home = tmp_path / f"home-{after}"
        home.mkdir()
        env = {**os.environ, "NBFLOW_HOME": str(home)}
        env.pop("NBFLOW_API_URL", None)
        with open(home / "server.log", "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "nbflow", "server", "start", "--port",
                                        str(free_port())], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(after)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Ctrl-C {after} s into `nbflow server start` did not stop it:\n"
                        f"{(home / 'server.log').read_text()[-3000:]}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert not (home / "server.json").exists(), "the stopped server left its runtime file behind"


def test_a_worker_process_stops_claiming_at_the_first_signal(tmp_path) -> None:
    """`nbflow worker start`: SIGTERM stops it within seconds, it starts nothing after the signal and
    the runs it was executing end Crashed; it logs each run it takes."""
    server = _busy_server(tmp_path, 0)  # its own worker takes the default pool, not "side"
    try:
        flow_file = server.home / "nap.py"
        status, body = server.request("POST", "deployments", {"name": "side-nap", "entrypoint": f"{flow_file}:nap",
                                                              "schedule": {"interval": 1}, "work_pool": "side"})
        assert status == 201, body
        for _ in range(4):
            assert server.request("POST", "deployments/side-nap/runs", {})[0] == 201
        log_path = tmp_path / "worker.log"
        with open(log_path, "w") as log:
            worker = subprocess.Popen([sys.executable, "-m", "nbflow", "worker", "start", "--pool", "side"],
                                      env={**server.client_env(), **FAST}, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "started flow run" not in log_path.read_text():
                assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=EXIT_WITHIN) == 0, log_path.read_text()
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        text = log_path.read_text()
        status, runs = server.request("GET", f"flow_runs?deployment_id={body['id']}&limit=100")
        assert status == 200, runs
        assert not [r["id"][:8] for r in runs if r["state"] in ("Pending", "Running")], (runs, text)
        crashed = [r for r in runs if r["state"] == "Crashed"]
        assert crashed and all("The worker was stopped (SIGTERM)" in r["state_message"] for r in crashed), crashed
        for run in runs:
            if f"started flow run {run['id'][:8]}" in text:
                assert f"took flow run {run['id']} of deployment 'side-nap': flow nap (" in text
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=EXIT_WITHIN)
