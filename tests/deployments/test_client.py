"""The deployments client: the POST body built from what to deploy (pure), a flow's entrypoint, the
HTTP client against a small stub server (quoting, errors), and the local client on the embedded store."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from nbflow import flow
from nbflow.deployments.client import (
    ApiClient, ApiRequestError, DeploymentSpecError, LocalClient, ServerUnavailableError, connect, deploy,
    deploy_body, flow_entrypoint, serve,
)
from nbflow.errors import NbflowError


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server from the environment: tests choose their client."""
    for name in ("NBFLOW_API_URL", "NBFLOW_API_TOKEN", "NBFLOW_SERVER"):
        monkeypatch.delenv(name, raising=False)


# -- deploy_body (pure) ---------------------------------------------------------------------

@pytest.mark.parametrize(("options", "schedule"), [
    ({}, None),
    ({"cron": "0 2 * * *"}, {"cron": "0 2 * * *", "timezone": "UTC"}),
    ({"cron": "0 2 * * *", "timezone": "Europe/Paris"}, {"cron": "0 2 * * *", "timezone": "Europe/Paris"}),
    ({"interval": 3600}, {"interval": 3600}),
])
def test_schedule_of_the_body(options: dict, schedule: dict | None) -> None:
    assert deploy_body("report.ipynb", "nightly", **options)["schedule"] == schedule


