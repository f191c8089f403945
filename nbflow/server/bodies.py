"""Request bodies: their JSON schemas (the route table and the OpenAPI document use them) and the
checks every body passes before a handler sees it.

`parse` turns bytes into JSON values or a 400 (not JSON, NaN, nested past Python's recursion
limit); `check` holds a value to its schema (OpenAPI 3.0's subset: type, nullable, enum,
bounds, lengths, pattern, properties, required, additionalProperties, items) and to limits
that keep garbage away from the store: at most MAX_DEPTH levels of nesting, finite numbers,
integers that fit DuckDB's BIGINT. A violation is a 422 naming the field (`webhook.slug`,
`run_ids[3]`); a body that is not the JSON type the route takes is a 400.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from nbflow.deployments.schedules import CATCH_UP_POLICIES, MAX_INTERVAL_SECONDS
from nbflow.deployments.service import MAX_CLAIM, MAX_CONCURRENCY
from nbflow.server.errors import ApiError, bad_request

#: nesting levels a checked body may have (the body itself is level 1).
MAX_DEPTH = 32
#: the range of DuckDB's BIGINT: a larger integer cannot reach the store.
MAX_INT = 2**63 - 1
MAX_TIMEOUT_SECONDS = 7 * 86400
SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
#: bodies marked "x-body-optional" may be left out (an empty body is {}); the others are required.

#: a path on the server: no NUL byte (the operating system refuses one).
NO_NUL = "^[^\\u0000]*$"
_PATH = {"type": "string", "maxLength": 4096, "pattern": NO_NUL}
_NULLABLE_PATH = {**_PATH, "nullable": True}
_SLUG = {"type": "string", "pattern": SLUG_PATTERN, "maxLength": 64}
_ANY = {"description": "Any JSON value"}

_DEPLOYMENT_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 100,
             "description": "1-100 letters, digits, spaces, '.', '_' or '-'"},
    "notebook": {**_NULLABLE_PATH, "description": "Path of a .ipynb file on the server (or give entrypoint)"},
    "entrypoint": {**_NULLABLE_PATH, "description": "FILE.py:FLOW on the server (or give notebook)"},
    "parameters": {"type": "object", "nullable": True, "additionalProperties": _ANY,
                   "description": "Default parameters: name -> JSON value"},
    "schedule": {"type": "object", "nullable": True, "additionalProperties": False,
                 "description": "{\"cron\", \"timezone\"?} or {\"interval\": SECONDS}, or null",
                 "properties": {"cron": {"type": "string", "maxLength": 200},
                                "timezone": {"type": "string", "maxLength": 64},
                                "interval": {"type": "integer", "minimum": 1, "maximum": MAX_INTERVAL_SECONDS}}},
    "catch_up": {"type": "string", "enum": list(CATCH_UP_POLICIES), "nullable": True},
    "timeout_seconds": {"type": "number", "nullable": True, "minimum": 0, "exclusiveMinimum": True,
                        "maximum": MAX_TIMEOUT_SECONDS},
    "paused": {"type": "boolean"},
    "work_pool": {**_SLUG, "nullable": True},
    "webhook": {"type": "object", "nullable": True, "additionalProperties": False, "required": ["slug"],
                "properties": {
                    "slug": _SLUG,
                    "secret": {"type": "string", "minLength": 16, "maxLength": 256, "nullable": True},
                    "parameters": {"type": "object", "nullable": True,
                                   "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
                                   "description": "parameter -> dotted path in the webhook's body"}}},
    "triggers": {"type": "array", "nullable": True, "maxItems": 100,
                 "items": {"type": "object", "additionalProperties": False, "required": ["deployment"],
                           "properties": {"deployment": {"type": "string", "minLength": 1, "maxLength": 100},
                                          "state": {"type": "string", "maxLength": 32}}}},
}

DEPLOYMENT = {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": _DEPLOYMENT_FIELDS,
              "description": "A deployment: a notebook or a flow entrypoint, default parameters, a schedule, "
                             "a timeout, a work pool, a webhook and triggers."}
DEPLOYMENT_PATCH = {"type": "object", "additionalProperties": False,
                    "properties": {"id": {"type": "string", "maxLength": 64}, **_DEPLOYMENT_FIELDS},
                    "description": "Some fields of a deployment (its id cannot change)."}
RUN = {"type": "object", "additionalProperties": False, "x-body-optional": True,
       "properties": {"parameters": _DEPLOYMENT_FIELDS["parameters"]},
       "description": "Parameters merged over the deployment's (the body is optional)."}
RETRY = {"type": "object", "additionalProperties": False, "x-body-optional": True,
         "properties": {"from_failed": {"type": "boolean", "default": False}},
         "description": "from_failed: resume at the failed task run with its kept inputs (the body is optional)."}
RUN_STATE = {"type": "object", "required": ["state"], "additionalProperties": False,
             "properties": {"state": {"type": "string", "minLength": 1, "maxLength": 32},
                            "message": {"type": "string", "nullable": True, "maxLength": 100_000},
                            "output_notebook": _NULLABLE_PATH,
                            "worker_id": {"type": "string", "nullable": True, "maxLength": 200}},
             "description": "The state a worker reports for a run it claimed."}
WORK_POOL = {"type": "object", "required": ["name"], "additionalProperties": False,
             "properties": {"name": _SLUG,
                            "concurrency_limit": {"type": "integer", "nullable": True, "minimum": 1,
                                                  "maximum": MAX_CONCURRENCY}}}
CLAIM = {"type": "object", "required": ["worker_id"], "additionalProperties": False,
         "properties": {"worker_id": {"type": "string", "minLength": 1, "maxLength": 200},
                        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CLAIM, "default": 1}}}
HEARTBEAT = {"type": "object", "additionalProperties": False, "x-body-optional": True,
             "properties": {"work_pool": {**_SLUG, "nullable": True},
                            "run_ids": {"type": "array", "nullable": True, "maxItems": MAX_CLAIM,
                                        "items": {"type": "string", "maxLength": 64}},
                            "host": {"type": "string", "nullable": True, "maxLength": 255,
                                     "description": "the worker's machine"},
                            "pid": {"type": "integer", "nullable": True, "minimum": 1, "maximum": 2**31 - 1,
                                    "description": "the worker's process id"}}}
SQL = {"type": "object", "required": ["sql"], "additionalProperties": False,
       "properties": {"sql": {"type": "string", "maxLength": 100_000, "description": "One SELECT statement"},
                      "params": {"type": "array", "nullable": True, "maxItems": 10_000, "items": _ANY,
                                 "description": "Values for the query's ? placeholders"}}}
WEBHOOK = {**_ANY, "x-body-optional": True, "description": "Any JSON; the webhook's parameter mapping picks fields of it "
                                  "(without a mapping, {\"parameters\": {...}} gives the parameters)"}


#: a run id in full: 32 lowercase hex digits.
RUN_ID_PATTERN = "^[0-9a-f]{32}$"
_RUN_ID = {"type": "string", "pattern": RUN_ID_PATTERN}
#: a file of kept debug data: a plain name (no folder).
DEBUG_FILE_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,127}$"
_DEBUG_FILE = {"type": "string", "pattern": DEBUG_FILE_PATTERN}
_TEXT = {"type": "string", "nullable": True, "maxLength": 1_000_000}
_SHORT = {"type": "string", "nullable": True, "maxLength": 1000}
_DEBUG_REF = {"type": "object", "required": ["format", "path", "digest"], "additionalProperties": False,
              "properties": {"format": {"type": "string", "enum": ["json", "parquet", "pickle"]},
                             "path": _DEBUG_FILE, "digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}
_DEBUG_MANIFEST = {
    "type": "object", "additionalProperties": True,
    "required": ["version", "kind", "task_run_id", "task_name", "values", "skipped"],
    "description": "The failed task run's manifest as the worker wrote it (nbflow/store/debug_files.py)",
    "properties": {
        "version": {"type": "integer", "enum": [1]},
        "kind": {"type": "string", "enum": ["task", "cell"]},
        "task_run_id": _RUN_ID, "flow_run_id": {**_RUN_ID, "nullable": True},
        "root_flow_run_id": {**_RUN_ID, "nullable": True},
        "task_name": {"type": "string", "maxLength": 1000}, "task_key": _SHORT, "qualname": _SHORT,
        "state": _SHORT, "error": _TEXT, "exception_type": _SHORT, "message": _TEXT, "traceback": _TEXT,
        "source": _TEXT, "header": _TEXT, "filename": {**_TEXT, "pattern": NO_NUL},
        "firstlineno": {"type": "integer", "minimum": 0},
        "imports": {"type": "array", "maxItems": 10_000, "items": {"type": "string", "maxLength": 10_000}},
        "parameters": {"type": "array", "maxItems": 10_000, "items": {"type": "string", "maxLength": 1000}},
        "raised_at": {"type": "object", "nullable": True, "properties": {
            "filename": _TEXT, "line": {"type": "integer", "nullable": True}, "function": _SHORT, "code": _TEXT}},
        "producers": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["task_run_id", "task_name"],
            "properties": {"task_run_id": _RUN_ID, "task_key": _SHORT, "task_name": {"type": "string",
                                                                                      "maxLength": 1000}}}},
        "values": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["ref", "role", "type", "bytes"],
            "properties": {"ref": _DEBUG_REF, "role": {"type": "string", "enum": ["input", "namespace"]},
                           "type": {"type": "string", "maxLength": 1000},
                           "bytes": {"type": "integer", "minimum": 0}}}},
        "modules": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 1000}},
        "skipped": {"type": "array", "maxItems": 100_000, "items": {
            "type": "object", "required": ["name", "type", "reason"],
            "properties": {"name": {"type": "string", "maxLength": 1000}, "type": {"type": "string", "maxLength": 1000},
                           "reason": {"type": "string", "maxLength": 10_000}}}},
        "function": {**_DEBUG_REF, "nullable": True},
        "size_cap": {"type": "integer", "nullable": True, "minimum": 0},
        "failed_at": {"type": "number", "nullable": True},
    }}
DEBUG_OFFER = {"type": "object", "required": ["task_run_id", "manifest", "files"], "additionalProperties": False,
               "description": "A failed task run's debug data offered by a worker with another NBFLOW_HOME: its "
                              "manifest and each file it names (values/<name>) with its size and sha256",
               "properties": {
                   "task_run_id": _RUN_ID, "manifest": _DEBUG_MANIFEST,
                   "files": {"type": "array", "maxItems": 100_000, "items": {
                       "type": "object", "required": ["name", "bytes", "sha256"], "additionalProperties": False,
                       "properties": {"name": _DEBUG_FILE, "bytes": {"type": "integer", "minimum": 0},
                                      "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}}}}
#: a body of raw bytes (a chunk of a file), not JSON.
RAW_BYTES = {"type": "string", "format": "binary", "x-content-type": "application/octet-stream",
             "description": "The bytes of the file from `position` on"}


#: a value of a run event row: text, a number, true/false or null (never a list or an object).
_SCALAR = {"anyOf": [{"type": "string", "nullable": True}, {"type": "number"}, {"type": "boolean"}]}


def events_schema(tables: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """The body of POST events: rows per table, each row a list in the table's column order."""
    return {"type": "object", "additionalProperties": False,
            "description": "Rows per table in the column order of nbflow.store.records",
            "properties": {name: {"type": "array", "description": ", ".join(columns),
                                  "items": {"type": "array", "minItems": len(columns) - len(_added(name)),
                                            "maxItems": len(columns), "items": _SCALAR}}
                           for name, columns in tables.items()}}


