"""The engine on a real store: concurrent processes, killed processes, and what runs() shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbflow

FLOWS_SCRIPT = textwrap.dedent("""
    import sys
    from nbflow import flow, task

    @task
    def step(i):
        return i * 2

    @flow
    def worker_flow(who: str, i: int):
        return sum(step.map(range(20)).result()) + step(i)

    who, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        worker_flow(who, i)
""")


def _spawn(home: Path, *args: str, script: str = FLOWS_SCRIPT) -> subprocess.Popen:
    env = {**os.environ, "NBFLOW_HOME": str(home), "NBFLOW_FLUSH_INTERVAL": "0.05"}
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_running_flows_at_once_record_everything(nbflow_home: Path) -> None:
    procs = [_spawn(nbflow_home, who, "15") for who in ("a", "b")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "could not be saved" not in err
    runs = nbflow.runs(limit=1000)
    assert len(runs) == 30
    assert set(runs["state"]) == {"Completed"}
    counts = runs["parameters"].map(lambda p: p["who"]).value_counts().to_dict()
    assert counts == {"a": 15, "b": 15}
    tasks = nbflow.task_runs()
    assert len(tasks) == 30 * 21 and set(tasks["state"]) == {"Completed"}


def test_killed_process_runs_are_marked_crashed_not_running_forever(nbflow_home: Path) -> None:
    script = textwrap.dedent("""
        import time
        from nbflow import flow, task, flush

        @task
        def hang():
            time.sleep(600)

        @flow
        def doomed():
            hang()

        import threading
        def announce():
            time.sleep(0.3)
            flush()
            print("running", flush=True)
        threading.Thread(target=announce, daemon=True).start()
        doomed()
    """)
    proc = _spawn(nbflow_home, script=script)
    try:
        assert proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    runs = nbflow.runs()
    assert runs.iloc[0]["state"] == "Crashed"
    assert str(proc.pid) in runs.iloc[0]["state_message"]
    assert nbflow.task_runs().iloc[0]["state"] == "Crashed"


def test_runs_filters_limit_and_newest_first() -> None:
    @nbflow.flow
    def alpha(i: int) -> int:
        return i

    @nbflow.flow
    def beta() -> None:
        raise ValueError("x")

    for i in range(5):
        alpha(i)
        time.sleep(0.002)
    beta(return_state=True)
    everything = nbflow.runs()
    assert everything.iloc[0]["flow_name"] == "beta"
    assert [p["i"] for p in nbflow.runs(flow_name="alpha")["parameters"]] == [4, 3, 2, 1, 0]
    assert len(nbflow.runs(limit=2)) == 2
    assert nbflow.runs(state="failed")["flow_name"].tolist() == ["beta"]
    flows = nbflow.flows().set_index("flow_name")
    assert flows.loc["alpha", "runs"] == 5


def test_a_short_script_saves_its_runs_at_exit(nbflow_home: Path) -> None:
    script = textwrap.dedent("""
        from nbflow import flow, task

        @task
        def one():
            return 1

        @flow
        def quick():
            return one()

        quick()
    """)
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home), "NBFLOW_FLUSH_INTERVAL": "60"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "could not be saved" not in done.stderr
    assert nbflow.runs()["state"].tolist() == ["Completed"]
    assert nbflow.task_runs()["state"].tolist() == ["Completed"]
