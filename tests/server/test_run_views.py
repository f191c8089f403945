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
    # JupyterLab opens the same notebook as nbformat JSON, in its own viewer
    status, notebook = server.request("GET", f"flow_runs/{run['id']}/output_notebook?format=ipynb")
    assert status == 200 and notebook["nbformat"] == 4
    assert any("the answer is 42" in "".join(o.get("text", "")) for c in notebook["cells"] for o in c.get("outputs", []))
    status, error = server.request("GET", f"flow_runs/{run['id']}/output_notebook?format=pdf")
    assert status == 400 and error["field"] == "format" and "html or ipynb" in error["message"]


def test_parameter_schema_and_workers(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "typed.ipynb", "n_days = 7\nregion = 'all'\nscale = 1.5\nfast = False",
                              "print(n_days)")
    flow_file = write_flow_file(tmp_path / "typed.py", """
        from nbflow import flow

        @flow
        def typed(rows: int, label: str = "x", ratio: float = 0.5) -> None:
            '''Args:
                rows: how many rows
            '''
    """)
    deploy(server, {"name": "typed-nb", "notebook": str(notebook), "parameters": {"n_days": 3},
                    "work_pool": "nobody"})
    deploy(server, {"name": "typed-flow", "entrypoint": f"{flow_file}:typed", "parameters": {"rows": 2},
                    "work_pool": "nobody"})
    schema = server.request("GET", "deployments/typed-nb")[1]["parameter_schema"]
    props = schema["properties"]  # Prefect's parameter schema, the deployment's parameters as defaults
    assert props["n_days"] == {"title": "n_days", "type": "integer", "default": 3, "position": 0}
    assert props["region"]["type"] == "string" and props["region"]["default"] == "all"
    assert props["scale"]["type"] == "number" and props["fast"]["type"] == "boolean"
    assert "required" not in schema
    flow_schema = server.request("GET", "deployments/typed-flow")[1]["parameter_schema"]
    assert flow_schema["properties"]["rows"] == {"title": "rows", "type": "integer", "default": 2, "position": 0,
                                                 "description": "how many rows"}
    assert flow_schema["properties"]["ratio"]["type"] == "number"
    assert flow_schema["properties"]["label"]["default"] == "x"
    assert "required" not in flow_schema  # rows has the deployment's value
    by_flow = server.request("GET", "deployments/typed%2Ftyped-flow")  # FLOW/DEPLOYMENT, as Prefect names it
    assert by_flow[0] == 200 and by_flow[1]["name"] == "typed-flow"
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
    assert server.request("GET", "flow_runs?since=2999-01-01T00:00:00%2B02:00")[1] == []
    status, answer = server.request("GET", "flow_runs?since=yesterday")
    assert status == 400 and answer["field"] == "since"
    child = first  # the flow's logs are the deployment run's own: one record
    assert [r["id"] for r in server.request("GET", "flow_runs?flow_name=noisy")[1]] == [first["id"]]
    everything = [line["message"] for line in server.request("GET", f"flow_runs/{child['id']}/logs")[1]]
    assert "just saying" in everything and "careful now" in everything
    warnings = server.request("GET", f"flow_runs/{child['id']}/logs?level=WARNING")[1]
    assert [line["message"] for line in warnings] == ["careful now"]
    assert server.request("GET", f"flow_runs/{child['id']}/logs?level=30")[1] == warnings
    assert server.request("GET", f"flow_runs/{child['id']}/logs?level=loud")[0] == 400


def test_targets_describe_what_a_file_can_be_deployed_as(server, tmp_path) -> None:
    notebook = write_notebook(tmp_path / "target.ipynb", "n_days = 7\nregion = 'all'", "print(n_days)")
    flows = write_flow_file(tmp_path / "two_flows.py", """
        from nbflow import flow

        def helper(x):
            return x

        @flow(name="load-all")
        def load(rows: int, label: str = "x") -> None:
            pass

        @flow
        def report() -> None:
            pass

        nightly = report.with_options(name="nightly-report")
    """)
    status, target = server.request("GET", f"targets?path={notebook}")
    assert status == 200 and target["kind"] == "notebook" and target["flow_name"] == "target"
    n_days = target["parameter_schema"]["properties"]["n_days"]  # Prefect's parameter schema
    assert n_days["type"] == "integer" and n_days["default"] == 7
    assert "n_days" not in target["parameter_schema"].get("required", [])
    status, target = server.request("GET", f"targets?path={flows}")
    assert status == 200 and target["kind"] == "flow"
    assert [(f["function"], f["flow_name"]) for f in target["flows"]] == [
        ("load", "load-all"), ("report", "report"), ("nightly", "nightly-report")]
    assert target["flows"][0]["entrypoint"] == f"{flows}:load"
    assert "rows" in target["flows"][0]["parameter_schema"]["required"]
    for path, status_code, words in [("/etc/passwd", 422, "allowed"), (tmp_path / "none.ipynb", 404, "No file"),
                                     (tmp_path / "data.csv", 422, "neither a notebook")]:
        status, error = server.request("GET", f"targets?path={path}")
        assert status == status_code and error["field"] == "path" and words in error["message"], error
    assert server.request("GET", "targets")[0] == 400


def test_schedule_preview_says_when_a_schedule_fires(server) -> None:
    status, preview = server.request("GET", "schedule_preview?cron=0+6+*+*+1-5&timezone=Europe/Paris")
    assert status == 200 and preview["schedule"] == {"cron": "0 6 * * 1-5", "timezone": "Europe/Paris"}
    assert "Europe/Paris" in preview["description"] and len(preview["next_times"]) == 3
    assert all(t.endswith("Z") and t[11:16] in ("04:00", "05:00") for t in preview["next_times"])  # 06:00 Paris
    status, preview = server.request("GET", "schedule_preview?interval=3600&limit=2")
    assert status == 200 and preview["description"] == "every hour" and len(preview["next_times"]) == 2
    for query, field in [("cron=61+*+*+*+*", "schedule.cron"), ("cron=0+6+*+*+*&timezone=Mars/Olympus", "schedule.timezone"),
                         ("interval=soon", "schedule.interval"), ("", "schedule")]:
        status, error = server.request("GET", f"schedule_preview?{query}")
        assert status in (400, 422) and error["field"] == field, (query, error)
