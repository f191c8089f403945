"""Deployments against a live server: the routes with good and bad input, and real runs of
notebooks and flows by the in-server worker (papermill, real kernels), webhooks and triggers."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from deployment_helpers import FAST, deploy, start_run, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("deploy-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("deploy-files")
    return {
        "report": write_notebook(d / "report.ipynb", "n = 3\nlabel = 'x'", """
            from nbflow import flow, task

            @task
            def double(x: int) -> int:
                return x * 2

            @flow
            def inside(k: int) -> int:
                return double(k)

            result = inside(n)
            print(label, result)
        """),
        "raises": write_notebook(d / "raises.ipynb", "n = 1", "x = 1", "raise ValueError(f'bad input {n}')"),
        "hangs": write_notebook(d / "hangs.ipynb", "n = 1", """
            import os, pathlib, time
            pathlib.Path(os.environ['NBFLOW_FLOW_RUN_ID'] + '.pid').write_text(str(os.getpid()))
            time.sleep(600)
        """),
        "dies": write_notebook(d / "dies.ipynb", "n = 1", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        "etl": write_flow_file(d / "etl.py", """
            from nbflow import flow, task

            @task
            def load(n: int) -> list:
                return list(range(n))

            @flow(name="etl-flow")
            def etl(n: int = 2, label: str = "x") -> int:
                return len(load(n))

            @flow
            def broken(n: int = 1) -> None:
                from nbflow.runtime import deployment
                raise RuntimeError(f"broken flow {n} of deployment {deployment.name} {deployment.parameters}")

            @task
            def nap(seconds: float) -> None:
                import time
                time.sleep(seconds)

            @flow
            def sleepy(seconds: float = 600) -> None:
                nap(seconds)
        """),
    }


# -- the routes ------------------------------------------------------------------------------

def test_deployment_routes_create_read_update_delete(server, files) -> None:
    body = {"name": "crud", "notebook": str(files["report"]), "parameters": {"n": "5"},
            "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Paris"}, "work_pool": "nobody"}
    created = deploy(server, body)
    assert created["parameters"] == {"n": 5}  # converted to the parameters cell's type
    assert created["schedule_description"].endswith("(Europe/Paris)") and created["next_run_time"]
    assert server.request("GET", f"deployments/{created['id']}")[1]["name"] == "crud"
    assert server.request("GET", "deployments/crud")[1]["id"] == created["id"]
    assert any(d["id"] == created["id"] for d in server.request("GET", "deployments")[1])
    status, patched = server.request("PATCH", "deployments/crud", {"paused": True, "timeout_seconds": 30})
    assert status == 200 and patched["paused"] is True and patched["timeout_seconds"] == 30
    assert patched["next_run_time"] is None
    status, again = server.request("POST", "deployments", body)
    assert status == 409 and "exists already" in again["message"]
    status, deleted = server.request("DELETE", "deployments/crud")
    assert status == 200 and deleted["deleted"] == created["id"]
    assert server.request("GET", f"deployments/{created['id']}")[0] == 404


@pytest.mark.parametrize("body, status, field, words", [
    ({"notebook": "report"}, 422, "name", "name is required"),
    ({"name": "x"}, 422, "notebook", "exactly one of notebook"),
    ({"name": "x", "notebook": "missing.ipynb"}, 422, "notebook", "No notebook at"),
    ({"name": "x", "notebook": "/nowhere/missing.ipynb"}, 422, "notebook", "outside the directories"),
    ({"name": "x", "notebook": "report", "schedule": {"cron": "0 0 31 2 *"}}, 422, "schedule.cron", "never fire"),
    ({"name": "x", "notebook": "report", "schedule": {"cron": "* * * *"}}, 422, "schedule.cron", "field"),
    ({"name": "x", "notebook": "report", "parameters": {"nope": 1, "n": 2}}, 422, "parameters", "nope"),
    ({"name": "x", "notebook": "report", "parameters": {"n": "three"}}, 422, "parameters", "expects a int"),
    ({"name": "x", "notebook": "report", "colour": "red"}, 422, "colour", "Unknown field"),
    ({"name": "x", "entrypoint": "etl.py"}, 422, "entrypoint", ""),
    ({"name": "x", "entrypoint": "etl:missing"}, 422, "entrypoint", "missing"),
    ({"name": "x", "entrypoint": "etl:etl", "parameters": {"m": 1}}, 422, "parameters", "m"),
    ({"name": "x", "notebook": "report", "timeout_seconds": -1}, 422, "timeout_seconds", "above 0"),
    ({"name": "x", "notebook": "report", "triggers": [{"deployment": "ghost", "state": "Completed"}]}, 422,
     "triggers", "ghost"),
    ([1, 2], 400, None, "JSON object"),
])
def test_bad_deployment_bodies_get_a_4xx_naming_the_field(server, files, body, status, field, words) -> None:
    if isinstance(body, dict):
        if body.get("notebook") == "report":
            body["notebook"] = str(files["report"])
        if body.get("notebook") == "missing.ipynb":
            body["notebook"] = str(files["report"].parent / "missing.ipynb")
        if isinstance(body.get("entrypoint"), str) and body["entrypoint"].startswith("etl"):
            body["entrypoint"] = str(files["etl"]) + body["entrypoint"][3:].replace(".py", "")
    answer_status, answer = server.request("POST", "deployments", body)
    assert answer_status == status, answer
    assert words in answer["message"]
    if field:
        assert answer.get("field") == field, answer
    if words == "nope":
        assert answer["parameter"] == "nope"  # a run form shows the message next to that input
    assert all(d["name"] != "x" for d in server.request("GET", "deployments")[1])  # nothing half-written


def test_malformed_json_unknown_ids_and_a_parameter_name_carrying_code(server, files, tmp_path) -> None:
    status, answer = server.request("POST", "deployments", b"{not json")
    assert status == 400 and "not valid JSON" in answer["message"]
    for method, path in [("GET", "deployments/ghost"), ("PATCH", "deployments/ghost"),
                         ("DELETE", "deployments/ghost"), ("POST", "deployments/ghost/runs"),
                         ("POST", "flow_runs/0123456789abcdef0123456789abcdef/cancel")]:
        status, answer = server.request(method, path, {} if method in ("PATCH", "POST") else None)
        assert status == 404, (method, path, answer)
    pwned = tmp_path / "PWNED"
    evil = f"x=1;import os;os.system('touch {pwned}');y"
    deploy(server, {"name": "safe", "notebook": str(files["report"]), "work_pool": "nobody"})
    for method, path, body in [("POST", "deployments", {"name": "evil", "notebook": str(files["report"]),
                                                       "parameters": {evil: 1}}),
                               ("POST", "deployments/safe/runs", {"parameters": {evil: 1}}),
                               ("PATCH", "deployments/safe", {"parameters": {evil: 1}})]:
        status, answer = server.request(method, path, body)
        assert status == 422 and answer["field"] == "parameters" and "not a Python identifier" in answer["message"]
    status, answer = server.request("POST", "deployments/safe/runs", {"parameters": {"n": 1}, "extra": 2})
    assert status == 400 and answer["field"] == "extra"
    assert not pwned.exists()


# -- runs --------------------------------------------------------------------------------------

def test_a_deployed_notebook_runs_with_papermill_and_its_flows_are_child_runs(server, files) -> None:
    source_before = files["report"].read_bytes()
    deploy(server, {"name": "report", "notebook": str(files["report"]), "parameters": {"label": "nightly"}})
    run = start_run(server, "report", {"n": 21})
    assert run["state"] in ("Scheduled", "Pending") and run["parameters"] == {"n": 21, "label": "nightly"}
    done = wait_for(server, run["id"])
    assert done["state"] == "Completed", done
    output = Path(done["output_notebook"])
    assert output.is_file() and output.parent.parent == server.home / "runs"
    assert "nightly 42" in output.read_text()
    assert files["report"].read_bytes() == source_before  # the source is never modified
    children = [r for r in server.request("GET", "flow_runs?limit=1000")[1] if r["parent_flow_run_id"] == run["id"]]
    assert [c["flow_name"] for c in children] == ["inside"] and children[0]["state"] == "Completed"
    tasks = server.request("GET", f"flow_runs/{children[0]['id']}/task_runs")[1]
    assert [t["task_name"] for t in tasks] == ["double"]


def test_failing_hanging_dying_and_cancelled_runs_end_in_their_states(server, files) -> None:
    deploy(server, {"name": "raises", "notebook": str(files["raises"])})
    deploy(server, {"name": "hangs", "notebook": str(files["hangs"]), "timeout_seconds": 12})
    deploy(server, {"name": "dies", "notebook": str(files["dies"])})
    deploy(server, {"name": "cancel-me", "notebook": str(files["hangs"])})
    runs = {name: start_run(server, name, {"n": 7})["id"] for name in ("raises", "hangs", "dies", "cancel-me")}

    running = wait_for(server, runs["cancel-me"], {"Running"})
    pid_file = Path(files["hangs"].parent / f"{runs['cancel-me']}.pid")
    wait_until(pid_file.exists)
    kernel = int(pid_file.read_text())
    assert kernel in [p.pid for p in processes_of_run(runs["cancel-me"])]  # the check below can see it
    status, answer = server.request("POST", f"flow_runs/{runs['cancel-me']}/cancel")
    assert status == 202 and answer["cancel_requested"] is True and running["state"] == "Running"

    failed = wait_for(server, runs["raises"])
    assert failed["state"] == "Failed" and "ValueError: bad input 7" in failed["state_message"]
    assert "Cell " in failed["state_message"] and Path(failed["output_notebook"]).is_file()
    cancelled = wait_for(server, runs["cancel-me"])
    assert cancelled["state"] == "Cancelled"
    timed_out = wait_for(server, runs["hangs"])
    assert timed_out["state"] == "TimedOut" and "12" in timed_out["state_message"]
    crashed = wait_for(server, runs["dies"])
    assert crashed["state"] == "Crashed" and "kernel died" in crashed["state_message"].lower()
    for name in ("hangs", "cancel-me"):  # their processes, kernel included, were stopped with them
        wait_until(lambda: not processes_of_run(runs[name]))
    status, answer = server.request("POST", f"flow_runs/{runs['raises']}/cancel")
    assert status == 409 and "already ended Failed" in answer["message"]


def test_flow_deployments_run_in_a_subprocess_and_failures_are_recorded(server, files) -> None:
    deploy(server, {"name": "etl", "entrypoint": f"{files['etl']}:etl", "parameters": {"n": "4"}})
    deploy(server, {"name": "broken", "entrypoint": f"{files['etl']}:broken"})
    ok = wait_for(server, start_run(server, "etl")["id"])
    assert ok["state"] == "Completed" and ok["flow_name"] == "etl-flow"
    assert ok["parameters"] == {"n": 4, "label": "x"}  # recorded by the flow itself: its defaults too
    # One record: the deployment's run is the flow's run, with the flow's task runs under it.
    assert [t["task_name"] for t in server.request("GET", f"flow_runs/{ok['id']}/task_runs")[1]] == ["load"]
    assert not [r for r in server.request("GET", "flow_runs?flow_name=etl-flow")[1]
                if r["parent_flow_run_id"] == ok["id"]]
    bad = wait_for(server, start_run(server, "broken", {"n": 3})["id"])
    assert bad["state"] == "Failed" and "broken flow 3" in bad["state_message"]
    assert "of deployment broken {'n': 3}" in bad["state_message"]  # nbflow.runtime.deployment
    deploy(server, {"name": "sleepy", "entrypoint": f"{files['etl']}:sleepy", "timeout_seconds": 4})
    slow = wait_for(server, start_run(server, "sleepy")["id"])
    assert slow["state"] == "TimedOut", slow
    naps = server.request("GET", f"flow_runs/{slow['id']}/task_runs")[1]
    assert [(t["task_name"], t["state"]) for t in naps] == [("nap", "Crashed")]  # killed with its flow


def test_webhooks_map_body_fields_and_check_their_own_secret(server, files) -> None:
    created = deploy(server, {"name": "hooked", "entrypoint": f"{files['etl']}:etl",
                              "webhook": {"slug": "new-data", "parameters": {"n": "body.rows.count"}}})
    secret = created["webhook"]["secret"]
    assert "secret" not in server.request("GET", "deployments/hooked")[1]["webhook"]
    payload = {"rows": {"count": 5}}
    for headers in ({}, {"X-Nbflow-Webhook-Secret": "wrong" * 5}):
        status, _ = server.request("POST", "webhooks/new-data", payload, token=None, headers=headers)
        assert status == 403
    status, _ = server.request("POST", "webhooks/no-such-hook", payload, token=None,
                               headers={"X-Nbflow-Webhook-Secret": secret})
    assert status == 403  # an unknown slug looks like a wrong secret
    good = {"X-Nbflow-Webhook-Secret": secret}
    status, answer = server.request("POST", "webhooks/new-data", {"rows": {}}, token=None, headers=good)
    assert status == 422 and "body.rows.count" in answer["message"]
    status, run = server.request("POST", "webhooks/new-data", payload, token=None, headers=good)
    assert status == 201 and run["parameters"]["n"] == 5
    assert wait_for(server, run["id"])["state"] == "Completed"


def test_a_deployment_runs_when_another_one_completes(server, files) -> None:
    deploy(server, {"name": "upstream", "entrypoint": f"{files['etl']}:etl"})
    deploy(server, {"name": "downstream", "entrypoint": f"{files['etl']}:etl", "parameters": {"n": 1},
                    "triggers": [{"deployment": "upstream", "state": "Completed"}]})
    first = wait_for(server, start_run(server, "upstream")["id"])
    assert first["state"] == "Completed"
    downstream_id = server.request("GET", "deployments/downstream")[1]["id"]
    wait_until(lambda: any(r["deployment_id"] == downstream_id for r in server.request("GET", "flow_runs")[1]))
    chained = next(r for r in server.request("GET", "flow_runs")[1] if r["deployment_id"] == downstream_id)
    detail = wait_for(server, chained["id"])
    assert detail["triggered_by"] == first["id"] and detail["state"] == "Completed"


def test_work_pools_are_created_listed_and_checked(server) -> None:
    status, pool = server.request("POST", "work_pools", {"name": "gpu", "concurrency_limit": 2})
    assert status == 201 and pool == {"name": "gpu", "concurrency_limit": 2, "workers": 0}
    assert server.request("POST", "work_pools", {"name": "gpu"})[0] == 409
    assert server.request("POST", "work_pools", {"name": "bad name!"})[0] == 422
    assert server.request("POST", "work_pools", {"name": "x", "concurrency_limit": 0})[0] == 422
    names = [p["name"] for p in server.request("GET", "work_pools")[1]]
    assert {"default", "gpu"} <= set(names)
    status, answer = server.request("POST", "work_pools/gpu/claim", {"worker_id": "w-1", "limit": "many"})
    assert status == 422 and answer["field"] == "limit"
    status, answer = server.request("POST", "work_pools/gpu/claim", {"limit": 1})
    assert status == 400 and answer["field"] == "worker_id"
    status, answer = server.request("POST", "workers/w-1/heartbeat", {"work_pool": "gpu", "run_ids": "all"})
    assert status == 422 and answer["field"] == "run_ids"
    status, answer = server.request("POST", "workers/w-1/heartbeat", {"work_pool": "gpu", "run_ids": []})
    assert status == 200 and answer == {"cancel": []}
    gpu = next(p for p in server.request("GET", "work_pools")[1] if p["name"] == "gpu")
    assert gpu["workers"] == 1  # w-1 heartbeated just now


def processes_of_run(run_id: str) -> list:
    """Live processes started for a run: the worker gives them NBFLOW_FLOW_RUN_ID=<run id>."""
    import psutil

    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get("NBFLOW_FLOW_RUN_ID") == run_id:
                found.append(process)
        except psutil.Error:
            continue
    return found


def wait_until(predicate, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_state_reports_from_a_worker_are_checked(server, files) -> None:
    deploy(server, {"name": "manual", "notebook": str(files["report"]), "work_pool": "manual"})
    run = start_run(server, "manual")
    claimed = server.request("POST", "work_pools/manual/claim", {"worker_id": "w-9", "limit": 5})[1]
    assert [c["id"] for c in claimed] == [run["id"]] and claimed[0]["kind"] == "notebook"
    assert server.request("POST", "work_pools/manual/claim", {"worker_id": "w-8", "limit": 5})[1] == []
    status, answer = server.request("POST", f"flow_runs/{run['id']}/state", {"state": "Running", "worker_id": "w-8"})
    assert status == 409 and "not claimed by worker w-8" in answer["message"]
    status, answer = server.request("POST", f"flow_runs/{run['id']}/state", {"state": "Bogus", "worker_id": "w-9"})
    assert status == 422 and answer["field"] == "state"
    status, answer = server.request("POST", f"flow_runs/{run['id']}/state", {"state": "Completed", "worker_id": "w-9"})
    assert status == 409  # Pending cannot jump to Completed
    for state in ("Running", "Completed"):
        assert server.request("POST", f"flow_runs/{run['id']}/state", {"state": state, "worker_id": "w-9"})[0] == 200
    history = server.request("POST", "sql", {"sql": "select state from state_history where run_id = ? order by seq",
                                             "params": [run["id"]]})
    assert history[0] == 200
    assert json.dumps(server.request("GET", f"flow_runs/{run['id']}")[1]["state"]) == '"Completed"'
