"""A deployment's definition: check a REST body field by field and turn it into a stored row.

A deployment is a notebook (parameters read from its `parameters` cell with papermill) or a
flow entrypoint `FILE.py:FLOW` (parameters read from the function's signature, without
importing the file: the server never runs user code to check a definition), plus default
parameters, an optional schedule, a timeout, a work pool, a webhook and triggers.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from nbflow.deployments import paths
from nbflow.engine.states import STATE_TYPES
from nbflow.errors import NbflowError

FIELDS = ("name", "notebook", "entrypoint", "parameters", "schedule", "catch_up", "timeout_seconds",
          "paused", "work_pool", "webhook", "triggers")
#: the stored row, in the deployments table's column order (nbflow/store/schema.py).
COLUMNS = ("id", "name", "flow_name", "kind", "notebook", "entrypoint", "parameters", "schedule",
           "catch_up", "timeout_seconds", "paused", "work_pool", "webhook_slug", "webhook_secret",
           "webhook_parameters", "triggers", "last_scheduled", "created", "updated")
DEFAULT_POOL = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
_FINAL = ("Completed", "Failed", "TimedOut", "Crashed", "Cancelled")


class DeploymentError(NbflowError, ValueError):
    """A deployment body that cannot be stored; `field` names the offending field."""

    def __init__(self, message: str, field: str | None = None, status: int = 422,
                 parameter: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.status = status
        #: the parameter at fault, when field is "parameters" (a form shows the message next to it)
        self.parameter = parameter


class UnknownDeploymentError(NbflowError, LookupError):
    """No deployment has this id or name."""


def check_body(body: Any, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition `body` describes (merged over `current` for a PATCH), checked and normalised.

    Returns the stored fields (without id, times and last_scheduled). Raises DeploymentError.
    """
    if not isinstance(body, dict):
        raise DeploymentError("The body must be a JSON object such as {\"name\": \"nightly\", "
                              "\"notebook\": \"report.ipynb\"}.", status=400)
    unknown = sorted(set(body) - set(FIELDS) - ({"id"} if current else set()))
    if unknown:
        raise DeploymentError(f"Unknown field(s) {', '.join(unknown)}; a deployment has: {', '.join(FIELDS)}.",
                              unknown[0])
    if current is not None and "id" in body and body["id"] != current["id"]:
        raise DeploymentError("A deployment's id cannot change.", "id")
    merged = dict(current or {})
    if current is not None and ("notebook" in body or "entrypoint" in body):
        merged.pop("notebook", None)
        merged.pop("entrypoint", None)
    merged.update({k: v for k, v in body.items() if k != "id"})
    row: dict[str, Any] = {"name": _name(merged.get("name"))}
    row.update(_target(merged.get("notebook"), merged.get("entrypoint")))
    declared, row["parameters"] = _parameters(row, merged.get("parameters"))
    row["schedule"], row["catch_up"] = _schedule(merged.get("schedule"), merged.get("catch_up"))
    row["timeout_seconds"] = _timeout(merged.get("timeout_seconds"))
    row["paused"] = _flag(merged.get("paused", False), "paused")
    row["work_pool"] = _pool(merged.get("work_pool"))
    row.update(_webhook(merged.get("webhook"), declared, current))
    row["triggers"] = _triggers(merged.get("triggers"))
    return row