def test_notebook_body_has_an_absolute_path_and_the_whole_definition(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert deploy_body("nb/report.ipynb", "nightly", parameters={"n": "3"}, timeout_seconds=60) == {
        "name": "nightly", "notebook": str(tmp_path / "nb" / "report.ipynb"), "parameters": {"n": "3"},
        "schedule": None, "timeout_seconds": 60}


def test_entrypoint_body_keeps_the_flow_name_after_an_absolute_path(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    body = deploy_body("flows/etl.py:etl_flow", "etl", work_pool="gpu", paused=True)
    assert body["entrypoint"] == f"{tmp_path / 'flows' / 'etl.py'}:etl_flow"
    assert "notebook" not in body
    assert (body["work_pool"], body["paused"]) == ("gpu", True)


def test_work_pool_and_paused_are_sent_only_when_given() -> None:
    body = deploy_body("report.ipynb", "nightly")
    assert "work_pool" not in body and "paused" not in body
    assert deploy_body("report.ipynb", "nightly", paused=False)["paused"] is False


@pytest.mark.parametrize(("target", "options", "field", "words"), [
    ("report.ipynb", {"cron": "0 2 * * *", "interval": 60}, "schedule", ["not both", "'0 2 * * *'"]),
    ("report.ipynb", {"timezone": "Europe/Paris"}, "schedule.timezone", ["'Europe/Paris'", "cron"]),
    ("etl.py", {}, "entrypoint", ["FILE.py:FLOW", "etl.py:my_flow"]),
    ("etl.py:", {}, "entrypoint", ["FILE.py:FLOW"]),
    ("report.txt", {}, "target", ["'report.txt'", "PATH.ipynb", "PATH.py:FLOW"]),
])
def test_bad_targets_and_schedules_say_what_to_give(target: str, options: dict, field: str,
                                                    words: list[str]) -> None:
    with pytest.raises(DeploymentSpecError) as caught:
        deploy_body(target, "x", **options)
    assert caught.value.field == field
    for word in words:
        assert word in str(caught.value)


# -- a Flow's entrypoint ----------------------------------------------------------------------

def _import_file(path: Path, source: str) -> Any:
    path.write_text(textwrap.dedent(source))
    name = f"nbflow_test_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flows_module(tmp_path: Path) -> Iterator[Any]:
    module = _import_file(tmp_path / "etl_flows.py", """
        from nbflow import flow

        @flow(name="etl")
        def etl_flow(n: int = 1) -> int:
            return n

        def _plain(x: int = 0) -> int:
            return x

        renamed = flow(_plain, name="renamed")
    """)
    yield module
    sys.modules.pop(module.__name__, None)


def test_flow_entrypoint_is_its_file_and_module_attribute(flows_module: Any) -> None:
    path = Path(flows_module.__file__).resolve()
    assert flow_entrypoint(flows_module.etl_flow) == f"{path}:etl_flow"
    assert flow_entrypoint(flows_module.renamed) == f"{path}:renamed"


def test_flows_of_an_interactive_session_are_refused() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__", "flow": flow}
    exec(compile("@flow\ndef adhoc():\n    return 1\n", "<ipython-input-3-abc>", "exec"), namespace)
    with pytest.raises(DeploymentSpecError, match="interactive session or notebook.*Move the flow into a .py"):
        flow_entrypoint(namespace["adhoc"])


def test_a_flow_not_bound_at_module_level_is_refused(flows_module: Any) -> None:
    hidden = flows_module.etl_flow.with_options(name="hidden")
    with pytest.raises(DeploymentSpecError, match="not a module-level name"):
        flow_entrypoint(hidden)


# -- ApiClient against a stub server ------------------------------------------------------------

class _Stub(BaseHTTPRequestHandler):
    """Answers each request with the next queued (status, body) and records what it was sent."""

    answers: list[tuple[int, Any]] = []
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append({"method": self.command, "path": self.path, "body": body,
                          "auth": self.headers.get("Authorization")})
        status, answer = self.answers.pop(0)
        raw = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[ApiClient, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ApiClient(f"http://127.0.0.1:{server.server_address[1]}", "tok"), handler
    finally:
        server.shutdown()
        server.server_close()


def test_names_are_quoted_and_the_token_is_sent(stub: tuple[ApiClient, type[_Stub]]) -> None:
    client, handler = stub
    handler.answers += [(200, {"id": "d1"}), (201, {"id": "r1", "state": "Scheduled"}), (200, [])]
    assert client.get_deployment("my report/v2") == {"id": "d1"}
    assert client.create_run("my report/v2", {"n": "3"})["id"] == "r1"
    assert client.list_deployments(limit=5, offset=10) == []
    assert [(s["method"], s["path"]) for s in handler.seen] == [
        ("GET", "/nbflow/api/deployments/my%20report%2Fv2"),
        ("POST", "/nbflow/api/deployments/my%20report%2Fv2/runs"),
        ("GET", "/nbflow/api/deployments?limit=5&offset=10")]
    assert handler.seen[1]["body"] == {"parameters": {"n": "3"}}
    assert {s["auth"] for s in handler.seen} == {"token tok"}


def test_error_answers_carry_status_field_and_the_servers_message(stub: tuple[ApiClient, type[_Stub]]) -> None:
    client, handler = stub
    handler.answers.append((422, {"message": "schedule.cron '61 * * * *' is invalid", "field": "schedule.cron"}))
    with pytest.raises(ApiRequestError) as caught:
        client.create_deployment({"name": "x"})
    assert (caught.value.status, caught.value.field) == (422, "schedule.cron")
    assert str(caught.value) == "schedule.cron '61 * * * *' is invalid"


@pytest.mark.parametrize(("status", "answer", "words"), [
    (401, {"message": "bad token"}, ["refused the token", "NBFLOW_API_TOKEN", "bad token"]),
    (404, "<html>Not Found</html>", ["404", "is http://127.0.0.1"]),
    (500, {"message": "Internal error (KeyError)"}, ["failed (500)", "KeyError"]),
])
def test_other_error_answers_say_what_to_check(stub: tuple[ApiClient, type[_Stub]], status: int, answer: Any,
                                               words: list[str]) -> None:
    client, handler = stub
    handler.answers.append((status, answer))
    with pytest.raises(ApiRequestError) as caught:
        client.list_work_pools()
    assert caught.value.status == status
    for word in words:
        assert word in str(caught.value)


def test_deploy_updates_the_deployment_when_its_name_exists(stub: tuple[ApiClient, type[_Stub]]) -> None:
    client, handler = stub
    handler.answers += [(409, {"message": "A deployment named nightly exists already.", "field": "name"}),
                        (200, {"id": "d1", "name": "nightly"})]
    assert deploy("report.ipynb", "nightly", interval=60, client=client) == {"id": "d1", "name": "nightly"}
    post, patch = handler.seen
    assert (post["method"], patch["method"], patch["path"]) == ("POST", "PATCH", "/nbflow/api/deployments/nightly")
    assert patch["body"] == post["body"] and patch["body"]["schedule"] == {"interval": 60}

    handler.answers.append((409, {"message": "A deployment named nightly exists already.", "field": "name"}))
    with pytest.raises(ApiRequestError, match="exists already"):
        deploy("report.ipynb", "nightly", update=False, client=client)


def test_a_server_that_is_not_answering_says_how_to_start_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerUnavailableError) as caught:
        ApiClient(f"http://127.0.0.1:{port}/", "tok").list_deployments()
    assert f"http://127.0.0.1:{port}/" in str(caught.value) and "nbflow server start" in str(caught.value)


# -- connect, LocalClient, serve ----------------------------------------------------------------

def test_connect_uses_the_server_it_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(connect(), LocalClient)
    monkeypatch.setenv("NBFLOW_API_URL", "http://127.0.0.1:4299")
    monkeypatch.setenv("NBFLOW_API_TOKEN", "tok")
    client = connect()
    assert isinstance(client, ApiClient) and (client.url, client.token) == ("http://127.0.0.1:4299/", "tok")


def test_local_client_raises_what_the_api_would_answer() -> None:
    with pytest.raises(ApiRequestError) as caught:
        LocalClient().get_deployment("no-such-deployment")
    assert caught.value.status == 404 and "no-such-deployment" in str(caught.value)


def test_deploy_a_flow_object_without_a_server(flows_module: Any) -> None:
    deployment = deploy(flows_module.etl_flow, "etl-hourly", interval=3600, parameters={"n": "4"})
    assert deployment["kind"] == "flow" and deployment["flow_name"] == "etl"
    assert deployment["entrypoint"] == f"{Path(flows_module.__file__).resolve()}:etl_flow"
    assert deployment["parameters"] == {"n": 4}
    client = LocalClient()
    assert client.get_deployment("etl-hourly")["id"] == deployment["id"]
    run = client.create_run("etl-hourly", {"n": "5"})
    assert (run["state"], run["parameters"], run["deployment_id"]) == ("Scheduled", {"n": 5}, deployment["id"])
    assert client.get_flow_run(run["id"])["state"] == "Scheduled"
    assert client.cancel_run(run["id"])["state"] == "Cancelled"
    with pytest.raises(ApiRequestError) as caught:
        client.cancel_run(run["id"])
    assert caught.value.status == 409


def test_serve_needs_a_server(flows_module: Any) -> None:
    with pytest.raises(NbflowError, match="nbflow server start"):
        serve(flows_module.etl_flow, "etl")
