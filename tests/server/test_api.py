"""The REST API against a live standalone server: auth on every route, the contract, errors."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from nbflow.server.openapi import document
from nbflow.server.routes import ROUTES

CLIENT = textwrap.dedent("""
    import nbflow
    from nbflow import flow, task, get_run_logger

    @task
    def step(i: int) -> int:
        get_run_logger().info("step %d", i)
        return i * 2

    @flow
    def api_demo(n: int) -> int:
        return sum(step.map(range(n)).result())

    @flow
    def api_broken() -> None:
        raise ValueError("broken on purpose")

    api_demo(3)
    api_demo(4)
    api_broken(return_state=True)
    nbflow.flush()
    print(nbflow.sql("select count(*) as n from task_runs")["n"].item())
""")


@pytest.fixture(scope="module")
def seeded(live_server):
    done = subprocess.run([sys.executable, "-c", CLIENT], env=live_server.client_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"  # the client's SQL went through the server
    return live_server


_SAMPLE = {"run_id": "0123456789abcdef0123456789abcdef", "ref": "nightly", "slug": "new-data", "pool": "default",
           "worker_id": "w-1", "task_run_id": "fedcba9876543210fedcba9876543210", "name": "0-rows.pkl"}


def _concrete(pattern: str) -> str:
    """A route's regex with a sample value for each named group."""
    return re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", lambda m: _SAMPLE[m[1]], pattern)


def test_every_route_refuses_anonymous_requests(live_server) -> None:
    for route in ROUTES:
        for method in route.methods:
            status, _ = live_server.request(method.upper(), _concrete(route.pattern),
                                            body={} if method == "post" else None, token=None)
            if route.pattern == "health":
                assert status == 200, route.pattern
            else:
                assert status in (401, 403), (method, route.pattern, status)
    status, _ = live_server.request("GET", "flow_runs", token="wrong-token")
    assert status in (401, 403)


def test_openapi_document_matches_the_routes(live_server) -> None:
    status, served = live_server.request("GET", "openapi.json", token=None)
    assert status == 200 and served["openapi"].startswith("3.")
    assert served["paths"] == document()["paths"]
    documented = {(path, method) for path, item in served["paths"].items() for method in item}
    routed = {(r.openapi_path, m) for r in ROUTES for m in r.methods} | {("/openapi.json", "get")}
    assert documented == routed
    #: the GET routes that need a query parameter, with one (they answer 400 without it).
    queries = {"targets": "?path=nowhere.ipynb", "schedule_preview": "?interval=60"}
    for route in ROUTES:  # and each documented route answers (not 404) with the token
        if "get" in route.methods and "{id}" not in route.openapi_path:
            expected = 404 if route.pattern == "targets" else 200  # 404: no such file, said in JSON
            status, body = live_server.request("GET", route.pattern + queries.get(route.pattern, ""))
            assert status == expected and (status == 200 or "No file" in body["message"]), (route.pattern, body)


def test_flow_runs_from_a_client_process_are_served(seeded) -> None:
    status, runs = seeded.request("GET", "flow_runs")
    assert status == 200 and [r["flow_name"] for r in runs] == ["api_broken", "api-demo", "api-demo"] or \
        [r["flow_name"] for r in runs] == ["api-broken", "api-demo", "api-demo"]
    assert set(runs[0]) >= {"id", "flow_name", "deployment_id", "state", "state_message", "parameters",
                            "scheduled_time", "start_time", "end_time", "output_notebook"}
    demo = [r for r in runs if r["flow_name"] == "api-demo"]
    assert demo[0]["parameters"] == {"n": 4} and demo[0]["start_time"].endswith("Z")
    status, failed = seeded.request("GET", "flow_runs?state=failed")
    assert [r["state"] for r in failed] == ["Failed"] and "broken on purpose" in failed[0]["state_message"]
    assert len(seeded.request("GET", "flow_runs?limit=1&offset=1")[1]) == 1
    status, one = seeded.request("GET", f"flow_runs/{demo[0]['id']}")
    assert status == 200 and one["id"] == demo[0]["id"]
    assert seeded.request("GET", f"flow_runs/{demo[0]['id'][:8]}")[1]["id"] == demo[0]["id"]
    status, tasks = seeded.request("GET", f"flow_runs/{demo[0]['id']}/task_runs")
    assert status == 200 and len(tasks) == 4 and {t["state"] for t in tasks} == {"Completed"}
    status, logs = seeded.request("GET", f"flow_runs/{demo[0]['id']}/logs")
    assert status == 200 and any(line["message"] == "step 3" for line in logs)
    status, flows = seeded.request("GET", "flows")
    assert {f["flow_name"]: f["runs"] for f in flows}["api-demo"] == 2


