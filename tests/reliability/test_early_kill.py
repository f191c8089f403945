"""kill -9 at any moment after a flow started leaves a Crashed run that ends when the process died.

A real subprocess runs a flow whose tasks sleep; it is killed 50 ms and 200 ms after the flow
started (before its first flush, which needs DuckDB and a flush interval) and after some tasks
were saved. A fresh process (or the server) then lists the runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from live_server import start_server, stop_server

SCRIPT = textwrap.dedent("""
    import sys, time
    from nbflow import flow, task

    @task
    def nap(i):
        time.sleep(0.2)
        return i

    @flow(name="doomed")
    def doomed(n: int = 50):
        print("started", flush=True)
        for i in range(n):
            nap(i)

    doomed()
""")

LIST_RUNS = textwrap.dedent("""
    import json, nbflow
    runs = nbflow.runs()
    tasks = nbflow.task_runs()
    def t(v):
        return None if v is None or v != v else v.timestamp()
    print(json.dumps({
        "runs": [{"id": r["id"], "state": r["state"], "start": t(r["start_time"]), "end": t(r["end_time"]),
                  "duration_s": r["duration_s"], "message": r["state_message"]} for r in runs.to_dict("records")],
        "tasks": [{"state": r["state"], "end": t(r["end_time"])} for r in tasks.to_dict("records")],
    }))
""")


def _run_and_kill(env: dict[str, str], after_start: float) -> tuple[int, float]:
    """Start the flow script, kill -9 it `after_start` s after its flow started; (pid, kill time)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "started", proc.stderr.read() if proc.poll() is not None else line
        time.sleep(after_start)
    finally:
        proc.send_signal(signal.SIGKILL)
        killed = time.time()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    return proc.pid, killed


def _listed(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", LIST_RUNS], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _check_crashed(run: dict[str, Any], pid: int, killed: float, after_start: float) -> None:
    assert run["state"] == "Crashed", run
    assert str(pid) in run["message"]
    # Ended when the process died (or was last seen), not when the crash was noticed.
    assert killed - 2.0 <= run["end"] <= killed + 0.5, (run, killed)
    assert run["duration_s"] == pytest.approx(run["end"] - run["start"], abs=0.01)
    assert run["duration_s"] <= after_start + 2.0


@pytest.mark.parametrize("after_start", [0.05, 0.2, 1.5], ids=["50ms", "200ms", "after-some-tasks"])
def test_a_flow_killed_at_any_moment_leaves_a_crashed_run(nbflow_home: Path, after_start: float) -> None:
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home)}
    env.pop("NBFLOW_API_URL", None)
    pid, killed = _run_and_kill(env, after_start)
    time.sleep(2.5)  # noticing later than the kill must not move the end time

    listed = _listed(env)
    [run] = listed["runs"]
    _check_crashed(run, pid, killed, after_start)
    if after_start > 1:  # tasks were saved; the one running, if saved yet, ends with its flow
        assert listed["tasks"] and {t["state"] for t in listed["tasks"]} <= {"Crashed", "Completed"}
        crashed = [t for t in listed["tasks"] if t["state"] == "Crashed"]
        assert len(crashed) <= 1 and all(t["end"] == pytest.approx(run["end"], abs=0.01) for t in crashed)
    # The markers are gone once the runs are settled: a second look finds the same, once.
    assert _listed(env)["runs"] == [run]
    assert not list((nbflow_home / "processes").iterdir())


def _iso(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("after_start", [0.05, 1.5], ids=["50ms", "after-some-tasks"])
def test_a_client_of_the_server_killed_early_leaves_a_crashed_run(tmp_path: Path, after_start: float) -> None:
    home = tmp_path / "server-home"
    home.mkdir()
    server = start_server(home, tmp_path / "server.log", secrets.token_hex(16),
                          extra_env={"NBFLOW_SCHEDULER_SECONDS": "0.3"})
    try:
        pid, killed = _run_and_kill(server.client_env(), after_start)
        deadline = time.monotonic() + 20
        while True:
            status, runs = server.request("GET", "flow_runs")
            assert status == 200, runs
            if runs and runs[0]["state"] == "Crashed" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [run] = runs
        assert run["state"] == "Crashed", run
        end, start = _iso(run["end_time"]), _iso(run["start_time"])
        assert killed - 2.0 <= end <= killed + 0.5, (run, killed)
        status, full = server.request("GET", f"flow_runs/{run['id']}")
        assert status == 200 and str(pid) in full["state_message"]
        assert end - start <= after_start + 2.0
    finally:
        stop_server(server)
