"""A live `nbflow server start` with seeded runs and deployments, for the dashboard's browser tests.

The server helpers of tests/server (start_server, the FAST timings, notebook writers) are imported
from there: one way to start a server in the suite.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER_TESTS = Path(__file__).resolve().parents[1] / "server"
if str(SERVER_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVER_TESTS))

from deployment_helpers import FAST, deploy, start_run, wait_for, write_notebook  # noqa: E402
from live_server import LiveServer, start_server, stop_server  # noqa: E402

from nbflow.store.records import FLOW_RUN_COLUMNS  # noqa: E402

__all__ = ["Dashboard", "FAST", "deploy", "start_run", "wait_for", "write_notebook"]

#: flows run in a client process of the server: 55 tiny runs (more than a page), two completed runs
#: (one mapped over 60 items, with a warning) and one that fails, newest.
CLIENT = textwrap.dedent("""
    import nbflow
    from nbflow import flow, get_run_logger, task

    @task
    def step(i: int) -> int:
        get_run_logger().info("step %d", i)
        return i * 2

    @task
    def total(values: list) -> int:
        get_run_logger().warning("adding %d values", len(values))
        return sum(values)

    @flow
    def dash_demo(n: int) -> int:
        return total(step.map(range(n)))

    @flow
    def dash_broken() -> None:
        raise ValueError("broken on purpose <b>not bold</b>")

    @flow
    def dash_tiny(i: int) -> int:
        return i

    for i in range(55):  # more than a page of the Runs table
        dash_tiny(i)
    dash_demo(3)
    dash_demo(60)
    dash_broken(return_state=True)
    nbflow.flush()
""")

#: `nbflow server start` on a given port, without the CLI's port check (see Dashboard.restart).
_SAME_PORT = textwrap.dedent("""
    import os, sys
    from nbflow.server.standalone import run_standalone
    sys.exit(run_standalone("127.0.0.1", int(sys.argv[1]), os.environ["NBFLOW_API_TOKEN"]))
""")

#: the flow run of 5,000 task runs that dashboard_fill.py adds to the store's 100,000 runs.
BIG_RUN = "b16b16b16b16b16b16b16b16b16b16b1"
FILL = Path(__file__).with_name("dashboard_fill.py")

REPORT_PARAMETERS = "n_days = 7\nname = 'world'\nratio = 0.5\nverbose = False\nitems = [1, 2]\n"


@dataclass
class Dashboard:
    """The live server (replaced when a test restarts it), where it keeps its files, and what was seeded."""

    server: LiveServer
    home: Path
    log: Path
    token: str
    port: int
    notebooks: Path
    #: seeded runs by what they are: "demo" (60 mapped tasks), "small", "broken" (a failed flow run),
    #: "failed_notebook" (a notebook deployment run that raises).
    runs: dict[str, str] = field(default_factory=dict)
    #: deployment name -> id
    deployments: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def page_url(self, route: str = "") -> str:
        """The dashboard with the token in the URL (Jupyter logs the browser in and sets its cookie)."""
        return f"{self.url}nbflow/?token={self.token}{route}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.server.request(method, path, body)

    def runs_of(self, deployment: str) -> list[dict[str, Any]]:
        status, runs = self.request("GET", f"flow_runs?deployment_id={self.deployments[deployment]}&limit=1000")
        assert status == 200, runs
        return runs

    def record_flow_run(self, run_id: str, state: str, start: float, end: float | None = None) -> None:
        """Write a flow run of flow `dash-live` as a client process does (POST events): new, or changed."""
        row = {"id": run_id, "flow_name": "dash-live", "name": f"dash-live-{run_id[:6]}", "flow_version": "1",
               "state": state, "state_type": state.upper(), "parameters": "{}", "tags": "[]", "run_count": 1,
               "start_time": start, "end_time": end, "duration_s": None if end is None else end - start,
               "host": "elsewhere", "pid": 1, "process_start": start, "created": start, "updated": time.time()}
        status, answer = self.request("POST", "events", {"flow_runs": [[row.get(c) for c in FLOW_RUN_COLUMNS]]})
        assert status == 200, answer

    def restart(self) -> None:
        """Start the server again on the same port and home (after stop()).

        Not through `nbflow server start --port`: its check that the port is free binds without
        SO_REUSEADDR, so it refuses the port for a minute after a server that had browser
        connections stopped (they linger in TIME_WAIT); tornado itself listens with SO_REUSEADDR.
        """
        env = {**os.environ, "NBFLOW_HOME": str(self.home), "NBFLOW_API_TOKEN": self.token, **FAST}
        env.pop("NBFLOW_API_URL", None)
        with self.log.open("a") as out:
            process = subprocess.Popen([sys.executable, "-c", _SAME_PORT, str(self.port)], env=env, stdout=out,
                                       stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}nbflow/api/health", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"nbflow server did not start again:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)
        self.server = LiveServer(url, self.token, self.home, process, self.log)

    def stop(self) -> None:
        stop_server(self.server)


def start_dashboard(base: Path) -> Dashboard:
    """A server with FAST timings on a store of 100,000 older runs and one of 5,000 task runs
    (dashboard_fill.py), flows run against it, and four notebook deployments."""
    home = base / "home"
    home.mkdir()
    filled = subprocess.run([sys.executable, str(FILL), BIG_RUN], env={**os.environ, "NBFLOW_HOME": str(home)},
                            capture_output=True, text=True, timeout=120)
    assert filled.returncode == 0, filled.stderr[-3000:]
    token = secrets.token_hex(16)
    server = start_server(home, base / "server.log", token, extra_env=FAST)
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    dash = Dashboard(server, home, base / "server.log", token, port, base / "notebooks")
    try:
        _seed(dash)
    except BaseException:
        stop_server(server)
        raise
    return dash


def _seed(dash: Dashboard) -> None:
    dash.notebooks.mkdir()
    write_notebook(dash.notebooks / "report.ipynb", REPORT_PARAMETERS, "print('hello', name, n_days * ratio)")
    write_notebook(dash.notebooks / "exploding.ipynb", "x = 1\n", "y = x + 1",
                   "raise RuntimeError('cell exploded on purpose')")
    write_notebook(dash.notebooks / "sleepy.ipynb", "seconds = 600\n", "import time\ntime.sleep(seconds)")
    for name in ("report", "exploding", "sleepy"):
        body = {"name": name, "notebook": str(dash.notebooks / f"{name}.ipynb")}
        dash.deployments[name] = deploy(dash.server, body)["id"]
    # a scheduled one (its runs wait for 02:00): schedule in words, next runs, pause and resume
    dash.deployments["nightly"] = deploy(dash.server, {
        "name": "nightly", "notebook": str(dash.notebooks / "report.ipynb"),
        "schedule": {"cron": "0 2 * * *", "timezone": "UTC"}})["id"]
    # the failing notebook starts now (a kernel takes seconds); its test waits for it
    dash.runs["failed_notebook"] = start_run(dash.server, "exploding")["id"]
    done = subprocess.run([sys.executable, "-c", CLIENT], env=dash.server.client_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    status, runs = dash.request("GET", "flow_runs?limit=100")
    assert status == 200, runs
    for run in runs:
        if run["flow_name"].replace("_", "-") == "dash-demo":
            dash.runs["demo" if run["parameters"] == {"n": 60} else "small"] = run["id"]
        elif run["flow_name"].replace("_", "-") == "dash-broken":
            dash.runs["broken"] = run["id"]
    assert {"demo", "small", "broken"} <= set(dash.runs), runs


def wait_until(predicate: Any, timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.2)
