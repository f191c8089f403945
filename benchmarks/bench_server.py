"""The nbflow server's targets, measured against a live `nbflow server start`, as one table.

    python3 benchmarks/bench_server.py                     # every part, ~3-4 min on 2 cores
    python3 benchmarks/bench_server.py --quick             # smaller sizes, ~1-2 min
    python3 benchmarks/bench_server.py --only latency -v   # some parts, with details

Parts (target in brackets):
  startup   `nbflow server start` on a fresh NBFLOW_HOME until GET nbflow/api/health answers 200,
            median and max of --starts starts, after one untimed start [<= 1.5 s]
  latency   GET flow_runs?limit=100 (also with flow_name= and state=) on a store of --runs flow
            runs and 3x as many task runs: --requests sequential requests on one keep-alive
            connection after 20 warm-ups; p50/p95/p99 and the server's CPU per request [p99 <= 20 ms]
  events    a flow of --tasks sequential trivial tasks in a fresh process that sends its run
            events to the live server, vs the same flow in embedded mode: µs per task, and every
            task run counted in the server's store [server mode <= 50 µs/task]
  notebook  a deployment run of a one-parameter notebook (POST deployments/<name>/runs, then GET
            flow_runs/<id> every 20 ms until a final state) vs `python -m papermill` on the same
            notebook as a subprocess, and `nbflow run` (no server) to tell nbflow's own share;
            interleaved, median of --notebook-runs rounds after an untimed one [overhead <= 10%]
  schedule  service.schedule_pass over --deployments scheduled deployments (half cron in several
            time zones, half interval) on a held embedded store: the first pass (3 runs ahead
            each) and 10 steady passes that create nothing [steady pass <= 100 ms]

Every server and measuring process gets a fresh temporary NBFLOW_HOME (deleted afterwards) and a
free port; every server started is stopped (SIGINT, then kill). The table goes to stdout; every
figure, with the machine's load average, goes to benchmarks/results/bench_server-<UTC time>.json
(git-ignored). Timings on a shared machine are noisy: the server's CPU time per request and the
load average are in the JSON for that reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

PARTS = ("startup", "latency", "events", "notebook", "schedule")
RESULTS = C.HERE / "results"
FINAL_STATES = {"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"}
TARGETS = {"start_s": 1.5, "p99_ms": 20.0, "task_us": 50.0, "notebook_overhead_pct": 10.0,
           "steady_pass_ms": 100.0}
#: the three list requests timed by the latency part (flow-7 and Failed match 5% and 10% of runs).
LIST_QUERIES = (("newest 100", "flow_runs?limit=100"),
                ("flow_name=", "flow_runs?limit=100&flow_name=flow-7"),
                ("state=", "flow_runs?limit=100&state=failed"))
WARMUP_REQUESTS = 20
#: the notebook of the notebook and schedule parts: one `parameters` cell and one that prints.
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "id": "parameters", "metadata": {"tags": ["parameters"]},
         "outputs": [], "source": ["n = 1"]},
        {"cell_type": "code", "execution_count": None, "id": "show", "metadata": {}, "outputs": [],
         "source": ["print(n)"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}
CRONS = ("*/5 * * * *", "0 2 * * *", "30 */6 * * 1-5", "15 9 * * MON", "0 0 1 * *")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney", "America/Sao_Paulo")
INTERVALS = (60, 300, 900, 3600, 86400)


# -- children: run in a fresh process with its own NBFLOW_HOME -------------------------------------

def child_fill(runs: int, tasks_per_run: int) -> None:
    """Fill a fresh store with `runs` flow runs and `tasks_per_run` task runs each, in SQL.

    Runs start 10 s apart; flow names cycle over 20 flows; 10% Failed, 2% Cancelled, 1%
    Scheduled (deployment runs: no start time yet, as the scheduler creates them), the rest
    Completed. Ids are md5 hex digits, random-looking like the engine's.
    """
    from nbflow.store.backend import embedded_store

    store = embedded_store()
    t0 = time.perf_counter()
    origin = "TIMESTAMP '2026-05-01 00:00:00'"

    def at(seconds: str) -> str:
        return f"{origin} + to_seconds({seconds})"

    state = ("CASE WHEN i % 100 = 99 THEN 'Scheduled' WHEN i % 10 = 7 THEN 'Failed' "
             "WHEN i % 50 = 3 THEN 'Cancelled' ELSE 'Completed' END")
    started = f"CASE WHEN i % 100 = 99 THEN NULL ELSE {at('i * 10.0')} END"
    with store.transaction("fill the benchmark store") as con:
        con.execute(f"""
            INSERT INTO flow_runs (id, flow_name, name, flow_version, state, state_type, state_message,
                parameters, deployment_id, tags, run_count, scheduled_time, start_time, end_time, duration_s,
                host, pid, process_start, created, updated)
            SELECT md5('flow-' || i), 'flow-' || (i % 20), 'flow-' || (i % 20) || '-' || i, '1', {state},
                upper({state}),
                CASE WHEN i % 10 = 7 THEN 'Task run ''load'' failed: ValueError(''bad row ' || i || ''')' END,
                '{{"n": ' || i || ', "source": "s3://bucket/part-' || (i % 97) || '.parquet"}}',
                CASE WHEN i % 100 = 99 THEN md5('deployment-' || (i % 20)) END,
                CASE WHEN i % 100 = 99 THEN '["deployment"]' ELSE '["nightly"]' END,
                CASE WHEN i % 100 = 99 THEN 0 ELSE 1 END,
                CASE WHEN i % 100 = 99 THEN {at('i * 10.0 + 3600')} END,
                {started}, CASE WHEN i % 100 = 99 THEN NULL ELSE {at('i * 10.0 + 2.5')} END,
                CASE WHEN i % 100 = 99 THEN NULL ELSE 2.5 END,
                'bench-host', 12345, 1.7e9, {at('i * 10.0 - 0.01')}, {at('i * 10.0 + 2.5')}
            FROM range({runs}) t(i)""")
        con.execute(f"""
            INSERT INTO task_runs (id, flow_run_id, task_name, task_key, dynamic_key, state, state_type,
                upstream, tags, run_count, start_time, end_time, duration_s, created, updated)
            SELECT md5('task-' || f || '-' || k), md5('flow-' || f), 'task-' || k, 'task-' || k || '-key', 0,
                'Completed', 'COMPLETED', '[]', '[]', 1, {at('f * 10.0 + k * 0.5')},
                {at('f * 10.0 + k * 0.5 + 0.4')}, 0.4, {at('f * 10.0 + k * 0.5')}, {at('f * 10.0 + k * 0.5 + 0.4')}
            FROM range({runs}) a(f), range({tasks_per_run}) b(k)
            WHERE f % 100 != 99""")
    fill_s = time.perf_counter() - t0
    counts = store.query("SELECT (SELECT count(*) FROM flow_runs) AS flow_runs, "
                         "(SELECT count(*) FROM task_runs) AS task_runs")
    C.emit({"fill_s": fill_s, "flow_runs": int(counts["flow_runs"].iloc[0]),
            "task_runs": int(counts["task_runs"].iloc[0]),
            "file_mb": round(store.path.stat().st_size / 1e6, 1)})


def child_flow(n: int) -> None:
    """A warm-up flow, then `n` sequential trivial tasks in one flow, timed; then count them."""
    t0 = time.perf_counter()
    import nbflow
    from nbflow import flow, task
    from nbflow.store.backend import current_store

    import_s = time.perf_counter() - t0

    @task
    def inc(x):
        return x + 1

    @flow
    def warm():
        return inc(0)

    @flow
    def sequential(count: int):
        for i in range(count):
            inc(i)

    t0 = time.perf_counter()
    warm()
    nbflow.flush()
    warmup_s = time.perf_counter() - t0
    gc_watch = C.GcWatch()
    c0 = time.process_time()
    t0 = time.perf_counter()
    sequential(n)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    flushed = nbflow.flush()
    durable = time.perf_counter() - t0
    result = {"n": n, "store": type(current_store()).__name__, "import_s": import_s, "warmup_s": warmup_s,
              "wall_s": wall, "cpu_s": cpu, "durable_s": durable, "flushed_rows": flushed, **gc_watch.stop()}
    result.update(C.peak_rss_mb())
    found = nbflow.sql(
        "SELECT count(*) AS task_runs, count(*) FILTER (WHERE t.state = 'Completed') AS completed "
        "FROM task_runs t WHERE t.flow_run_id = (SELECT id FROM flow_runs WHERE flow_name = 'sequential' "
        "ORDER BY created DESC LIMIT 1)")
    result["task_runs"] = int(found["task_runs"].iloc[0])
    result["completed"] = int(found["completed"].iloc[0])
    C.emit(result)


def child_schedule(count: int, steady_passes: int, notebook: str, profile: bool) -> None:
    """Create `count` scheduled deployments on a held embedded store, then time schedule_pass."""
    from nbflow.deployments import service
    from nbflow.store.backend import embedded_store

    store = embedded_store()
    store.hold()
    try:
        t0 = time.perf_counter()
        for i in range(count):
            if i % 2 == 0:
                schedule = {"cron": CRONS[(i // 2) % len(CRONS)], "timezone": ZONES[(i // 2) % len(ZONES)]}
            else:
                schedule = {"interval": INTERVALS[(i // 2) % len(INTERVALS)]}
            service.create_deployment(store, {"name": f"bench-{i:04d}", "notebook": notebook,
                                              "parameters": {"n": i}, "schedule": schedule})
        create_s = time.perf_counter() - t0
        # One `now` for every pass: a steady pass must find nothing new to create (with the real
        # clock a `*/5` slot could come due between two passes).
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        t0 = time.perf_counter()
        created = service.schedule_pass(store, now=now)
        first_s = time.perf_counter() - t0
        steady, steady_cpu, steady_created = [], [], []
        for _ in range(steady_passes):
            c0 = time.process_time()
            t0 = time.perf_counter()
            steady_created.append(service.schedule_pass(store, now=now))
            steady.append(time.perf_counter() - t0)
            steady_cpu.append(time.process_time() - c0)
        result = {"deployments": count, "create_s": create_s, "first_pass_s": first_s, "first_pass_runs": created,
                  "steady_s": steady, "steady_cpu_s": steady_cpu, "steady_created": sum(steady_created)}
        if profile or statistics.median(steady) * 1e3 > TARGETS["steady_pass_ms"]:
            prof = C.ThreadProfiler(clock="wall")
            with prof:
                service.schedule_pass(store, now=now)
            import io

            out = io.StringIO()
            prof.report(f"one steady schedule_pass over {count:,} deployments", top=12, out=out)
            result["profile"] = out.getvalue()
        runs = store.query("SELECT count(*) AS n FROM flow_runs")
        result["flow_runs_stored"] = int(runs["n"].iloc[0])
    finally:
        store.release()
    C.emit(result)


# -- a live server -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(home: str, api: "Server | None" = None) -> dict[str, str]:
    """The children's environment: C.nbflow_env, no server unless `api` (then its URL and token)."""
    env = C.nbflow_env(home)
    for name in ("NBFLOW_API_URL", "NBFLOW_API_TOKEN", "NBFLOW_SERVER"):
        env.pop(name, None)
    if api is not None:
        env["NBFLOW_API_URL"] = api.url
        env["NBFLOW_API_TOKEN"] = api.token
    return env


class Server:
    """`python -m nbflow server start` on a free port; `start_s` is the time until health answered 200."""

    def __init__(self, home: str, timeout: float = 60.0) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token = secrets.token_hex(16)
        self.log = Path(home) / "server.log"
        env = bench_env(home)
        env["NBFLOW_API_TOKEN"] = self.token
        with open(self.log, "w") as out:
            t0 = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "nbflow", "server", "start", "--port", str(self.port)],
                env=env, cwd=str(C.ROOT), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_healthy(t0 + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_s = time.perf_counter() - t0
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/nbflow/api/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            if self.process.poll() is not None or time.perf_counter() > deadline:
                tail = self.log.read_text()[-2000:] if self.log.exists() else ""
                raise C.ChildFailed(f"nbflow server did not become healthy (exit {self.process.poll()}): {tail}")
            time.sleep(0.01)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """(status, body bytes) of one request on the kept-alive connection."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        self.conn.request(method, "/nbflow/api/" + path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, raw = self.request(method, path, body)
        if status >= 400:
            raise C.ChildFailed(f"{method} {path} answered {status}: {raw[:500]!r}")
        return json.loads(raw)

    def cpu_s(self) -> float:
        """CPU time (user + system, all threads) the server process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def temp_home(prefix: str) -> Iterator[str]:
    home = C.fresh_home(prefix)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def live_server(home: str) -> Iterator[Server]:
    server = Server(home)
    try:
        yield server
    finally:
        server.stop()


def child(part: str, args: list[str], env: dict[str, str], timeout: float, verbose: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, *args]
    return C.run_child(cmd, env, timeout=timeout, verbose=verbose)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: p99 of 500 values is the 495th smallest."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


# -- parts -----------------------------------------------------------------------------------------

def part_startup(args: argparse.Namespace) -> dict:
    with temp_home("bench-server-home-") as home, live_server(home):
        pass  # untimed: compiles the bytecode into benchmarks/.pycache
    times = []
    for _ in range(args.starts):
        with temp_home("bench-server-home-") as home, live_server(home) as server:
            times.append(server.start_s)
    return {"start_s": times, "median_s": statistics.median(times), "max_s": max(times)}


def part_latency(args: argparse.Namespace) -> dict:
    with temp_home("bench-server-big-") as home:
        fill = child("fill", [str(args.runs), "3"], bench_env(home), args.timeout, args.verbose)
        result: dict[str, Any] = {"fill": fill, "requests": args.requests, "queries": {}}
        with live_server(home) as server:
            result["start_s_with_store"] = server.start_s
            for label, path in LIST_QUERIES:
                for _ in range(WARMUP_REQUESTS):
                    server.request("GET", path)
                times = []
                cpu0 = server.cpu_s()
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    status, body = server.request("GET", path)
                    times.append(time.perf_counter() - t0)
                    if status != 200:
                        raise C.ChildFailed(f"GET {path} answered {status}: {body[:300]!r}")
                cpu = server.cpu_s() - cpu0
                runs = json.loads(body)
                keys = [(r["start_time"] or "", r["id"]) for r in runs]
                result["queries"][label] = {
                    "path": path, "p50_ms": pct(times, 50) * 1e3, "p95_ms": pct(times, 95) * 1e3,
                    "p99_ms": pct(times, 99) * 1e3, "max_ms": max(times) * 1e3,
                    "server_cpu_ms_per_request": cpu / args.requests * 1e3, "rows": len(runs),
                    "newest_first": all(a[0] >= b[0] for a, b in zip(keys, keys[1:]) if a[0] and b[0]),
                    # Same digest before and after a change to the list path: the same answer.
                    "body_sha256": hashlib.sha256(body).hexdigest()[:16],
                }
    return result


def part_events(args: argparse.Namespace) -> dict:
    n = str(args.tasks)
    embedded, served = [], []
    for _ in range(args.repeat):
        with temp_home("bench-server-embedded-") as home:
            embedded.append(child("flow", [n], bench_env(home), args.timeout, args.verbose))
    with temp_home("bench-server-events-") as home, live_server(home) as server:
        for _ in range(args.repeat):
            served.append(child("flow", [n], bench_env(home, server), args.timeout, args.verbose))
    emb, srv = C.median_of(embedded, "wall_s"), C.median_of(served, "wall_s")
    return {
        "tasks": args.tasks, "embedded": emb, "server": srv,
        "embedded_all_wall_s": [r["wall_s"] for r in embedded], "server_all_wall_s": [r["wall_s"] for r in served],
        "embedded_us": emb["wall_s"] / args.tasks * 1e6, "server_us": srv["wall_s"] / args.tasks * 1e6,
        "server_durable_us": srv["durable_s"] / args.tasks * 1e6,
        "embedded_durable_us": emb["durable_s"] / args.tasks * 1e6,
        "arrived": min(r["task_runs"] for r in served), "completed": min(r["completed"] for r in served),
        "stores": sorted({r["store"] for r in embedded}) + sorted({r["store"] for r in served}),
    }


def _write_notebook(directory: str) -> Path:
    path = Path(directory) / "bench_params.ipynb"
    path.write_text(json.dumps(NOTEBOOK, indent=1))
    return path


def _printed(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))


def part_notebook(args: argparse.Namespace) -> dict:
    """Bare papermill, `nbflow run` (no server) and a deployment run, interleaved round by round
    so that the machine's load drifts over all three alike (each goes first in turn); the first
    round is untimed."""
    papermill, nbflow_run, deployed, phases = [], [], [], []
    with temp_home("bench-server-notebook-") as home, temp_home("bench-server-nbrun-") as run_home:
        notebook = _write_notebook(home)
        out = Path(home) / "papermill-out.ipynb"
        papermill_cmd = [sys.executable, "-m", "papermill", str(notebook), str(out), "-p", "n", "2"]
        nbflow_cmd = [sys.executable, "-m", "nbflow", "run", str(notebook), "-p", "n", "2"]
        with live_server(home) as server:
            server.json("POST", "deployments", {"name": "bench-notebook", "notebook": str(notebook),
                                                "parameters": {"n": 1}})
            last: dict = {}

            def deployment() -> float:
                nonlocal last
                seconds, seen, last = _deployment_run(server, args.timeout)
                phases.append({**seen, "recorded_running_s": _seconds_between(last["start_time"],
                                                                              last["end_time"])})
                return seconds

            steps = [(papermill, lambda: _timed_process(papermill_cmd, bench_env(home), home, args.timeout)),
                     (nbflow_run, lambda: _timed_process(nbflow_cmd, bench_env(run_home), run_home, args.timeout)),
                     (deployed, deployment)]
            for i in range(args.notebook_runs + 1):
                for times, step in steps[i % 3:] + steps[:i % 3]:  # each goes first in turn
                    seconds = step()
                    if i:
                        times.append(seconds)
                if not i:
                    phases.clear()
            output = Path(last["output_notebook"]) if last.get("output_notebook") else None
            deployed_printed = _printed(output) if output and output.exists() else ""
        papermill_printed = _printed(out)
    pm, dep = statistics.median(papermill), statistics.median(deployed)
    return {"papermill_s": papermill, "nbflow_run_s": nbflow_run, "deployment_s": deployed,
            "papermill_median_s": pm, "nbflow_run_median_s": statistics.median(nbflow_run),
            "deployment_median_s": dep, "overhead_pct": (dep - pm) / pm * 100,
            "nbflow_run_overhead_pct": (statistics.median(nbflow_run) - pm) / pm * 100, "phases": phases,
            "phases_median": {k: statistics.median(p[k] for p in phases if p.get(k) is not None)
                              for k in sorted(set().union(*phases))},
            "papermill_printed": papermill_printed.strip(), "deployment_printed": deployed_printed.strip()}


def _timed_process(cmd: list[str], env: dict[str, str], cwd: str, timeout: float) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise C.ChildFailed(f"{' '.join(cmd[1:4])} exit {proc.returncode}: {proc.stderr[-500:]}")
    return seconds


def _deployment_run(server: Server, timeout: float) -> tuple[float, dict[str, float], dict]:
    """POST a run of bench-notebook, GET it every 20 ms until it ends: (seconds, when each state
    was first seen plus the polls and the server's CPU time meanwhile, the final run)."""
    cpu0 = server.cpu_s()
    t0 = time.perf_counter()
    run = server.json("POST", "deployments/bench-notebook/runs", {"parameters": {"n": 2}})
    seen = {"post_s": time.perf_counter() - t0, "polls": 0}
    while True:
        last = server.json("GET", f"flow_runs/{run['id']}")
        seen["polls"] += 1
        seen.setdefault(f"seen_{last['state'].lower()}_s", time.perf_counter() - t0)
        if last["state"] in FINAL_STATES:
            break
        if time.perf_counter() - t0 > timeout:
            raise C.ChildFailed(f"deployment run {run['id']} still {last['state']} after {timeout:.0f} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    seen["server_cpu_s"] = server.cpu_s() - cpu0  # the polls' share of it competes with the run
    if last["state"] != "Completed":
        raise C.ChildFailed(f"deployment run ended {last['state']}: {last.get('state_message')}")
    return seconds, seen, last


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def part_schedule(args: argparse.Namespace) -> dict:
    with temp_home("bench-server-schedule-") as home:
        notebook = _write_notebook(home)
        extra = ["--profile"] if args.profile else []
        return child("schedule", [str(args.deployments), "10", str(notebook), *extra], bench_env(home),
                     args.timeout, args.verbose)


# -- report ----------------------------------------------------------------------------------------

def table(results: dict, args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, verdict) rows."""
    rows = []
    s = results.get("startup")
    if s:
        rows.append((f"server start to healthy, fresh home (median / max of {len(s['start_s'])})",
                     f"{C.fmt_s(s['median_s'])} / {C.fmt_s(s['max_s'])}", "<= 1.5 s",
                     C.verdict(s["median_s"] <= TARGETS["start_s"])))
    lat = results.get("latency")
    if lat:
        fill = lat["fill"]
        rows.append((f"server start to healthy, {fill['flow_runs']:,} runs stored",
                     C.fmt_s(lat["start_s_with_store"]), "", ""))
        for label, q in lat["queries"].items():
            rows.append((f"GET {q['path']}, {fill['flow_runs']:,} runs (p50 / p95 / p99; server CPU)",
                         f"{q['p50_ms']:.1f} / {q['p95_ms']:.1f} / {q['p99_ms']:.1f} ms; "
                         f"{q['server_cpu_ms_per_request']:.1f} ms", "p99 <= 20 ms",
                         C.verdict(q["p99_ms"] <= TARGETS["p99_ms"])))
    ev = results.get("events")
    if ev:
        rows.append((f"flow of {ev['tasks']:,} tasks, server mode vs embedded (µs/task, median of "
                     f"{len(ev['server_all_wall_s'])})",
                     f"{C.fmt_num(ev['server_us'])} vs {C.fmt_num(ev['embedded_us'])} µs "
                     f"({ev['server_us'] - ev['embedded_us']:+.1f} µs)", "<= 50 µs",
                     C.verdict(ev["server_us"] <= TARGETS["task_us"])))
        durable = f"{C.fmt_num(ev['server_durable_us'])} vs {C.fmt_num(ev['embedded_durable_us'])} µs"
        rows.append(("  the same until durable (call + nbflow.flush())", durable, "", ""))
        rows.append(("  task runs stored in the server", f"{ev['arrived']:,} of {ev['tasks']:,}", "all",
                     C.verdict(ev["arrived"] == ev["tasks"] == ev["completed"])))
    nb = results.get("notebook")
    if nb:
        rows.append((f"notebook deployment run vs papermill CLI (median of {len(nb['deployment_s'])})",
                     f"{C.fmt_s(nb['deployment_median_s'])} vs {C.fmt_s(nb['papermill_median_s'])} "
                     f"({nb['overhead_pct']:+.0f}%)", "<= +10%",
                     C.verdict(nb["overhead_pct"] <= TARGETS["notebook_overhead_pct"])))
        rows.append(("  `nbflow run` of the notebook, no server (same rounds)",
                     f"{C.fmt_s(nb['nbflow_run_median_s'])} ({nb['nbflow_run_overhead_pct']:+.0f}%)", "", ""))
    sc = results.get("schedule")
    if sc:
        rows.append((f"scheduler first pass, {sc['deployments']:,} deployments "
                     f"({sc['first_pass_runs']:,} runs made)", C.fmt_time(sc["first_pass_s"]), "", ""))
        steady = sc["steady_s"]
        rows.append((f"scheduler steady pass, {sc['deployments']:,} deployments (median / max of {len(steady)})",
                     f"{C.fmt_ms(statistics.median(steady))} / {C.fmt_ms(max(steady))}", "<= 100 ms",
                     C.verdict(statistics.median(steady) * 1e3 <= TARGETS["steady_pass_ms"]
                               and sc["steady_created"] == 0)))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("figure", "measured", "target", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for i, row in enumerate([header, *rows]):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
        if i == 0:
            print("| " + " | ".join("-" * w for w in widths) + " |")


def details(results: dict) -> None:
    """-v: what the table summarises."""
    lat = results.get("latency")
    if lat:
        print(f"  store: {lat['fill']}")
        for label, q in lat["queries"].items():
            print(f"  {label}: max {q['max_ms']:.1f} ms, {q['rows']} rows, newest first {q['newest_first']}, "
                  f"body sha256 {q['body_sha256']}")
    ev = results.get("events")
    if ev:
        for mode in ("embedded", "server"):
            shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in ev[mode].items()}
            print(f"  events {mode}: {shown}")
    nb = results.get("notebook")
    if nb:
        print(f"  papermill runs {[round(x, 3) for x in nb['papermill_s']]}, nbflow run "
              f"{[round(x, 3) for x in nb['nbflow_run_s']]}, deployment runs "
              f"{[round(x, 3) for x in nb['deployment_s']]}")
        print(f"  deployment run phases (median s after the POST): "
              f"{ {k: None if v is None else round(v, 3) for k, v in nb['phases_median'].items()} }")
        print(f"  printed: papermill {nb['papermill_printed']!r}, deployment {nb['deployment_printed']!r}")
    sc = results.get("schedule")
    if sc:
        print(f"  schedule: {sc['deployments']:,} deployments created in {C.fmt_s(sc['create_s'])}; steady passes "
              f"{[round(x * 1e3, 1) for x in sc['steady_s']]} ms (CPU "
              f"{[round(x * 1e3, 1) for x in sc['steady_cpu_s']]} ms), {sc['steady_created']} runs made; "
              f"{sc['flow_runs_stored']:,} flow runs stored")
    if sc and sc.get("profile"):
        print(sc["profile"])


def save(results: dict, args: argparse.Namespace, started: float) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench_server-{stamp}.json"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=C.ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    meta = {"when": stamp, "commit": commit, "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "load_average_end": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1),
            "args": {k: v for k, v in vars(args).items() if k != "child"}}
    path.write_text(json.dumps({"meta": meta, "targets": TARGETS, **results}, indent=1, default=str))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts (default all: {','.join(PARTS)})")
    ap.add_argument("--quick", action="store_true",
                    help="smaller sizes: 3 starts, 20,000 runs, 200 requests, 2,000 tasks, 3 notebook runs, "
                         "200 deployments")
    ap.add_argument("--starts", type=int, help="timed server starts (default 5)")
    ap.add_argument("--runs", type=int, help="flow runs in the latency store (default 100,000)")
    ap.add_argument("--requests", type=int, help="timed requests per list query (default 500)")
    ap.add_argument("--tasks", type=int, help="tasks in the events flow (default 10,000)")
    ap.add_argument("--repeat", type=int, default=3, help="processes per mode in the events part (median)")
    ap.add_argument("--notebook-runs", type=int,
                    help="timed rounds of papermill, `nbflow run` and the deployment (default 5)")
    ap.add_argument("--deployments", type=int, help="scheduled deployments (default 1,000)")
    ap.add_argument("--profile", action="store_true", help="also profile one steady scheduler pass")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per child process or run")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", choices=["fill", "flow", "schedule"], help=argparse.SUPPRESS)
    ap.add_argument("child_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child == "fill":
        child_fill(int(args.child_args[0]), int(args.child_args[1]))
        return 0
    if args.child == "flow":
        child_flow(int(args.child_args[0]))
        return 0
    if args.child == "schedule":
        count, passes, notebook = args.child_args
        child_schedule(int(count), int(passes), notebook, args.profile)
        return 0

    quick = args.quick
    defaults = {"starts": (5, 3), "runs": (100_000, 20_000), "requests": (500, 200), "tasks": (10_000, 2_000),
                "notebook_runs": (5, 3), "deployments": (1_000, 200)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    started = time.perf_counter()
    runners = {"startup": part_startup, "latency": part_latency, "events": part_events,
               "notebook": part_notebook, "schedule": part_schedule}
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    ok = True
    for part in parts:
        t0 = time.perf_counter()
        try:
            results[part] = runners[part](args)
        except C.ChildFailed as exc:
            ok = False
            results[part + "_failed"] = str(exc)
            print(f"bench_server: {part} FAILED: {exc}", file=sys.stderr)
        if args.verbose:
            print(f"  ({part}: {C.fmt_s(time.perf_counter() - t0)})", file=sys.stderr)
    rows = table(results, args)
    load = os.getloadavg()
    print(f"bench_server ({'quick, ' if quick else ''}{C.fmt_s(time.perf_counter() - started)}, load average "
          f"{results['load_average_start'][0]:.1f} at start, {load[0]:.1f} at end):")
    print_table(rows)
    if args.verbose:
        details(results)
    print(f"figures: {save(results, args, started).relative_to(C.ROOT)}")
    return 0 if ok and all(r[3] != "FAIL" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
