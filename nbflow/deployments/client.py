"""Deployments from the client side: a server's REST API or, without one, the embedded store.

`connect()` picks the client: `ApiClient` when a server is found, else `LocalClient`, which
calls the service layer on the embedded DuckDB file (deployments stored there run once a
server starts). Both answer the same JSON and raise the same `ApiRequestError`, so `deploy`,
`serve`, the CLI and workers do not care which one they hold.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from nbflow.deployments import service
from nbflow.engine.flows import Flow
from nbflow.errors import NbflowError
from nbflow.server.errors import status_and_body
from nbflow.store.backend import embedded_store
from nbflow.store.server_info import find_server

#: where the REST API lives under a server's base URL.
API_PATH = "nbflow/api/"


class ApiRequestError(NbflowError):
    """The server (or, without one, the service layer) refused a request; the message says why."""

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        #: the HTTP status: 400 malformed, 404 unknown, 409 conflict, 422 invalid value, ...
        self.status = status
        #: the body field at fault ("schedule.cron", "parameters", ...), when the server names one
        self.field = field


class ServerUnavailableError(NbflowError, ConnectionError):
    """The server at `url` did not answer (refused, unreachable or timed out)."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class DeploymentSpecError(NbflowError, ValueError):
    """What to deploy was given wrongly (before asking any server); `field` names the option."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class ApiClient:
    """The deployment routes of a running nbflow server, over HTTP with its token."""

    def __init__(self, url: str, token: str = "", *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token
        #: seconds to wait for one answer.
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ApiClient({self.url!r})"

    def create_deployment(self, body: dict) -> dict:
        return self._request("POST", "deployments", body)

    def list_deployments(self, limit: int = 100, offset: int = 0) -> list[dict]:
        return self._request("GET", "deployments", query={"limit": limit, "offset": offset})

    def get_deployment(self, ref: str) -> dict:
        return self._request("GET", f"deployments/{_quote(ref)}")

    def update_deployment(self, ref: str, patch: dict) -> dict:
        return self._request("PATCH", f"deployments/{_quote(ref)}", patch)

    def delete_deployment(self, ref: str) -> dict:
        return self._request("DELETE", f"deployments/{_quote(ref)}")

    def create_run(self, ref: str, parameters: dict | None = None) -> dict:
        return self._request("POST", f"deployments/{_quote(ref)}/runs", {"parameters": parameters or {}})

    def get_flow_run(self, run_id: str) -> dict:
        return self._request("GET", f"flow_runs/{_quote(run_id)}")

    def cancel_run(self, run_id: str) -> dict:
        return self._request("POST", f"flow_runs/{_quote(run_id)}/cancel", {})

    def retry_run(self, run_id: str, from_failed: bool = False) -> dict:
        return self._request("POST", f"flow_runs/{_quote(run_id)}/retry", {"from_failed": from_failed})

    def list_work_pools(self) -> list[dict]:
        return self._request("GET", "work_pools")

    def create_work_pool(self, name: str, concurrency_limit: int | None = None) -> dict:
        body: dict[str, Any] = {"name": name}
        if concurrency_limit is not None:
            body["concurrency_limit"] = concurrency_limit
        return self._request("POST", "work_pools", body)

    def claim_runs(self, pool: str, worker_id: str, limit: int) -> list[dict]:
        return self._request("POST", f"work_pools/{_quote(pool)}/claim", {"worker_id": worker_id, "limit": limit})

    def heartbeat(self, worker_id: str, pool: str, run_ids: list[str]) -> dict:
        return self._request("POST", f"workers/{_quote(worker_id)}/heartbeat",
                             {"work_pool": pool, "run_ids": list(run_ids), "host": socket.gethostname(),
                              "pid": os.getpid()})

    def set_run_state(self, run_id: str, state: str, message: str | None = None,
                      output_notebook: str | None = None, worker_id: str | None = None) -> dict:
        body = {"state": state, "message": message, "output_notebook": output_notebook, "worker_id": worker_id}
        return self._request("POST", f"flow_runs/{_quote(run_id)}/state",
                             {k: v for k, v in body.items() if v is not None})

    def _request(self, method: str, path: str, body: Any = None, query: dict | None = None) -> Any:
        url = self.url + API_PATH + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc, method, url) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, unknown host, timed out
            reason = getattr(exc, "reason", exc)
            raise ServerUnavailableError(
                f"The nbflow server at {self.url} is not answering ({reason}). Start one with "
                "`nbflow server start`, or unset NBFLOW_API_URL if it points at a server that is gone.",
                url=self.url) from None
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ApiRequestError(f"{method} {url} did not answer JSON; is {self.url} an nbflow server?",
                                  status=200) from None

    def _refusal(self, exc: urllib.error.HTTPError, method: str, url: str) -> ApiRequestError:
        """The error for an HTTP error answer: the server's own message when it sent one."""
        try:
            answer = json.loads(exc.read())
        except (ValueError, OSError):
            answer = None
        if not isinstance(answer, dict) or not answer.get("message"):  # not our API: proxy, old server
            return ApiRequestError(f"{method} {url} answered {exc.code} {exc.reason}; is {self.url} an nbflow "
                                   "server with deployments (nbflow 0.4 or later)?", status=exc.code)
        message, field = str(answer["message"]), answer.get("field")
        if exc.code in (401, 403):
            message = (f"The nbflow server at {self.url} refused the token ({exc.code}): {message}. "
                       "Set NBFLOW_API_TOKEN to the token the server printed at start.")
        elif exc.code >= 500:
            message = f"The nbflow server at {self.url} failed ({exc.code}): {message}"
        return ApiRequestError(message, status=exc.code, field=field)


