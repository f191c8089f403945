"""Workers and the scheduler against live processes: racing workers, a killed worker, a server
restart with schedules running, and two schedulers racing on one store."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from deployment_helpers import FAST, deploy, start_run, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("worker-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    try:
        yield live
    finally:
        stop_server(live)


def start_worker(server, pool: str, log: Path, limit: int = 3) -> subprocess.Popen:
    env = {**server.client_env(), **FAST}
    process = subprocess.Popen([sys.executable, "-m", "nbflow", "worker", "start", "--pool", pool, "--limit",
                                str(limit)], env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "polling pool" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process


def stop_process_tree(process: subprocess.Popen) -> None:
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def test_two_workers_racing_for_the_same_runs_execute_each_run_once(server, tmp_path) -> None:
    flow_file = write_flow_file(tmp_path / "count.py", """
        from nbflow import flow

        @flow
        def count(i: int = 0) -> int:
            return i
    """)
    deploy(server, {"name": "race", "entrypoint": f"{flow_file}:count", "work_pool": "race"})
    workers = [start_worker(server, "race", tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        run_ids = [start_run(server, "race", {"i": i})["id"] for i in range(10)]
        finished = [wait_for(server, run_id, timeout=120) for run_id in run_ids]
    finally:
        for worker in workers:
            stop_process_tree(worker)
    assert [r["state"] for r in finished] == ["Completed"] * 10
    status, history = server.request("POST", "sql", {
        "sql": "select run_id, count(*) filter (where state = 'Running') as running, "
               "count(*) filter (where state = 'Pending') as pending from state_history "
               "where list_contains(?, run_id) group by run_id", "params": [run_ids]})
    assert status == 200
    import pyarrow as pa

    counts = pa.ipc.open_stream(history).read_all().to_pylist()
    assert sorted(c["run_id"] for c in counts) == sorted(run_ids)
    assert all(c["running"] == 1 and c["pending"] == 1 for c in counts), counts  # claimed and run once
    # Each flow run is the deployment's run itself (no child record), executed once with its parameters.
    counted = [r for r in server.request("GET", "flow_runs?limit=1000&flow_name=count")[1]
               if r["id"] in run_ids or r["parent_flow_run_id"] in run_ids]
    assert sorted(r["id"] for r in counted) == sorted(run_ids)
    assert sorted(r["parameters"]["i"] for r in counted) == list(range(10))
    assert all(r["worker_id"] for r in finished)
    states = server.request("GET", "flow_runs?limit=1000")[1]
    assert len([r for r in states if r["id"] in run_ids]) == 10


def test_a_worker_killed_mid_run_leaves_its_run_crashed(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "slow.ipynb", "n = 1", "import time\ntime.sleep(600)")
    deploy(server, {"name": "fragile", "notebook": str(notebook), "work_pool": "fragile"})
    worker = start_worker(server, "fragile", tmp_path / "worker.log")
    try:
        run = start_run(server, "fragile")
        wait_for(server, run["id"], {"Running"})
        family = psutil.Process(worker.pid).children(recursive=True)
        worker.kill()  # SIGKILL: no goodbye, no more heartbeats
        worker.wait()
        crashed = wait_for(server, run["id"], timeout=60)
        # the run's process and kernel notice their worker is gone and stop by themselves
        deadline = time.monotonic() + 15
        while [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, [(p.pid, p.cmdline(), p.status(), p.ppid()) for p in family
                                                 if p.is_running()]
            time.sleep(0.2)
    finally:
        stop_process_tree(worker)
        for child in locals().get("family", []):
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
    assert crashed["state"] == "Crashed" and "stopped heartbeating" in crashed["state_message"]


def test_a_worker_stopped_with_ctrl_c_records_its_runs_as_crashed(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "slow.ipynb", "n = 1", "import time\ntime.sleep(600)")
    deploy(server, {"name": "interrupted", "notebook": str(notebook), "work_pool": "interrupted"})
    worker = start_worker(server, "interrupted", tmp_path / "worker.log")
    try:
        run = start_run(server, "interrupted")
        wait_for(server, run["id"], {"Running"})
        family = psutil.Process(worker.pid).children(recursive=True)
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0
        ended = wait_for(server, run["id"], timeout=30)
    finally:
        stop_process_tree(worker)
    assert ended["state"] == "Crashed" and "interrupted" in ended["state_message"]
    time.sleep(0.5)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _scheduled_times(home: Path, name: str) -> list[str]:
    code = textwrap.dedent(f"""
        import json, nbflow
        frame = nbflow.sql("select f.scheduled_time from flow_runs f join deployments d on d.id = f.deployment_id "
                           "where d.name = ? order by 1", [{name!r}])
        print(json.dumps([str(t) for t in frame["scheduled_time"]]))
    """)
    env = {**os.environ, "NBFLOW_HOME": str(home), "NBFLOW_SERVER": "off"}
    env.pop("NBFLOW_API_URL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json

    return json.loads(out.stdout)


def test_a_server_restart_with_schedules_running_makes_no_duplicate_and_loses_no_run(tmp_path) -> None:
    import datetime as dt

    home = tmp_path / "home"
    notebook = write_notebook(tmp_path / "tick.ipynb", "n = 1", "print(n)")
    token = secrets.token_hex(8)
    live = start_server(home, tmp_path / "server.log", token, extra_env=FAST)
    try:
        deploy(live, {"name": "tick", "notebook": str(notebook), "schedule": {"interval": 1}, "catch_up": "all",
                      "work_pool": "nobody"})
        time.sleep(3)
    finally:
        stop_server(live)
    time.sleep(3)  # slots pass while the server is down
    live = start_server(home, tmp_path / "server.log", token, extra_env=FAST)
    try:
        time.sleep(3)
    finally:
        stop_server(live)
    times = [dt.datetime.fromisoformat(t) for t in _scheduled_times(home, "tick")]
    assert len(times) == len(set(times)), "a slot got two runs"
    steps = {(b - a).total_seconds() for a, b in zip(times, times[1:])}
    assert steps == {1.0}, f"slots were lost: {times}"
    assert len(times) >= 9


def test_two_schedulers_racing_on_one_store_create_one_run_per_slot(tmp_path, nbflow_home) -> None:
    notebook = write_notebook(tmp_path / "tick.ipynb", "n = 1", "print(n)")
    from nbflow.deployments import service
    from nbflow.store.backend import embedded_store

    service.create_deployment(embedded_store(), {"name": "race", "notebook": str(notebook),
                                                 "schedule": {"interval": 60}, "catch_up": "all"})
    code = textwrap.dedent("""
        import datetime as dt
        from nbflow.deployments import service
        from nbflow.store.backend import embedded_store
        start = dt.datetime(2030, 1, 1)
        for minute in range(30):
            service.schedule_pass(embedded_store(), start + dt.timedelta(minutes=minute))
    """)
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home), "NBFLOW_SERVER": "off"}
    racers = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    assert [r.wait(timeout=120) for r in racers] == [0, 0]
    frame = embedded_store().query("select scheduled_time, count(*) as n from flow_runs group by 1 order by 1")
    assert frame["n"].max() == 1
    assert len(frame) == 32  # 00:01 .. 00:32: every minute passed, plus three ahead of the last pass
