"""Bad requests against a live server: every body route with deep nesting, huge integers, wrong types,
non-object and oversized bodies; unknown paths, non-hex ids, anonymous callers and wrong methods.
Each answer is a JSON 4xx that names the problem, never a 5xx, an HTML page or a login redirect."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from urllib.parse import urlsplit

import pytest

from nbflow.server.openapi import document
from nbflow.server.routes import ROUTES

pytestmark = pytest.mark.timeout(180)

_SAMPLE = {"run_id": "0123456789abcdef0123456789abcdef", "ref": "nightly", "slug": "new-data", "pool": "default",
           "worker_id": "w-1", "task_run_id": "fedcba9876543210fedcba9876543210", "name": "0-rows.pkl"}
#: (method, concrete path, route) of every route that takes a body.
ALL_BODY_ROUTES = [(method, re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", lambda m: _SAMPLE[m[1]], route.pattern),
                    route) for route in ROUTES for method in route.body]
#: those whose body is JSON (a chunk of a debug file is raw bytes).
BODY_ROUTES = [(m, p, r) for m, p, r in ALL_BODY_ROUTES if "x-content-type" not in r.body[m]]


def raw(server, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
        token: bool = True, source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request on its own connection; redirects are not followed."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30,
                                            source_address=(source, 0) if source else None)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = f"token {server.token}"
    try:
        connection.request(method, f"/nbflow/api/{path}", body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def json_answer(server, method: str, path: str, body: bytes | None = None, **kwargs) -> tuple[int, dict]:
    status, headers, data = raw(server, method, path, body, **kwargs)
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, data[:200])
    return status, json.loads(data)


@pytest.mark.parametrize("method, path, route", BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
def test_deeply_nested_bodies_are_a_400_on_every_route(live_server, method, path, route) -> None:
    anonymous = route.public
    for depth in (3000, 200_000):
        status, answer = json_answer(live_server, method.upper(), path, b"[" * depth + b"]" * depth,
                                     token=not anonymous)
        assert status in ((403, 429) if path.startswith("webhooks/") else (400,)), answer
        if status == 400:
            assert "nested" in answer["message"] or "JSON" in answer["message"], answer
    nested: object = 1
    for _ in range(40):  # parses, but deeper than any body may nest
        nested = {"a": nested}
    if path == "events":  # just under the parser's limit, in a row of the right width
        deep = b"[" * 985 + b"1" + b"]" * 985
        body = b'{"logs": [["r", 1, null, null, 20, "INFO", "x", ' + deep + b', 1.0]]}'
        status, answer = json_answer(live_server, "POST", path, body)
        assert status in (400, 422), answer
    status, answer = json_answer(live_server, method.upper(), path, json.dumps({"parameters": nested}).encode(),
                                 token=not anonymous)
    assert 400 <= status < 500, answer


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "work_pools/default/claim", b'{"worker_id": "w", "limit": 9223372036854775808}', "limit"),
    ("POST", "work_pools/default/claim", b'{"worker_id": "w", "limit": 1001}', "limit"),
    ("POST", "work_pools", b'{"name": "big", "concurrency_limit": 1000000000000000000000000000000}',
     "concurrency_limit"),
    ("POST", "work_pools", b'{"name": "big", "concurrency_limit": 2147483648}', "concurrency_limit"),
    ("POST", "deployments", b'{"name": "x", "notebook": "a.ipynb", "timeout_seconds": 1e400}', "timeout_seconds"),
    ("POST", "deployments", b'{"name": "x", "notebook": "a.ipynb", "schedule": {"interval": 1e30}}',
     "schedule.interval"),
    ("POST", "deployments", b'{"name": "x", "notebook": "a.ipynb", "parameters": {"n": 100000000000000000000}}',
     "parameters.n"),
    ("PATCH", "deployments/nightly", b'{"schedule": {"interval": -5}}', "schedule.interval"),
    ("POST", "deployments/nightly/runs", b'{"parameters": {"n": -99999999999999999999}}', "parameters.n"),
    ("POST", "workers/w-1/heartbeat", b'{"run_ids": [18446744073709551616]}', "run_ids[0]"),
    ("POST", "sql", b'{"sql": "select ?", "params": [99999999999999999999999]}', "params[0]"),
])
def test_huge_integers_are_a_422_naming_the_field(live_server, method, path, body, field) -> None:
    status, answer = json_answer(live_server, method, path, body)
    assert status == 422 and answer["field"] == field, answer


@pytest.fixture(scope="module")
def a_run(live_server) -> str:
    """A flow run sent as run events, as a client would."""
    run_id = "a1" * 16
    now = time.time()
    row = [run_id, "odd-queries", "odd-queries-1", None, "Completed", "COMPLETED", None, "{}", None, None, None, "[]",
           1, None, now, now, 0.0, "host", 1, now, now, now, None]
    status, answer = live_server.request("POST", "events", {"flow_runs": [row]})
    assert status == 200, answer
    return run_id


@pytest.mark.parametrize("query", ["limit=99999999999999999999", "offset=9223372036854775808", "offset=-1",
                                   "limit=1e3", "limit=", "level=%C2%B2", "level=99999999999999999999999"])
def test_huge_or_odd_query_numbers_are_a_400(live_server, a_run, query) -> None:
    path = f"flow_runs/{a_run}/logs"
    status, answer = json_answer(live_server, "GET", f"{path}?{query}")
    if query.startswith("level=9"):
        assert status == 200 and answer == [], answer  # no line is that severe
    else:
        assert status == 400 and answer["field"] == query.split("=")[0], answer


@pytest.mark.parametrize("method, path, body, status, field", [
    ("POST", "flow_runs/0123456789abcdef/state", {"state": "Running", "message": {"a": 1}}, 422, "message"),
    ("POST", "flow_runs/0123456789abcdef/state", {"state": ["Running"]}, 422, "state"),
    ("POST", "workers/w-1/heartbeat", {"work_pool": 5}, 422, "work_pool"),
    ("POST", "workers/w-1/heartbeat", {"run_ids": [{"id": "x"}]}, 422, "run_ids[0]"),
    ("POST", "work_pools/default/claim", {"worker_id": ["w"]}, 422, "worker_id"),
    ("POST", "work_pools/default/claim", {"worker_id": "w", "limit": True}, 422, "limit"),
    ("POST", "work_pools", {"name": {"x": 1}}, 422, "name"),
    ("POST", "sql", {"sql": "select 1", "params": False}, 422, "params"),
    ("POST", "sql", {"sql": 5}, 422, "sql"),
    ("POST", "sql", {"sql": "select 1", "limit": 5}, 422, "limit"),
    ("POST", "deployments", {"name": "x", "notebook": "a.ipynb", "paused": "yes"}, 422, "paused"),
    ("POST", "deployments", {"name": "x", "notebook": "a.ipynb", "webhook": {"slug": "a", "secret": 5}}, 422,
     "webhook.secret"),
    ("POST", "deployments", {"name": "x", "notebook": "a.ipynb", "triggers": [{"deployment": 1}]}, 422,
     "triggers[0].deployment"),
    ("POST", "deployments", {"name": "x", "notebook": "a.ipynb", "schedule": {"cron": "* * * * *", "x": 1}}, 422,
     "schedule.x"),
    ("PATCH", "deployments/nightly", {"work_pool": "no pools here!"}, 422, "work_pool"),
    ("POST", "deployments/nightly/runs", {"parameters": [1, 2]}, 422, "parameters"),
    ("POST", "events", {"flow_runs": "all of them"}, 400, "flow_runs"),
    ("POST", "events", {"logs": [[None] * 9]}, 422, None),
    ("POST", "events", {"logs": [["r", {"seq": 1}, None, None, 20, "INFO", "x", "m", 1.0]]}, 422, "logs.seq"),
    ("POST", "events", {"logs": [["r", 2**70, None, None, 20, "INFO", "x", "m", 1.0]]}, 422, None),
    ("POST", "events", {"logs": [[["r"], 1, None, None, 20, "INFO", "x", "m", 1.0]]}, 422, "logs.run_id"),
    ("POST", "events", {"flow_runs": [[{"id": 1}] + [None] * 22]}, 422, "flow_runs.id"),
])
def test_wrong_types_are_a_4xx_naming_the_field(live_server, method, path, body, status, field) -> None:
    got, answer = json_answer(live_server, method, path, json.dumps(body).encode())
    assert got == status, answer
    if field:
        assert answer.get("field") == field, answer


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "deployments", b'{"name": "x", "notebook": "a\\u0000.ipynb"}', "notebook"),
    ("POST", "deployments", b'{"name": "x", "entrypoint": "/etc/passwd\\u0000.py:f"}', "entrypoint"),
    ("POST", "flow_runs/0123456789abcdef/state", b'{"state": "Running", "output_notebook": "\\u0000"}',
     "output_notebook"),
    ("POST", "sql", b'{"sql": "select \'\\ud800\'"}', "sql"),
    ("POST", "sql", b'{"sql": "select ?", "params": ["\\udfff"]}', "params[0]"),
    ("POST", "work_pools/default/claim", b'{"worker_id": "w\\ud800"}', "worker_id"),
    ("POST", "workers/w-1/heartbeat", b'{"run_ids": ["\\ud800"]}', "run_ids[0]"),
    ("POST", "deployments/nightly/runs", b'{"parameters": {"k\\ud800": 1}}', "parameters"),
])
def test_nul_in_paths_and_lone_surrogates_are_a_422(live_server, method, path, body, field) -> None:
    """NUL in a path (the OS refuses it) and a lone UTF-16 surrogate (\\ud800 is valid JSON, but no UTF-8
    text holds it) were 500s; a surrogate pair is an ordinary character."""
    status, answer = json_answer(live_server, method, path, body)
    assert status == 422 and answer["field"] == field, answer
    status, _, _ = raw(live_server, "POST", "sql", b'{"sql": "select \'\\ud83d\\ude00\' as s"}')
    assert status == 200  # an Arrow stream


@pytest.mark.parametrize("method, path, route", BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in BODY_ROUTES])
def test_bodies_of_the_wrong_json_type_are_a_400(live_server, method, path, route) -> None:
    if route.public:  # a webhook takes any JSON (its mapping picks fields); the secret is checked first
        return
    for body in (b"[1, 2]", b'"text"', b"5", b"null", b"true", b"{not json", b'{"a": NaN}', b"\xff\xfe",
                 b'{"a": 1}{"b": 2}'):
        status, answer = json_answer(live_server, method.upper(), path, body)
        assert status == 400, (body, answer)
        assert answer["message"], answer


@pytest.mark.parametrize("method, path, route", ALL_BODY_ROUTES, ids=[f"{m} {p}" for m, p, _ in ALL_BODY_ROUTES])
def test_bodies_over_the_route_limit_are_a_413_before_parsing(live_server, method, path, route) -> None:
    over = route.max_body + 1
    body = b'{"sql": "' + b"x" * (over - 11) + b'"}'  # valid JSON, one byte over the limit
    assert len(body) == over
    status, answer = json_answer(live_server, method.upper(), path, body, token=not route.public)
    assert status == 413, answer
    assert str(route.max_body) in answer["message"] and route.openapi_path in answer["message"]
    # Checked from the Content-Length before the body is read: headers alone get the answer at once.
    url = urlsplit(live_server.url)
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"{method.upper()} /nbflow/api/{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                     f"Authorization: token {live_server.token}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {50 * route.max_body}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.monotonic() - started < 5


def test_a_chunked_body_over_the_limit_is_a_413(live_server) -> None:
    """Without a Content-Length the bytes are counted as they arrive (requests reads the answer even
    when the server closes while it is still sending)."""
    import requests

    answer = requests.post(f"{live_server.url}nbflow/api/work_pools", data=iter([b"x" * 65536] * 40), timeout=30,
                           headers={"Authorization": f"token {live_server.token}"})
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.status_code == 413 and "1 MiB" in answer.json()["message"]
    assert live_server.request("GET", "health")[0] == 200


def test_a_body_at_the_limit_is_read(live_server) -> None:
    start = b'{"name": "at-the-limit", "concurrency_limit": 2'
    body = start + b" " * (1024 * 1024 - len(start) - 1) + b"}"
    assert len(body) == 1024 * 1024
    status, answer = json_answer(live_server, "POST", "work_pools", body)
    assert status == 201, answer


@pytest.mark.parametrize("path, words", [
    ("flow_runs/zzzz", "hex digits"), ("flow_runs/not-a-hex-id/logs", "hex digits"),
    ("flow_runs/0123456789abcdef/nope", "No route"), ("nope", "openapi.json"), ("", "openapi.json"),
    ("work_pools/bad%20name!/claim", "work pool"),
])
def test_unknown_paths_and_non_hex_ids_are_a_json_404(live_server, path, words) -> None:
    status, answer = json_answer(live_server, "GET", path)
    assert status == 404 and words in answer["message"], answer
    status, answer = json_answer(live_server, "POST", "webhooks/bad!slug", b"{}", token=False)
    assert status == 404 and "webhook" in answer["message"], answer


@pytest.mark.parametrize("path", ["flow_runs/0123456789abcdef", "flow_runs/0123456789abcdef/logs",
                                  "flow_runs/0123456789abcdef/output_notebook", "flow_runs/zzzz", "nope",
                                  "deployments", "flow_runs?limit=5"])
def test_anonymous_requests_get_a_json_401_never_a_redirect(live_server, path) -> None:
    for accept in ("application/json", "text/html"):
        status, headers, data = raw(live_server, "GET", path, token=False, headers={"Accept": accept})
        assert status == 401 and "Authorization: token" in json.loads(data)["message"], data
        assert headers["www-authenticate"].startswith("token") and "location" not in headers
    for method in ("POST", "PATCH", "DELETE"):  # Jupyter's XSRF refusal of a POST without a token, too
        status, _, data = raw(live_server, method, "deployments/nightly" if method != "POST" else "deployments",
                              b"{}", token=False)
        assert status == 401 and "Authorization: token" in json.loads(data)["message"], data
    status, answer = json_answer(live_server, "GET", path, token=False,
                                 headers={"Authorization": "token wrong-token"})
    assert status == 401, answer


@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "flow_runs", "GET"), ("DELETE", "flow_runs/0123456789abcdef", "GET"),
    ("POST", "deployments/nightly", "GET, PATCH, DELETE"), ("GET", "events", "POST"), ("HEAD", "sql", "POST"),
    ("GET", "webhooks/new-data", "POST"), ("PATCH", "openapi.json", "GET"), ("POST", "health", "GET"),
])
def test_unsupported_methods_get_a_405_with_allow(live_server, method, path, allow) -> None:
    for token in (True, False):  # the path's methods are public knowledge (openapi.json): 405 before the token
        status, headers, data = raw(live_server, method, path, b"{}" if method != "HEAD" else None, token=token)
        assert status == 405 and headers["allow"] == allow, (status, headers)
        if method != "HEAD":
            assert allow in json.loads(data)["message"]


def test_the_openapi_document_gives_body_schemas_and_error_statuses(live_server) -> None:
    served = live_server.request("GET", "openapi.json", token=None)[1]
    assert served == json.loads(json.dumps(document()))
    for route in ROUTES:
        for method in route.methods:
            operation = served["paths"][route.openapi_path][method]
            statuses = set(operation["responses"])
            assert {"400", "404", "405", "413", "422"} <= statuses, (route.openapi_path, method)
            if not route.public:
                assert {"401", "403"} <= statuses and "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            assert "Allow" in operation["responses"]["405"]["headers"]
            if method in route.body:
                [(kind, content)] = operation["requestBody"]["content"].items()
                schema = content["schema"]
                if kind == "application/octet-stream":  # a chunk of a debug file
                    assert schema["format"] == "binary", route.openapi_path
                else:
                    assert kind == "application/json"
                    assert schema.get("properties") or route.openapi_path == "/webhooks/{slug}", route.openapi_path
                assert str(route.max_body) in operation["requestBody"]["description"]
    claim = served["paths"]["/work_pools/{name}/claim"]["post"]["requestBody"]["content"]["application/json"]
    assert claim["schema"]["properties"]["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}
    assert claim["schema"]["required"] == ["worker_id"]
    hook = served["paths"]["/webhooks/{slug}"]["post"]["responses"]
    assert "Retry-After" in hook["429"]["headers"] and "403" in hook and "401" not in hook
    assert served["paths"]["/flow_runs"]["get"]["parameters"][-1]["schema"]["type"] == "integer"  # offset


def test_every_route_answers_no_5xx_to_garbage(live_server) -> None:
    """A sweep: every documented method of every route, anonymous and not, with odd bodies."""
    garbage = [b"", b"{}", b"[]", b'{"parameters": {"a": [[[[[[1]]]]]]}}', b'{"\\ud800": 1}', b'{"sql": "\\u0000"}',
               json.dumps({"name": "\x00", "worker_id": "\x00", "state": "\x00", "run_ids": ["\x00"]}).encode()]
    for route in ROUTES:
        path = re.sub(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", lambda m: _SAMPLE[m[1]], route.pattern)
        for method in route.methods:
            for body in garbage if method in ("post", "patch", "put") else [None]:
                for token in (True, False):
                    status, headers, data = raw(live_server, method.upper(), path, body, token=token)
                    assert status < 500, (method, path, body, data[:300])
                    assert headers["content-type"].startswith(("application/json", "text/html",
                                                               "application/vnd.apache.arrow"))


def _log_rows(run_id: str, count: int, size: int) -> list[tuple]:
    now = time.time()
    return [(run_id, seq, run_id, None, 20, "INFO", "big", f"{seq:08d}" + "x" * size, now) for seq in range(count)]


def test_a_large_batch_is_split_into_bodies_under_the_events_limit() -> None:
    from nbflow.errors import StoreBatchError
    from nbflow.store.api_store import EVENTS_BODY_LIMIT, event_bodies
    from nbflow.store.records import Batch

    batch = Batch(logs=_log_rows("b" * 32, 300, 100_000), state_history=[("b" * 32, 1, "flow", "Running", "RUNNING",
                                                                          None, time.time())])
    bodies = event_bodies(batch, target=1_000_000)
    assert len(bodies) > 20 and all(len(b) <= 1_000_000 for b in bodies)
    sent = [json.loads(b) for b in bodies]
    assert [row[1] for body in sent for row in body.get("logs", [])] == list(range(300))  # all, in order
    assert sum(len(body.get("state_history", [])) for body in sent) == 1
    assert len(event_bodies(Batch(logs=_log_rows("c" * 32, 3, 10)))) == 1  # a small batch: one request
    with pytest.raises(StoreBatchError, match="over the"):
        event_bodies(Batch(logs=_log_rows("d" * 32, 1, EVENTS_BODY_LIMIT)))


def test_a_batch_over_the_events_limit_reaches_the_server_whole(live_server, a_run) -> None:
    from nbflow.store.api_store import EVENTS_BODY_LIMIT, ApiStore
    from nbflow.store.records import Batch

    rows = _log_rows(a_run, 40, 500_000)  # ~20 MB: more than POST events takes in one body
    assert len(json.dumps(rows)) > EVENTS_BODY_LIMIT
    ApiStore(live_server.url, live_server.token).write(Batch(logs=rows))
    status, logs = live_server.request("GET", f"flow_runs/{a_run}/logs?limit=1000")
    assert status == 200 and sorted(int(line["message"][:8]) for line in logs if line["logger"] == "big") == \
        list(range(40))