class LocalClient:
    """The same calls without a server: the service layer on the embedded DuckDB file."""

    def __init__(self, store: Any = None) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"LocalClient({self.store!r})"

    @property
    def store(self) -> Any:
        return self._store if self._store is not None else embedded_store()

    def create_deployment(self, body: dict) -> dict:
        return _answer(service.create_deployment, self.store, body)

    def list_deployments(self, limit: int = 100, offset: int = 0) -> list[dict]:
        return _answer(service.list_deployments, self.store, limit=limit, offset=offset)

    def get_deployment(self, ref: str) -> dict:
        return _answer(service.get_deployment, self.store, ref)

    def update_deployment(self, ref: str, patch: dict) -> dict:
        return _answer(service.update_deployment, self.store, ref, patch)

    def delete_deployment(self, ref: str) -> dict:
        return _answer(service.delete_deployment, self.store, ref)

    def create_run(self, ref: str, parameters: dict | None = None) -> dict:
        return _answer(service.create_run, self.store, ref, parameters)

    def get_flow_run(self, run_id: str) -> dict:
        return _answer(service.flow_run_json, self.store, run_id)

    def cancel_run(self, run_id: str) -> dict:
        return _answer(service.cancel_run, self.store, run_id)

    def retry_run(self, run_id: str, from_failed: bool = False) -> dict:
        from nbflow.deployments.retries import retry_run

        return _answer(retry_run, self.store, run_id, from_failed)

    def list_work_pools(self) -> list[dict]:
        return _answer(service.list_work_pools, self.store)

    def create_work_pool(self, name: str, concurrency_limit: int | None = None) -> dict:
        return _answer(service.create_work_pool, self.store, name, concurrency_limit)

    def claim_runs(self, pool: str, worker_id: str, limit: int) -> list[dict]:
        return _answer(service.claim_runs, self.store, pool, worker_id, limit)

    def heartbeat(self, worker_id: str, pool: str, run_ids: list[str]) -> dict:
        return _answer(service.heartbeat, self.store, worker_id, pool, list(run_ids),
                       host=socket.gethostname(), pid=os.getpid())

    def set_run_state(self, run_id: str, state: str, message: str | None = None,
                      output_notebook: str | None = None, worker_id: str | None = None) -> dict:
        return _answer(service.set_run_state, self.store, run_id, state, message=message,
                       output_notebook=output_notebook, worker_id=worker_id)



