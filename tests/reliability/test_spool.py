"""A client whose store is out of reach exits in bounded time and keeps its records in a spool file;
they arrive later, every task run exactly once (the server ingests them, or a later process sends them).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from live_server import LiveServer, start_server, stop_server

from nbflow.store import records
from nbflow.store.embedded import EmbeddedStore

TASKS = 20

FLOW_SCRIPT = textwrap.dedent(f"""
    import time
    from nbflow import flow, task

    @task
    def step(i):
        time.sleep(0.05)
        return i

    @flow(name="spooled")
    def spooled():
        return sum(step(i) for i in range({TASKS}))

    print("result", spooled(), flush=True)
""")

HOLD_LOCK = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(600)
""")

#: the client's whole run, exit included, must stay well below the old 30 s retry (plus 30 s socket wait).
EXIT_BOUND_S = 20.0


def _run_client(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", FLOW_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=EXIT_BOUND_S + 30)
    return done, time.monotonic() - started


def _check_spooled(done: subprocess.CompletedProcess, elapsed: float, home: Path) -> None:
    assert done.returncode == 0, done.stderr
    assert f"result {sum(range(TASKS))}" in done.stdout
    assert elapsed < EXIT_BOUND_S, f"the client took {elapsed:.1f} s to exit"
    spooled = sorted((home / "spool").glob("*.json"))
    assert spooled, done.stderr
    assert any(str(path) in done.stderr for path in spooled), done.stderr
    assert "could not be saved" not in done.stderr


def _wait_for_run(server: LiveServer, timeout: float = 30) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The client's flow run and its task runs once the server has them all."""
    deadline = time.monotonic() + timeout
    while True:
        status, runs = server.request("GET", "flow_runs")
        assert status == 200, runs
        if runs and runs[0]["state"] == "Completed":
            status, tasks = server.request("GET", f"flow_runs/{runs[0]['id']}/task_runs?limit=1000")
            assert status == 200, tasks
            if len(tasks) >= TASKS:
                return runs[0], tasks
        assert time.monotonic() < deadline, f"the spooled runs did not arrive: {runs}"
        time.sleep(0.2)


def _check_arrived_once(server: LiveServer, runs_expected: int = 1) -> None:
    run, tasks = _wait_for_run(server)
    status, runs = server.request("GET", "flow_runs")
    assert len(runs) == runs_expected
    assert len(tasks) == TASKS and len({t["id"] for t in tasks}) == TASKS
    assert {t["state"] for t in tasks} == {"Completed"}
    deadline = time.monotonic() + 10
    while list((server.home / "spool").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((server.home / "spool").iterdir())


def test_a_stopped_server_does_not_hold_the_client_and_gets_its_records_later(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = start_server(home, tmp_path / "server.log", secrets.token_hex(16),
                          extra_env={"NBFLOW_SCHEDULER_SECONDS": "0.3"})
    try:
        server.process.send_signal(signal.SIGSTOP)  # its socket still accepts, it never answers
        try:
            done, elapsed = _run_client(server.client_env())
            _check_spooled(done, elapsed, home)
        finally:
            server.process.send_signal(signal.SIGCONT)
        _check_arrived_once(server)
    finally:
        stop_server(server)


def test_a_killed_server_gets_the_records_when_it_starts_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    token = secrets.token_hex(16)
    server = start_server(home, tmp_path / "server.log", token)
    env = server.client_env()
    server.process.kill()
    server.process.wait(timeout=30)

    done, elapsed = _run_client(env)
    _check_spooled(done, elapsed, home)

    server = start_server(home, tmp_path / "server.log", token)
    try:
        _check_arrived_once(server)
    finally:
        stop_server(server)


def test_a_locked_embedded_store_spools_and_a_later_process_sends_them(nbflow_home: Path) -> None:
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home), "NBFLOW_EXIT_TIMEOUT": "2"}
    env.pop("NBFLOW_API_URL", None)
    path = nbflow_home / "nbflow.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done, elapsed = _run_client(env)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    _check_spooled(done, elapsed, nbflow_home)

    # Any later process that writes (here: one that only reads runs, which flushes first) sends them.
    lister = textwrap.dedent("""
        import nbflow
        runs, tasks = nbflow.runs(), nbflow.task_runs()
        print(len(runs), runs["state"].tolist()[0], len(tasks), tasks["id"].nunique(), set(tasks["state"]))
    """)
    listed = subprocess.run([sys.executable, "-c", lister], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split(None, 4) == ["1", "Completed", str(TASKS), str(TASKS), "{'Completed'}\n"]
    assert not list((nbflow_home / "spool").iterdir())


def _run_row(state: str, updated: float) -> tuple:
    kind = {"Running": "RUNNING", "Completed": "COMPLETED", "Crashed": "CRASHED"}[state]
    values = dict.fromkeys(records.FLOW_RUN_COLUMNS)
    values.update(id="r1", flow_name="f", name="f", state=state, state_type=kind, parameters="{}",
                  tags="[]", run_count=1, start_time=updated - 5, created=updated - 6, updated=updated)
    return tuple(values[c] for c in records.FLOW_RUN_COLUMNS)


def test_a_late_unfinished_snapshot_does_not_revive_a_finished_run(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "nbflow.duckdb", lock_timeout=10)
    now = time.time()

    def state() -> str:
        return store.query("SELECT state FROM flow_runs")["state"].tolist()

    store.write(records.Batch(flow_runs=[_run_row("Completed", now)]))
    # A spool file or a late request brings an older snapshot after the final one: ignored.
    store.write(records.Batch(flow_runs=[_run_row("Running", now - 1)]))
    assert state() == ["Completed"]
    # A final snapshot replaces a guessed crash (the spool held what really happened).
    store.write(records.Batch(flow_runs=[_run_row("Crashed", now + 1)]))
    store.write(records.Batch(flow_runs=[_run_row("Completed", now)]))
    assert state() == ["Completed"]
    # A newer unfinished snapshot (a run that is retried) still replaces a final one.
    store.write(records.Batch(flow_runs=[_run_row("Running", now + 2)]))
    assert state() == ["Running"]