def check_run_parameters(row: dict[str, Any], values: Any) -> dict[str, Any]:
    """A run's parameters: the deployment's defaults updated with `values`, checked like the defaults."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise DeploymentError("parameters must be a JSON object of name -> value.", "parameters")
    merged = {**(row.get("parameters") or {}), **values}
    return _parameters(row, merged)[1]


def _name(value: Any) -> str:
    if value is None or value == "":
        raise DeploymentError("name is required: a short name such as \"nightly-report\".", "name")
    if not isinstance(value, str) or not _NAME.match(value.strip()):
        raise DeploymentError(f"name must be 1-100 letters, digits, spaces, '.', '_' or '-' starting with a "
                              f"letter or digit; got {value!r}.", "name")
    return value.strip()


def _target(notebook: Any, entrypoint: Any) -> dict[str, Any]:
    if (notebook is None) == (entrypoint is None):
        raise DeploymentError("Give exactly one of notebook (a .ipynb path) or entrypoint (\"FILE.py:FLOW\").",
                              "entrypoint" if entrypoint is not None and notebook is None else "notebook")
    if notebook is not None:
        if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
            raise DeploymentError(f"notebook must be the path of a .ipynb file; got {notebook!r}.", "notebook")
        path = _confined(notebook, "notebook")
        if path.suffix != ".ipynb":
            raise DeploymentError(f"notebook {notebook!r} is a link to {path}, which is not a .ipynb file.",
                                  "notebook")
        if not os.path.isfile(path):
            raise DeploymentError(f"No notebook at {path}. Give the path of an existing .ipynb file "
                                  f"(relative paths are resolved against the server's root dir "
                                  f"{paths.base_dir()}).", "notebook")
        return {"kind": "notebook", "notebook": str(path), "entrypoint": None, "flow_name": path.stem}
    from nbflow.deployments.entrypoints import EntrypointError, flow_name_of, parse_entrypoint

    if not isinstance(entrypoint, str):
        raise DeploymentError(f"entrypoint must be text such as \"etl.py:etl_flow\"; got {entrypoint!r}.",
                              "entrypoint")
    file_part, colon, _ = entrypoint.rpartition(":")
    if colon and file_part.strip():
        real = _confined(file_part.strip(), "entrypoint")  # before reading it: say nothing of files outside
        if real.suffix == ".py" and not os.path.isfile(real):
            raise DeploymentError(f"Flow entrypoint {entrypoint!r}: there is no file {real}. Give the path of an "
                                  "existing .py file, absolute or relative to the server's root dir "
                                  f"{paths.base_dir()}.", "entrypoint")
    try:
        path, function = parse_entrypoint(entrypoint, paths.base_dir())
        flow_name = flow_name_of(path, function)
    except EntrypointError as exc:
        raise DeploymentError(str(exc), "entrypoint") from None
    return {"kind": "flow", "notebook": None, "entrypoint": f"{path}:{function}", "flow_name": flow_name}


def _confined(path: str, field: str) -> Path:
    """The real path of a deployment's file, which must lie under an allowed root (422 otherwise)."""
    try:
        return paths.resolve(path, field)
    except paths.PathNotAllowedError as exc:
        raise DeploymentError(str(exc), field) from None


def _parameters(row: dict[str, Any], values: Any) -> tuple[set[str] | None, dict[str, Any]]:
    """(the names the target accepts, or None for any; the checked values)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise DeploymentError("parameters must be a JSON object of name -> value.", "parameters")
    if row["kind"] == "notebook":
        from nbflow.deployments.notebook_params import (
            NotebookParameterError, check_parameters, notebook_parameters,
        )

        try:
            checked = check_parameters(Path(row["notebook"]), values)
            declared: set[str] | None = set(notebook_parameters(Path(row["notebook"])))
        except NotebookParameterError as exc:
            raise DeploymentError(str(exc), "parameters", parameter=exc.parameter) from None
    else:
        from nbflow.deployments.entrypoints import EntrypointError, check_flow_parameters, flow_signature

        path, function = row["entrypoint"].rsplit(":", 1)
        try:
            checked = check_flow_parameters(Path(path), function, values)
            signature = flow_signature(Path(path), function)
        except EntrypointError as exc:
            raise DeploymentError(str(exc), "parameters", parameter=getattr(exc, "parameter", None)) from None
        declared = None if any(p.get("kind") == "var_keyword" for p in signature.values()) else set(signature)
    try:
        json.dumps(checked)
    except (TypeError, ValueError):
        raise DeploymentError("parameters must be JSON values (text, numbers, booleans, lists, objects).",
                              "parameters") from None
    return declared, checked


def _schedule(spec: Any, catch_up: Any) -> tuple[dict[str, Any] | None, str]:
    from nbflow.deployments.schedules import CATCH_UP_POLICIES, ScheduleError, parse_schedule

    try:
        schedule = parse_schedule(spec)
    except ScheduleError as exc:
        raise DeploymentError(str(exc), exc.field) from None
    catch_up = "latest" if catch_up is None else catch_up
    if catch_up not in CATCH_UP_POLICIES:
        raise DeploymentError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}; got {catch_up!r}.",
                              "catch_up")
    return (schedule.to_dict() if schedule else None), catch_up


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 7 * 86400:
        raise DeploymentError(f"timeout_seconds must be a number of seconds above 0 and at most a week "
                              f"(604800); got {value!r}.", "timeout_seconds")
    return float(value)


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise DeploymentError(f"{field} must be true or false; got {value!r}.", field)
    return value


def _pool(value: Any) -> str:
    if value is None:
        return DEFAULT_POOL
    if not isinstance(value, str) or not _SLUG.match(value):
        raise DeploymentError(f"work_pool must be a name of letters, digits, '_' or '-'; got {value!r}.",
                              "work_pool")
    return value


def _webhook(spec: Any, declared: set[str] | None, current: dict[str, Any] | None) -> dict[str, Any]:
    none = {"webhook_slug": None, "webhook_secret": None, "webhook_parameters": None}
    if spec is None:
        return none
    if not isinstance(spec, dict) or set(spec) - {"slug", "secret", "parameters"}:
        raise DeploymentError("webhook must be {\"slug\": \"new-data\", \"secret\": optional, \"parameters\": "
                              "{\"param\": \"body.field\"}}.", "webhook")
    slug = spec.get("slug")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise DeploymentError(f"webhook.slug must be 1-64 letters, digits, '_' or '-'; got {slug!r}.",
                              "webhook.slug")
    secret = spec.get("secret")
    if secret is None:
        same = current is not None and current.get("webhook_slug") == slug
        secret = current["webhook_secret"] if same and current.get("webhook_secret") else secrets.token_urlsafe(24)
    elif not isinstance(secret, str) or len(secret) < 16:
        raise DeploymentError("webhook.secret must be text of at least 16 characters (or leave it out and "
                              "nbflow makes one).", "webhook.secret")
    mapping = spec.get("parameters") or {}
    if not isinstance(mapping, dict) or not all(isinstance(v, str) and v for v in mapping.values()):
        raise DeploymentError("webhook.parameters maps parameter names to fields of the JSON body, such as "
                              "{\"day\": \"body.date\"}.", "webhook.parameters")
    unknown = sorted(set(mapping) - declared) if declared is not None else []
    if unknown:
        raise DeploymentError(f"webhook.parameters names parameter(s) {', '.join(unknown)} that the deployment "
                              f"does not take; it takes: {', '.join(sorted(declared or ())) or 'none'}.",
                              "webhook.parameters")
    return {"webhook_slug": slug, "webhook_secret": secret, "webhook_parameters": mapping}


def _triggers(spec: Any) -> list[dict[str, str]]:
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise DeploymentError("triggers must be a list such as [{\"deployment\": \"extract\", \"state\": "
                              "\"Completed\"}].", "triggers")
    checked = []
    for i, trigger in enumerate(spec):
        if not isinstance(trigger, dict) or set(trigger) - {"deployment", "state"} or not isinstance(
                trigger.get("deployment"), str):
            raise DeploymentError(f"triggers[{i}] must be {{\"deployment\": NAME_OR_ID, \"state\": STATE}}.",
                                  "triggers")
        state = trigger.get("state", "Completed")
        name = next((s for s in STATE_TYPES if isinstance(state, str) and s.lower() == state.lower()), None)
        if name not in _FINAL:
            raise DeploymentError(f"triggers[{i}].state must be a final state: {', '.join(_FINAL)}; got {state!r}.",
                                  "triggers")
        checked.append({"deployment": trigger["deployment"], "state": name})
    return checked


def parameter_schema(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters a deployment's target takes, as an OpenAPI object schema (Prefect's parameter
    schema: properties with type, default, position, description; required), with the deployment's own
    parameters as the defaults (for a run form). An empty schema if the target cannot be read."""
    target = row.get("notebook") or (row.get("entrypoint") or "").rsplit(":", 1)[0]
    try:
        stamp = Path(target).stat().st_mtime_ns
    except OSError:
        return _empty_schema()
    schema = json.loads(_target_schema(row["kind"], row.get("notebook") or row.get("entrypoint"), stamp))
    properties = schema["properties"]
    for name, value in (row.get("parameters") or {}).items():
        if name in properties:
            properties[name]["default"] = value
    required = [name for name in schema.get("required", []) if name not in (row.get("parameters") or {})]
    schema.pop("required", None)
    if required:
        schema["required"] = required
    return schema