@pytest.mark.parametrize(("method", "path", "body", "status", "text"), [
    ("GET", "flow_runs?limit=0", None, 400, "limit"),
    ("GET", "flow_runs?limit=many", None, 400, "limit"),
    ("GET", "flow_runs?offset=-1", None, 400, "offset"),
    ("GET", "flow_runs?state=Sleeping", None, 400, "state"),
    ("GET", "flow_runs/ffffffffffffffffffffffffffffffff", None, 404, "No flow run"),
    ("GET", "flow_runs/ffffffffffffffffffffffffffffffff/task_runs", None, 404, "No flow run"),
    ("POST", "events", b"{not json", 400, "not valid JSON"),
    ("POST", "events", {"runs": []}, 400, "Unknown table"),
    ("POST", "events", {"flow_runs": [[1, 2]]}, 400, "flow_runs"),
    ("POST", "sql", {"sql": ""}, 400, "sql"),
    ("POST", "sql", {"sql": "select * from no_such_table"}, 400, "query failed"),
    ("POST", "sql", {"sql": "delete from flow_runs"}, 400, "one read-only SELECT"),
    ("POST", "sql", {"sql": "select 1; drop table flow_runs"}, 400, "one read-only SELECT"),
    ("POST", "sql", {"sql": "attach 'other.duckdb'"}, 400, "one read-only SELECT"),
    ("POST", "sql", {"sql": "selec 1"}, 400, "does not parse"),
])
def test_bad_input_gets_a_4xx_naming_the_problem(seeded, method: str, path: str, body, status: int,
                                                 text: str) -> None:
    got, reply = seeded.request(method, path, body)
    assert got == status, reply
    assert text in reply["message"] or text == reply.get("field")
    assert seeded.request("GET", "flow_runs")[1]  # nothing was deleted


def test_runtime_file_advertises_the_server_and_goes_away_on_stop(tmp_path) -> None:
    import json

    from live_server import start_server, stop_server

    server = start_server(tmp_path, tmp_path / "log.txt", "tok-" + "a" * 20)
    runtime = tmp_path / "server.json"
    info = json.loads(runtime.read_text())
    assert info["url"] == server.url and info["token"] == server.token and info["pid"] == server.process.pid
    assert oct(runtime.stat().st_mode & 0o777) == "0o600"
    stop_server(server)
    assert not runtime.exists()


def test_pip_install_enables_the_jupyter_server_extension() -> None:
    done = subprocess.run([sys.executable, "-m", "jupyter_server", "extension", "list"],
                          capture_output=True, text=True, timeout=120)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    assert re.search(r"nbflow\s+enabled", listing), listing
    assert re.search(r"nbflow [0-9.]+ OK", listing), listing


def test_task_runs_from_a_client_of_the_previous_schema_are_stored_with_a_null_name(live_server) -> None:
    import time

    from nbflow.store.records import TASK_RUN_COLUMNS, TASK_RUN_COLUMNS_ADDED

    now = time.time()
    values = dict(id="b2" * 16, flow_run_id=None, task_name="old-client", task_key="m.old", dynamic_key=None,
                  state="Completed", state_type="COMPLETED", state_message=None, error=None, upstream="[]",
                  tags="[]", run_count=1, cache_key=None, cache_expiration=None, result_format=None,
                  result_path=None, start_time=now, end_time=now, duration_s=0.0, created=now, updated=now)
    old_columns = TASK_RUN_COLUMNS[:-len(TASK_RUN_COLUMNS_ADDED)]
    status, answer = live_server.request("POST", "events", {"task_runs": [[values[c] for c in old_columns]]})
    assert status == 200, answer
    status, rows = live_server.request("POST", "sql", {"sql": "SELECT task_name, name FROM task_runs "
                                                              "WHERE task_name = 'old-client'"})
    import pyarrow as pa

    assert status == 200, rows
    assert pa.ipc.open_stream(rows).read_all().to_pylist() == [{"task_name": "old-client", "name": None}]
