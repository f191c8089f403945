"""The OpenAPI document of the REST API, built from the route table so the two cannot drift."""

from __future__ import annotations

import re
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated

from nbflow._version import __version__
from nbflow.server.handlers import NbflowHandler, api
from nbflow.server.routes import ROUTES

_PATH_PARAMETERS = {("flow_runs", "id"): "a flow run id or unique prefix",
                    ("deployments", "id"): "a deployment's id or name", ("webhooks", "slug"): "the webhook's slug",
                    ("work_pools", "name"): "a work pool's name", ("workers", "id"): "the worker's id"}
_ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3 document; paths are relative to `<base_url>nbflow/api`."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.openapi_path, {})
        for method, summary in route.methods.items():
            operation: dict[str, Any] = {
                "summary": summary,
                "responses": {"200": {"description": "OK"}, "400": _ERROR, "404": _ERROR, "409": _ERROR,
                              "422": _ERROR},
            }
            parameters = [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                          for name in route.query]
            for name in reversed(re.findall(r"\{(\w+)\}", route.openapi_path)):
                parameters.insert(0, {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                                      "description": _PATH_PARAMETERS.get((route.openapi_path.split("/")[1], name),
                                                                          name)})
            if parameters:
                operation["parameters"] = parameters
            if method in route.body:
                operation["requestBody"] = {"description": route.body[method], "required": True,
                                            "content": {"application/json": {"schema": {"type": "object"}}}}
            operation["security"] = [] if route.public else [{"token": []}]
            if not route.public:
                operation["responses"]["403"] = _ERROR
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
            "schemas": {"Error": {"type": "object", "properties": {
                "message": {"type": "string"}, "field": {"type": "string"}}}},
        },
    }


class OpenApiHandler(NbflowHandler):
    @allow_unauthenticated
    @api
    def get(self) -> dict:
        return document(self.base_url)

