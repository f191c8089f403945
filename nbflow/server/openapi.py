"""The OpenAPI document of the REST API, built from the route table so the two cannot drift."""

from __future__ import annotations

import re
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated

from nbflow._version import __version__
from nbflow.server.bodies import DEBUG_FILE_PATTERN, SLUG_PATTERN
from nbflow.server.handlers import NbflowHandler, api
from nbflow.server.routes import ROUTES, Route
from nbflow.server.runs_api import MAX_LIMIT, MAX_OFFSET

#: path parameter -> (description, schema), by the collection it belongs to.
_PATH_PARAMETERS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("flow_runs", "id"): ("a flow run id or a unique prefix of it (at least 4 hex digits)",
                          {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$"}),
    ("flow_runs", "task_run_id"): ("the failed task run's whole id (32 lowercase hex digits)",
                                   {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$"}),
    ("flow_runs", "name"): ("a file of the task run's debug data, as the manifest names it",
                            {"type": "string", "pattern": DEBUG_FILE_PATTERN}),
    ("deployments", "id"): ("a deployment's id or name", {"type": "string", "pattern": "^[^/]+$"}),
    ("webhooks", "slug"): ("the webhook's slug", {"type": "string", "pattern": SLUG_PATTERN}),
    ("work_pools", "name"): ("a work pool's name", {"type": "string", "pattern": SLUG_PATTERN}),
    ("workers", "id"): ("the worker's id", {"type": "string", "pattern": SLUG_PATTERN}),
}
#: query parameter -> (description, schema).
_QUERY: dict[str, tuple[str, dict[str, Any]]] = {
    "limit": ("how many items, newest first", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
    "offset": ("how many items to skip", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
    "flow_name": ("only runs of this flow", {"type": "string"}),
    "state": ("only runs in this state (Completed, Failed, ...; any case)", {"type": "string"}),
    "deployment_id": ("only runs of this deployment", {"type": "string"}),
    "since": ("only runs started at or after this ISO 8601 time (UTC without a zone)", {"type": "string"}),
    "until": ("only runs started before this ISO 8601 time", {"type": "string"}),
    "task_name": ("the failed task run of this name (default: the run's first failed task run)", {"type": "string"}),
    "format": ("html (the default) or ipynb (the notebook's JSON)", {"type": "string", "enum": ["html", "ipynb"]}),
    "path": ("a .ipynb or .py file, relative to the server's root dir", {"type": "string"}),
    "cron": ("a cron expression such as '30 2 * * 1-5' (or give interval)", {"type": "string"}),
    "timezone": ("the IANA time zone of the cron expression (default UTC)", {"type": "string"}),
    "interval": ("seconds between runs (or give cron)", {"type": "integer", "minimum": 1}),
    "position": ("the byte position in the file where the chunk starts (default 0)",
                 {"type": "integer", "minimum": 0}),
    "level": ("the lowest log level: a number such as 30, or DEBUG, INFO, WARNING, ERROR, CRITICAL",
              {"type": "string"}),
}
_ERRORS = {
    "400": "The request is malformed: not JSON, not the JSON type the route takes, an unknown or missing field",
    "401": "No valid token: send `Authorization: token <token>`",
    "403": "Forbidden: a Host the server does not serve, or a browser session without its XSRF token",
    "404": "No such route, flow run, deployment or work pool",
    "405": "The path does not take this method; `Allow` lists those it takes",
    "409": "The request conflicts with what is stored (a taken name, a run that already ended)",
    "413": "The body is larger than the route's limit",
    "422": "A field has a bad value; `field` names it",
    "503": "The run store is busy or damaged; the message says which and what to do",
    "507": "The server's disk is full: it could not keep what was sent",
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


def _responses(route: Route, method: str) -> dict[str, Any]:
    responses: dict[str, Any] = {str(code): {"description": "Created" if code == 201 else "Accepted"
                                             if code == 202 else "OK"}
                                 for code in route.status.get(method, (200,))}
    for code, description in _ERRORS.items():
        if code in ("401", "403") and route.public:
            continue
        responses[code] = _error(description)
    if not route.public:
        responses["401"] = _error(_ERRORS["401"], {"WWW-Authenticate": {"schema": {"type": "string"},
                                                                       "required": True}})
    responses["405"] = _error(_ERRORS["405"], {"Allow": {"schema": {"type": "string"}, "required": True,
                                                         "description": "The methods the path takes"}})
    if route.openapi_path == "/webhooks/{slug}":
        responses["403"] = _error("Unknown webhook or wrong secret (the same answer for both)")
        responses["429"] = _error("Too many wrong secrets for this webhook from this address (or, from addresses "
                                  "that never sent the right one, for this webhook): wait Retry-After seconds",
                                  {"Retry-After": {"schema": {"type": "integer"}, "required": True,
                                                   "description": "Seconds until the limit lifts"}})
    return responses


def document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3 document; paths are relative to `<base_url>nbflow/api`."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.openapi_path, {})
        for method, summary in route.methods.items():
            operation: dict[str, Any] = {"summary": summary, "responses": _responses(route, method)}
            parameters = [{"name": name, "in": "query", "required": False, "description": _QUERY[name][0],
                           "schema": _QUERY[name][1]} for name in route.query]
            collection = route.openapi_path.split("/")[1]
            for name in reversed(re.findall(r"\{(\w+)\}", route.openapi_path)):
                description, schema = _PATH_PARAMETERS[(collection, name)]
                parameters.insert(0, {"name": name, "in": "path", "required": True, "schema": schema,
                                      "description": description})
            if parameters:
                operation["parameters"] = parameters
            if method in route.body:
                schema = route.body[method]
                kind = schema.get("x-content-type", "application/json")
                operation["requestBody"] = {
                    "description": f"{schema.get('description', 'JSON')} (at most {route.max_body} bytes)",
                    "required": not schema.get("x-body-optional", False),
                    "content": {kind: {"schema": {k: v for k, v in schema.items() if k != "x-content-type"}}}}
            operation["security"] = [] if route.public else [{"token": []}]
            item[method] = operation
    paths["/openapi.json"] = {"get": {"summary": "This document", "security": [],
                                      "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "nbflow run API", "version": __version__},
        "servers": [{"url": f"{base_url.rstrip('/')}/nbflow/api"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization",
                                          "description": "`token <the Jupyter or NBFLOW_API_TOKEN token>`"}},
            "schemas": {"Error": {"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string", "description": "What is wrong and how to fix it"},
                "field": {"type": "string", "description": "The body field or parameter at fault"},
                "parameter": {"type": "string", "description": "The deployment parameter at fault"}}}},
        },
    }


class OpenApiHandler(NbflowHandler):
    @allow_unauthenticated
    @api(threads=None)
    def get(self) -> dict:
        return document(self.base_url)