def _added(table: str) -> tuple[str, ...]:
    """Columns a client of an older schema does not send (the store fills them with null)."""
    from nbflow.store.records import TASK_RUN_COLUMNS_ADDED

    return TASK_RUN_COLUMNS_ADDED if table == "task_runs" else ()


# -- parsing ----------------------------------------------------------------------------------

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def parse(raw: bytes | bytearray) -> Any:
    """The JSON value of a request body (None for an empty one); a 400 naming the problem otherwise."""
    if not raw:
        return None
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise bad_request(f"The request body is nested too deeply; bodies may nest at most {MAX_DEPTH} levels.") \
            from None
    except ValueError as exc:  # also UnicodeDecodeError and int() on over-long digit strings
        raise bad_request(f"The request body is not valid JSON: {exc}") from None


# -- checking ---------------------------------------------------------------------------------

_TYPES: dict[str, str] = {"object": "a JSON object", "array": "a list", "string": "text", "integer": "a whole number",
                          "number": "a number", "boolean": "true or false"}


def check(value: Any, schema: dict[str, Any]) -> None:
    """Hold a parsed body to its schema and the store's limits: 400 if it is not the type the route
    takes at all, else 422 naming the first field at fault."""
    expected = schema.get("type")
    if expected is not None and not _is_type(value, expected) and not (value is None and schema.get("nullable")):
        raise bad_request(f"The body must be {_TYPES[expected]}; got {_got(value)}.")
    _check(value, schema, "", 1)


