"""The deployment CLI against a live server: deploy, ls, run --watch (exit code by final state)."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from deployment_helpers import FAST, write_notebook
from live_server import start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("cli-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    try:
        yield live
    finally:
        stop_server(live)


def nbflow(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbflow", *args], env=server.client_env(), capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_deploy_then_run_and_watch_a_notebook_until_it_ends(server, tmp_path) -> None:
    good = write_notebook(tmp_path / "daily.ipynb", "n = 1", "print('rows', n * 10)")
    bad = write_notebook(tmp_path / "bad.ipynb", "n = 1", "raise KeyError('missing column')")
    done = nbflow(server, "deploy", str(good), "--name", "daily", "--cron", "0 2 * * *", "--timezone",
                  "America/New_York", "--param", "n=4")
    assert done.returncode == 0, done.stderr
    assert "daily" in done.stdout and "America/New_York" in done.stdout
    assert server.request("GET", "deployments/daily")[1]["parameters"] == {"n": 4}
    listed = nbflow(server, "deployment", "ls")
    assert listed.returncode == 0 and "daily" in listed.stdout and "daily.ipynb" in listed.stdout

    watched = nbflow(server, "deployment", "run", "daily", "--param", "n=5", "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    for state in ("Scheduled", "Running", "Completed"):
        assert state in watched.stdout
    # The run that ran: the scheduler may have created later (Scheduled) runs of the cron since.
    run_id = next(r["id"] for r in server.request("GET", "flow_runs")[1]
                  if r["flow_name"] == "daily" and r["state"] == "Completed")
    output = server.request("GET", f"flow_runs/{run_id}")[1]["output_notebook"]
    assert "rows 50" in open(output).read()

    assert nbflow(server, "deploy", str(bad), "--name", "bad").returncode == 0
    failed = nbflow(server, "deployment", "run", "bad", "--watch")
    assert failed.returncode == 1
    assert "Failed" in failed.stdout + failed.stderr and "missing column" in failed.stdout + failed.stderr


def test_cli_errors_are_one_clear_line(server, tmp_path) -> None:
    good = write_notebook(tmp_path / "daily.ipynb", "n = 1", "print(n)")
    cases = [
        (["deploy", str(good), "--name", "x", "--cron", "0 0 31 2 *"], "never fire"),
        (["deploy", str(good), "--name", "x", "--param", "m=1"], "m"),
        (["deploy", str(tmp_path / "nope.ipynb"), "--name", "x"], "No notebook"),
        (["deployment", "run", "ghost"], "ghost"),
        (["deployment", "pause", "ghost"], "ghost"),
    ]
    for args, words in cases:
        done = nbflow(server, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_pause_resume_and_delete(server, tmp_path) -> None:
    good = write_notebook(tmp_path / "hourly.ipynb", "n = 1", "print(n)")
    assert nbflow(server, "deploy", str(good), "--name", "hourly", "--interval", "3600").returncode == 0
    assert nbflow(server, "deployment", "pause", "hourly").returncode == 0
    assert server.request("GET", "deployments/hourly")[1]["paused"] is True
    assert nbflow(server, "deployment", "resume", "hourly").returncode == 0
    assert server.request("GET", "deployments/hourly")[1]["paused"] is False
    assert nbflow(server, "deployment", "delete", "hourly").returncode == 0
    assert server.request("GET", "deployments/hourly")[0] == 404


def test_flow_serve_and_nbflow_deploy_from_python(server, tmp_path) -> None:
    import signal
    import textwrap
    import time

    from deployment_helpers import start_run, wait_for

    script = tmp_path / "served.py"
    script.write_text(textwrap.dedent("""
        from nbflow import flow

        @flow
        def greet(who: str = "world") -> str:
            print("hello", who)
            return who

        if __name__ == "__main__":
            greet.serve("greeter", interval=3600, parameters={"who": "team"})
    """))
    serving = subprocess.Popen([sys.executable, str(script)], env=server.client_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while server.request("GET", "deployments/greeter")[0] != 200:
            assert serving.poll() is None and time.monotonic() < deadline, serving.stdout.read()
            time.sleep(0.2)
        deployment = server.request("GET", "deployments/greeter")[1]
        assert deployment["work_pool"] == "serve-greeter" and deployment["schedule"] == {"interval": 3600}
        done = wait_for(server, start_run(server, "greeter")["id"])
        assert done["state"] == "Completed" and done["worker_id"] and done["parameters"] == {"who": "team"}
    finally:
        serving.send_signal(signal.SIGINT)
        serving.wait(timeout=30)

    notebook = write_notebook(tmp_path / "py.ipynb", "n = 1", "print(n)")
    code = ("import nbflow, json; d = nbflow.deploy(%r, 'from-python', cron='30 6 * * 1-5', "
            "parameters={'n': 2}); print(json.dumps(d))") % str(notebook)
    done = subprocess.run([sys.executable, "-c", code], env=server.client_env(), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert server.request("GET", "deployments/from-python")[1]["schedule"] == {"cron": "30 6 * * 1-5",
                                                                               "timezone": "UTC"}