def _answer(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the service layer, raising what the REST API would answer as an ApiRequestError."""
    try:
        return function(*args, **kwargs)
    except NbflowError as exc:
        status = getattr(exc, "status", None)
        if not isinstance(status, int):
            status = status_and_body(exc)[0]
        if status >= 500:  # the store is locked or damaged: its own error says what to do
            raise
        field = getattr(exc, "field", None) or getattr(exc, "parameter", None)
        raise ApiRequestError(str(exc), status=status, field=field) from exc


#: either client: they answer the same JSON and raise the same errors.
Client = ApiClient | LocalClient


def connect() -> Client:
    """An ApiClient for the server this process finds, else a LocalClient on the embedded store."""
    info = find_server()
    if info is None:
        return LocalClient()
    return ApiClient(info.url, info.token)


def _quote(ref: str) -> str:
    """An id or name as one URL path segment ("my report/v2" -> "my%20report%2Fv2")."""
    return urllib.parse.quote(str(ref), safe="")


# -- deploying ---------------------------------------------------------------------------------

def deploy_body(target: str | os.PathLike, name: str, *, cron: str | None = None, interval: int | None = None,
                timezone: str | None = None, parameters: dict | None = None,
                timeout_seconds: float | None = None, work_pool: str | None = None,
                paused: bool | None = None) -> dict:
    """The POST body for `target` (NOTEBOOK.ipynb or FILE.py:FLOW), with paths made absolute here.

    The body declares the whole definition (no schedule means `"schedule": null`), so it can
    also PATCH an existing deployment into the same shape; `work_pool` and `paused` are sent
    only when given, so a re-deploy keeps a pause set with `nbflow deployment pause`.
    """
    body: dict[str, Any] = {"name": name, **_target_fields(os.fspath(target))}
    body["parameters"] = dict(parameters or {})
    body["schedule"] = _schedule(cron, interval, timezone)
    body["timeout_seconds"] = timeout_seconds
    if work_pool is not None:
        body["work_pool"] = work_pool
    if paused is not None:
        body["paused"] = paused
    return body


def _target_fields(target: str) -> dict[str, str]:
    if target.endswith(".ipynb"):
        return {"notebook": str(Path(target).expanduser().resolve())}
    path, colon, flow_name = target.rpartition(":")
    if colon and path.endswith(".py") and flow_name.strip():
        return {"entrypoint": f"{Path(path).expanduser().resolve()}:{flow_name.strip()}"}
    if target.endswith(".py") or (colon and path.endswith(".py")):
        raise DeploymentSpecError(
            f"{target!r} names a Python file but not the flow in it; give FILE.py:FLOW, e.g. "
            f"{path or target}:my_flow, where my_flow is the @flow function's name.", field="entrypoint")
    raise DeploymentSpecError(
        f"Cannot deploy {target!r}: give a notebook (PATH.ipynb) or a flow in a Python file "
        "(PATH.py:FLOW, e.g. flows/etl.py:etl).", field="target")


def _schedule(cron: str | None, interval: int | None, timezone: str | None) -> dict | None:
    if cron is not None and interval is not None:
        raise DeploymentSpecError(
            f"Give a cron schedule or an interval, not both (cron={cron!r}, interval={interval!r}); "
            "to run at several cadences, make one deployment per schedule.", field="schedule")
    if timezone is not None and cron is None:
        raise DeploymentSpecError(
            f"timezone={timezone!r} applies to a cron schedule only; give cron as well, e.g. "
            "cron='0 2 * * *'. An interval counts absolute seconds in any time zone.", field="schedule.timezone")
    if cron is not None:
        return {"cron": cron, "timezone": timezone or "UTC"}
    if interval is not None:
        return {"interval": interval}
    return None


def flow_entrypoint(flow: Flow) -> str:
    """`FILE.py:NAME` of a flow defined at module level in a file, which a server can load again."""
    fn = flow.fn
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:  # a builtin or C function
        source = None
    if module is None or source is None or not Path(source).is_file() or _interactive(module, source):
        raise DeploymentSpecError(
            f"The flow {flow.name!r} is defined in an interactive session or notebook ({source or 'no file'}), "
            "and a server can only run flows it can load from a file. Move the flow into a .py file and "
            "deploy it from there (or run `nbflow deploy FILE.py:FLOW`); to deploy a notebook, deploy the "
            ".ipynb itself.", field="entrypoint")
    names = [key for key, value in vars(module).items() if value is flow]
    if not names:
        raise DeploymentSpecError(
            f"The flow {flow.name!r} is not a module-level name of {source}, so a server cannot find it "
            "there. Define it at the top level of the file (`@flow def ...` or `my_flow = flow(fn)`).",
            field="entrypoint")
    attribute = fn.__name__ if fn.__name__ in names else names[0]
    return f"{Path(source).resolve()}:{attribute}"


def _interactive(module: Any, source: str) -> bool:
    """True for the `__main__` of a notebook kernel or REPL: its code is not the file `source`."""
    if module.__name__ != "__main__":
        return False
    main_file = getattr(module, "__file__", None)
    return main_file is None or Path(main_file).resolve() != Path(source).resolve()


def apply_deployment(client: Client, body: dict, *, update: bool = True) -> tuple[dict, bool]:
    """POST `body`; if its name exists and `update`, PATCH that deployment. Returns (deployment, created)."""
    try:
        return client.create_deployment(body), True
    except ApiRequestError as exc:
        if exc.status != 409 or not update:
            raise
    return client.update_deployment(body["name"], body), False


def deploy(target: str | os.PathLike | Flow, name: str, *, cron: str | None = None,
           interval: int | None = None, timezone: str | None = None, parameters: dict | None = None,
           timeout_seconds: float | None = None, work_pool: str | None = None, paused: bool | None = None,
           update: bool = True, client: Client | None = None) -> dict:
    """Deploy a notebook, a `FILE.py:FLOW` or a Flow as `name`; re-deploying a name updates it, as Prefect's."""
    text = flow_entrypoint(target) if isinstance(target, Flow) else os.fspath(target)
    body = deploy_body(text, name, cron=cron, interval=interval, timezone=timezone, parameters=parameters,
                       timeout_seconds=timeout_seconds, work_pool=work_pool, paused=paused)
    return apply_deployment(client or connect(), body, update=update)[0]


def serve(flow: Flow, name: str, *, cron: str | None = None, interval: int | None = None,
          timezone: str | None = None, parameters: dict | None = None, timeout_seconds: float | None = None,
          limit: int = 4, client: Client | None = None) -> None:
    """Deploy `flow` on its own work pool `serve-NAME` and run its runs in this process until Ctrl-C.

    Call it under `if __name__ == "__main__":`, since the server loads the flow's file again.
    """
    client = client or connect()
    if isinstance(client, LocalClient):
        raise NbflowError(
            f"serve({flow.name!r}) needs a running nbflow server to schedule and hand out runs, and none "
            "was found. Start one with `nbflow server start` (or run inside Jupyter with the nbflow server "
            "extension), then call serve() again.")
    pool = "serve-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:57]  # a pool name allows no spaces
    try:
        client.create_work_pool(pool)
    except ApiRequestError as exc:
        if exc.status != 409:  # 409: the pool exists already
            raise
    deployment = deploy(flow, name, cron=cron, interval=interval, timezone=timezone, parameters=parameters,
                        timeout_seconds=timeout_seconds, work_pool=pool, client=client)
    # Imported here, not at the top: the worker module may build on this one (its errors, connect()).
    from nbflow.deployments.worker import Worker

    worker = Worker(client, pool, limit=limit)
    print(f"Serving flow {flow.name!r} as deployment {deployment['name']!r} on work pool {pool!r}. "
          f"Start a run with `nbflow deployment run {name!r}`; stop with Ctrl-C.", flush=True)
    worker.run_forever()  # until Ctrl-C, which it handles: the runs it still has are stopped, Crashed