def _empty_schema() -> dict[str, Any]:
    return {"title": "Parameters", "type": "object", "properties": {}, "definitions": {}}


@functools.lru_cache(maxsize=256)
def _target_schema(kind: str, target: str, stamp: int) -> str:
    """JSON text (callers get their own copy), cached by the file's modification time: papermill's
    inspection and pydantic's schema take milliseconds."""
    import inspect

    if kind == "notebook":
        from nbflow.deployments.notebook_params import NotebookParameterError, notebook_parameters
        from nbflow.deployments.source_hints import hint_from_text
        from nbflow.engine.parameter_schema import generate_parameter_schema

        try:
            found = notebook_parameters(Path(target))
        except NotebookParameterError:
            return json.dumps(_empty_schema())
        params, docs = [], {}
        for name, info in found.items():
            try:
                default = ast.literal_eval(str(info.get("default")))
            except (ValueError, SyntaxError):
                default = info.get("default")
            kind_name = info.get("type") or ""
            hint = inspect.Parameter.empty if kind_name in ("none", "any") else hint_from_text(kind_name)
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint))
            if info.get("help"):
                docs[name] = info["help"]
        schema = generate_parameter_schema(inspect.Signature(params), docs).model_dump_for_openapi()
        return json.dumps(schema, default=str)
    from nbflow.deployments.entrypoints import EntrypointError, flow_parameter_schema

    path, function = target.rsplit(":", 1)
    try:
        return json.dumps(flow_parameter_schema(Path(path), function), default=str)
    except EntrypointError:
        return json.dumps(_empty_schema())


def body_value(body: Any, path: str) -> Any:
    """The value at a dotted path of a webhook's JSON body (`body.a.b` or `a.b`); KeyError if absent."""
    value = body
    parts = path.split(".")
    if parts[0] == "body":
        parts = parts[1:]
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value
