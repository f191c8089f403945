"""The routes the dashboard reads: state history, the laid-out run graph, the output notebook as
HTML, workers, a deployment's parameter schema; and the dashboard page behind the login."""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import pytest

from deployment_helpers import FAST, deploy, start_run, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server

MAPPED = textwrap.dedent("""
    import nbflow
    from nbflow import flow, task

    @task
    def square(x: int) -> int:
        return x * x

    @task
    def total(values: list) -> int:
        return sum(values)

    @flow
    def fan_out(n: int = 120) -> int:
        return total(square.map(range(n)))

    state = fan_out(return_state=True)
    nbflow.flush()
    print(nbflow.runs(flow_name="fan-out")["id"].iloc[0])
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("views-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    try:
        yield live
    finally:
        stop_server(live)


def test_graph_of_a_mapped_flow_is_collapsed_and_laid_out(server) -> None:
    done = subprocess.run([sys.executable, "-c", MAPPED], env=server.client_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[-1]
    status, graph = server.request("GET", f"flow_runs/{run_id}/graph")
    assert status == 200 and graph["collapsed"] is True
    by_name = {n["task_name"]: n for n in graph["nodes"]}
    assert by_name["square"]["count"] == 120 and by_name["square"]["counts"] == {"Completed": 120}
    assert by_name["total"]["x"] > by_name["square"]["x"]  # downstream is right of upstream
    assert {"from": by_name["square"]["id"], "to": by_name["total"]["id"]} in graph["edges"]
    assert graph["counts"] == {"Completed": 121} and graph["colours"]["Failed"].startswith("#")
    states = server.request("GET", f"flow_runs/{run_id}/states")[1]
    assert [s["state"] for s in states] == ["Pending", "Running", "Completed"]
    assert [s["seq"] for s in states] == [1, 2, 3]
    assert server.request("GET", "flow_runs/feedfacefeedface/graph")[0] == 404
    assert server.request("GET", f"flow_runs/{run_id}/output_notebook")[0] == 404  # a flow has none


def test_output_notebook_is_served_as_sandboxed_html(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "shown.ipynb", "n = 1", "print('the answer is', n * 42)")
    deploy(server, {"name": "shown", "notebook": str(notebook)})
    run = wait_for(server, start_run(server, "shown")["id"])
    assert run["state"] == "Completed"
    request = urllib.request.Request(f"{server.url}nbflow/api/flow_runs/{run['id']}/output_notebook",
                                     headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
        assert response.headers["Content-Type"].startswith("text/html")
    assert "the answer is 42" in page and "<html" in page
    assert policy.startswith("sandbox") and "default-src 'none'" in policy


def test_parameter_schema_and_workers(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "typed.ipynb", "n_days = 7\nregion = 'all'\nscale = 1.5\nfast = False",
                              "print(n_days)")
    flow_file = write_flow_file(tmp_path / "typed.py", """
        from nbflow import flow

        @flow
        def typed(rows: int, label: str = "x", ratio: float = 0.5) -> None:
            pass
    """)
    deploy(server, {"name": "typed-nb", "notebook": str(notebook), "parameters": {"n_days": 3},
                    "work_pool": "nobody"})
    deploy(server, {"name": "typed-flow", "entrypoint": f"{flow_file}:typed", "parameters": {"rows": 2},
                    "work_pool": "nobody"})
    schema = server.request("GET", "deployments/typed-nb")[1]["parameter_schema"]
    assert schema["n_days"] == {"type": "int", "default": 3, "required": False, "help": ""}
    assert schema["region"]["type"] == "str" and schema["region"]["default"] == "all"
    assert schema["scale"]["type"] == "float" and schema["fast"]["type"] == "bool"
    flow_schema = server.request("GET", "deployments/typed-flow")[1]["parameter_schema"]
    assert flow_schema["rows"] == {"type": "int", "default": 2, "required": False, "help": ""}
    assert flow_schema["ratio"]["type"] == "float" and flow_schema["label"]["default"] == "x"
    server.request("POST", "workers/w-views/heartbeat", {"work_pool": "nobody", "run_ids": [], "pid": 4242,
                                                         "host": "lab-box"})
    workers = server.request("GET", "workers")[1]
    mine = next(w for w in workers if w["id"] == "w-views")
    assert mine["online"] is True and mine["work_pool"] == "nobody" and mine["heartbeat"].endswith("Z")
    assert mine["pid"] == 4242 and mine["host"] == "lab-box"  # the worker's own process and machine
    in_server = next(w for w in workers if w["work_pool"] == "default" and w["online"])
    assert isinstance(in_server["pid"], int) and in_server["pid"] > 0
    pools = {p["name"]: p for p in server.request("GET", "work_pools")[1]}
    assert pools["default"]["created"] and pools["nobody"]["created"]  # pools first met at a heartbeat
    assert server.request("POST", "workers/w-views/heartbeat", {"pid": 0})[0] == 422


def test_the_dashboard_page_needs_a_login(server) -> None:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    for path, location in [("nbflow/", "/login?next=%2Fnbflow%2F"), ("", "/nbflow/")]:
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(server.url + path, timeout=30)
        assert answer.value.code == 302 and answer.value.headers["Location"].rstrip("?").endswith(location)
    request = urllib.request.Request(server.url + "nbflow/", headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        page = response.read().decode()
    assert '<meta name="nbflow-api" content="/nbflow/api/">' in page
    with urllib.request.urlopen(server.url + "nbflow/static/plotly.min.js", timeout=30) as response:
        assert response.status == 200 and len(response.read()) > 1_000_000  # bundled, no CDN


def test_flow_runs_filter_by_deployment_and_time_and_logs_by_level(server, tmp_path) -> None:
    flow_file = write_flow_file(tmp_path / "noisy.py", """
        from nbflow import flow, get_run_logger

        @flow
        def noisy() -> None:
            logger = get_run_logger()
            logger.info("just saying")
            logger.warning("careful now")
    """)
    made = deploy(server, {"name": "noisy", "entrypoint": f"{flow_file}:noisy"})
    first = wait_for(server, start_run(server, "noisy")["id"])
    listed = server.request("GET", f"flow_runs?deployment_id={made['id']}")[1]
    assert [r["id"] for r in listed] == [first["id"]]
    start = first["start_time"]
    assert [r["id"] for r in server.request("GET", f"flow_runs?deployment_id={made['id']}&since={start}")[1]] \
        == [first["id"]]
    assert server.request("GET", f"flow_runs?deployment_id={made['id']}&until=2000-01-01T00:00:00Z")[1] == []
    assert server.request("GET", f"flow_runs?since=2999-01-01T00:00:00%2B02:00")[1] == []
    status, answer = server.request("GET", "flow_runs?since=yesterday")
    assert status == 400 and answer["field"] == "since"
    child = next(r for r in server.request("GET", "flow_runs?flow_name=noisy")[1]
                 if r["parent_flow_run_id"] == first["id"])
    everything = [line["message"] for line in server.request("GET", f"flow_runs/{child['id']}/logs")[1]]
    assert "just saying" in everything and "careful now" in everything
    warnings = server.request("GET", f"flow_runs/{child['id']}/logs?level=WARNING")[1]
    assert [line["message"] for line in warnings] == ["careful now"]
    assert server.request("GET", f"flow_runs/{child['id']}/logs?level=30")[1] == warnings
    assert server.request("GET", f"flow_runs/{child['id']}/logs?level=loud")[0] == 400