def _fail(path: str, message: str) -> ApiError:
    return ApiError(422, message, field=path or None)


def _check(value: Any, schema: dict[str, Any], path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _fail(path, f"{path or 'The body'} is nested more than {MAX_DEPTH} levels deep; flatten it.")
    name = path or "the body"
    if value is None:
        if schema.get("nullable") or "type" not in schema:
            return
        raise _fail(path, f"{name} must be {_TYPES[schema['type']]}, not null.")
    expected = schema.get("type")
    if expected is not None and not _is_type(value, expected):
        raise _fail(path, f"{name} must be {_TYPES[expected]}; got {_got(value)}.")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(path, f"{name} must be one of {', '.join(map(str, schema['enum']))}; got {_got(value)}.")
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _check_number(value, schema, path, name)
    elif isinstance(value, str):
        _check_text(value, schema, path, name)
    elif isinstance(value, list):
        if len(value) > schema.get("maxItems", math.inf) or len(value) < schema.get("minItems", 0):
            raise _fail(path, f"{name} must have {_between(schema.get('minItems', 0), schema.get('maxItems'))} "
                              f"items; got {len(value)}.")
        items = schema.get("items", {})
        for i, item in enumerate(value):
            _check(item, items, f"{path}[{i}]", depth + 1)
    elif isinstance(value, dict):
        _check_object(value, schema, path, depth)


def _check_number(value: int | float, schema: dict[str, Any], path: str, name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(path, f"{name} must be a finite number; got {value}.")
    low, high = schema.get("minimum"), schema.get("maximum")
    above = schema.get("exclusiveMinimum") is True
    if (low is not None and (value <= low if above else value < low)) or (high is not None and value > high):
        bounds = " and ".join(part for part in (
            f"above {low}" if above and low is not None else f"at least {low}" if low is not None else "",
            f"at most {high}" if high is not None else "") if part)
        raise _fail(path, f"{name} must be {bounds}; got {value}.")
    if isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
        raise _fail(path, f"{name} is {value}, beyond the 64-bit integers nbflow stores (|n| < 2**63).")


def _check_text(value: str, schema: dict[str, Any], path: str, name: str) -> None:
    _check_unicode(value, path, name)
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if len(value) < low or (high is not None and len(value) > high):
        raise _fail(path, f"{name} must be {_between(low, high)} characters long; got {len(value)}.")
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        if pattern == NO_NUL:
            raise _fail(path, f"{name} is a path and cannot hold a NUL character (\\u0000); got {_got(value)}.")
        raise _fail(path, f"{name} must match {pattern}; got {_got(value)}.")


def _check_unicode(value: str, path: str, name: str) -> None:
    """Text the store can hold: JSON's \\ud800-style escapes can spell a lone UTF-16 surrogate,
    which no UTF-8 text (DuckDB's, a file name's) can."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _fail(path, f"{name} holds a lone UTF-16 surrogate ({value[exc.start]!r}) at {exc.start}; "
                              "send Unicode text (a \\ud83d\\ude00 pair is fine).") from None


def _check_object(value: dict, schema: dict[str, Any], path: str, depth: int) -> None:
    properties: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    for key in schema.get("required", ()):
        if key not in value:
            raise _fail(_join(path, key), f"{_join(path, key)} is required.")
    if extra is False:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            where = f"{path} takes" if path else "this route takes"
            raise _fail(_join(path, unknown[0]), f"Unknown field(s) {', '.join(unknown)}; {where}: "
                                                 f"{', '.join(properties) or 'none'}.")
    for key, item in value.items():
        _check_unicode(key, path, f"A key of {path or 'the body'}")
        _check(item, properties.get(key, extra if isinstance(extra, dict) else {}), _join(path, key), depth + 1)


def _is_type(value: Any, expected: str) -> bool:
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool}[expected])


def _got(value: Any) -> str:
    """What a value is, for a message: `a list`, `text 'abc'`, `a number 5`."""
    kind = {dict: "an object", list: "a list", str: "text", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)) or value is None:
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 80 else text[:77] + '...'}"


def _between(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    return f"at most {high}" if not low else f"{low} to {high}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
