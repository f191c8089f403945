"""Thin request handlers: parse, call the layer below, answer JSON. Errors map in `errors.py`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from tornado.httputil import responses

from nbflow._version import __version__
from nbflow.errors import NbflowError
from nbflow.server import bodies, runs_api
from nbflow.server.errors import (
    HTTP_MESSAGES, ApiError, bad_request, method_not_allowed, not_found, status_and_body, too_large,
)
from nbflow.store.records import TABLES, TASK_RUN_COLUMNS_ADDED, Batch

ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: the body limit of a path that takes no body (GET routes, the catch-all, openapi.json).
NO_BODY_LIMIT = 64 * 1024
_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class Reply:
    """A non-JSON answer a handler returns; the event loop sends it."""

    body: bytes | str
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


#: store work runs on these threads, never on the event loop: a slow query must not stop the
#: server answering (health, run events) or stopping on a signal. User SQL has its own few
#: threads, so that long queries cannot take every thread from run events.
_STORE_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nbflow-api")
_SQL_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbflow-sql")


def api(method: Callable | None = None, *, threads: ThreadPoolExecutor | None = _STORE_THREADS) -> Callable:
    """Run the handler method off the event loop and answer its return value as JSON (or a
    Reply); map any exception to its status in one place. `threads=None`: a method that does no
    store work and runs on the loop."""
    if method is None:
        return functools.partial(api, threads=threads)

    @functools.wraps(method)
    async def wrapper(self: "NbflowHandler", *args: Any, **kwargs: Any) -> None:
        try:
            if inspect.iscoroutinefunction(method):
                result = await method(self, *args, **kwargs)
            elif threads is None:
                result = method(self, *args, **kwargs)
            else:
                result = await asyncio.get_running_loop().run_in_executor(
                    threads, functools.partial(method, self, *args, **kwargs))
        except web.HTTPError:
            raise
        except Exception as exc:
            status, body = status_and_body(exc)
            if status == 500:  # a bug of ours: keep the traceback
                self.log.exception("nbflow API error on %s %s", self.request.method, self.request.path)
            elif status > 500:  # the store is unavailable: say why, no traceback
                self.log.warning("nbflow API %s %s: %s", self.request.method, self.request.path, body["message"])
            self.set_status(status)
            self.finish(json.dumps(body))
            return
        if self._finished:
            return
        if isinstance(result, Reply):
            for name, value in result.headers:
                self.set_header(name, value)
            self.finish(result.body, set_content_type=result.content_type)
        elif result is not None:
            self.finish(json.dumps(result))

    return wrapper


class _Abort(web.HTTPError):
    """An ApiError raised before a handler method runs (prepare, data_received): tornado answers
    only HTTPError with its status, and write_error renders the ApiError it carries."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status)
        self.error = error


#: a body over the limit by at most this factor is read (and dropped) before the 413, so that a
#: client still sending it reads the answer; a larger one is answered at once and the connection
#: closed (the client may see a reset instead of the 413).
_DRAIN_FACTOR = 4


@web.stream_request_body
class NbflowHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every nbflow API handler.

    Before a method runs: 405 with Allow for a method the route does not take, the token check
    (401 JSON, never a login redirect), and the route's body limit (413) from the Content-Length
    and from the bytes as they arrive, so an oversized body is never held or parsed. Every error
    is JSON {"message", "field"?}.
    """

    #: the route this handler serves (nbflow.server.routes.Route); None for the catch-all and openapi.json.
    route: Any = None

    def initialize(self, name: str, route: Any = None, **kwargs: Any) -> None:
        super().initialize(name, **kwargs)
        self.route = route
        self._refusal: ApiError | None = None
        self._length: int | None = None
        self._received = 0

    @property
    def store(self) -> Any:
        return self.settings["nbflow_store"]

    def arguments(self) -> dict[str, str]:
        return {k: self.get_argument(k) for k in self.request.arguments}

    # -- before the method --------------------------------------------------------------------

    async def prepare(self) -> None:  # type: ignore[override]
        try:
            self.check_method()
            await super().prepare()
            self.limit_body()
            self.admit()
        except ApiError as error:
            raise _Abort(error) from None

    def allowed_methods(self) -> tuple[str, ...]:
        """The methods this path takes: the route table's, else those the class defines."""
        if self.route is not None:
            return tuple(m.upper() for m in self.route.methods)
        return tuple(m.upper() for m in ("get", "post", "put", "patch", "delete")
                     if getattr(type(self), m) is not getattr(web.RequestHandler, m))

    def check_method(self) -> None:
        """405 with Allow before anything else (OPTIONS stays open for CORS preflights)."""
        method = self.request.method or ""
        allowed = self.allowed_methods()
        if method != "OPTIONS" and method not in allowed:
            raise method_not_allowed(method, allowed)

    def admit(self) -> None:
        """Refuse a caller before its body is read (an ApiError); webhooks limit wrong secrets here."""

    def max_body(self) -> int:
        """The largest body this route takes, in bytes (routes.Route.max_body)."""
        return self.route.max_body if self.route is not None else NO_BODY_LIMIT

    def limit_body(self) -> None:
        """Refuse a body over the route's limit from its Content-Length, before it is read."""
        limit = self.max_body()
        self.request.body = bytearray()  # data_received appends the body as it arrives
        try:
            self._length = int(self.request.headers["Content-Length"])
        except (KeyError, ValueError):  # chunked, or malformed (tornado answers 400 for the latter)
            self._length = None
        if self._length is not None and self._length > limit:
            if self._length > limit * _DRAIN_FACTOR:
                raise self._too_large()
            self._refusal = self._too_large()  # answered once the body is in (data_received)
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            # Bounds a chunked body tornado would otherwise read up to Jupyter's max_body_size.
            connection.set_max_body_size(max(limit * _DRAIN_FACTOR, self._length or 0))

    def _too_large(self) -> ApiError:
        where = f"nbflow/api{self.route.openapi_path}" if self.route is not None else "this path"
        return too_large(self.max_body(), f"{self.request.method} {where}")

    def data_received(self, chunk: bytes) -> None:
        """Collect the body; past the limit, drop it and answer 413 (at its end when its length is known)."""
        if self._finished:
            return
        self._received += len(chunk)
        if self._refusal is None and self._received > self.max_body():
            self._refusal = self._too_large()
            self.request.body = bytearray()
        if self._refusal is None:
            self.request.body += chunk
        elif self._length is None or self._received >= self._length:
            self.send_error(self._refusal.status, exc_info=(ApiError, self._refusal, None))

    # -- bodies -------------------------------------------------------------------------------

    def body_schema(self) -> dict[str, Any]:
        """The JSON schema of this method's body in the route table (any JSON if it declares none)."""
        if self.route is None:
            return {}
        return self.route.body.get((self.request.method or "").lower(), {})

    def json_body(self, check: bool = True) -> Any:
        """The parsed body (None if empty): 400 unless JSON; with `check`, held to the route's schema
        and the store's limits (422 naming the field, 400 if not the JSON type the route takes)."""
        body = bodies.parse(self.request.body)
        if check:
            bodies.check(body, self.body_schema())
        return body

    def json_object(self, allowed: tuple[str, ...] | None = None,
                    required: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The JSON body as an object (an empty body: {}): 400 for another shape, an unknown field or a
        missing required one (the route's schema, unless given), then 422 for a bad value."""
        schema = self.body_schema()
        allowed = tuple(schema.get("properties", {})) if allowed is None else allowed
        required = tuple(schema.get("required", ())) if required is None else required
        body = self.json_body(check=False) if self.request.body else {}
        if not isinstance(body, dict):
            raise bad_request(f"The body must be a JSON object with the fields {', '.join(allowed)}.")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise bad_request(f"Unknown field(s) {', '.join(unknown)}; this route takes {', '.join(allowed)}.",
                              unknown[0])
        for name in required:
            if body.get(name) in (None, ""):
                raise bad_request(f"{name} is required.", name)
        bodies.check(body, schema)
        return body

    # -- errors -------------------------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as JSON {"message", "field"?}: ours with their headers (Allow, Retry-After);
        tornado's and Jupyter's with a message saying what to do; anything else as a 500 of ours."""
        error = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(error, _Abort):
            error = error.error
        headers: dict[str, str] = {}
        if isinstance(error, web.HTTPError):
            message = error.log_message % error.args if error.log_message else ""
            anonymous = getattr(self, "_jupyter_current_user", None) is None
            if status_code == 403 and anonymous and self.check_host():
                # Jupyter refuses a caller without a valid token with 403 (or 403 for a missing XSRF
                # field): for an API that is 401, which says what to send.
                status_code, message = 401, ""
                self.set_status(401)
                headers["WWW-Authenticate"] = 'token realm="nbflow"'
            body: dict[str, Any] = {"message": message or HTTP_MESSAGES.get(status_code, responses.get(
                status_code, "Error"))}
        elif error is not None:
            status_code, body = status_and_body(error)
            headers = dict(getattr(error, "headers", None) or {})
            self.set_status(status_code)
        else:
            body = {"message": HTTP_MESSAGES.get(status_code, responses.get(status_code, "Error"))}
        if status_code == 405:
            headers.setdefault("Allow", ", ".join(self.allowed_methods()))
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(json.dumps(body))


class NotFoundHandler(NbflowHandler):
    """Every other path under nbflow/api: a JSON 404 (401 without the token), never Jupyter's
    HTML page or a login redirect."""

    def check_method(self) -> None:
        """Any method: the path is unknown whatever the method."""

    def check_xsrf_cookie(self) -> None:
        """Nothing runs here, so there is nothing to protect; a 404 is the answer."""

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        path = self.request.path.split("/nbflow/api", 1)[-1].strip("/")
        first, _, rest = path.partition("/")
        if first != "webhooks" and self.current_user is None:  # webhooks are public: no token to ask for
            raise web.HTTPError(403)  # answered 401 (write_error)
        raise _Abort(not_found(_unknown_path(first, rest.split("/")[0], path)))

    # Never reached (prepare answers); marked so that Jupyter leaves the token check to prepare.
    get = post = put = patch = delete = head = allow_unauthenticated(lambda self, *args: None)


_RUN_ID = re.compile(r"^[0-9a-fA-F]{4,64}$")


def _unknown_path(first: str, second: str, path: str) -> str:
    """What is wrong with a path no route matched, in the words of the route it resembles."""
    if first == "flow_runs" and second and not _RUN_ID.match(second):
        return (f"No flow run with id {second!r}: a flow run id is 4 to 64 hex digits (or a unique prefix "
                "of at least 4).")
    if first in ("webhooks", "work_pools", "workers") and second and not re.match(bodies.SLUG_PATTERN, second):
        return (f"No {first[:-1].replace('_', ' ')} named {second!r}: names are 1-64 letters, digits, '_' or '-', "
                "starting with a letter or digit.")
    return f"No route nbflow/api/{path}; GET nbflow/api/openapi.json lists the routes."


class HealthHandler(NbflowHandler):
    @allow_unauthenticated
    @api(threads=None)
    def get(self) -> dict:
        return {"status": "ok", "version": __version__}


class FlowsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self) -> list:
        return runs_api.list_flows(self.store)


class FlowRunsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self) -> list:
        return runs_api.list_flow_runs(self.store, self.arguments())


class FlowRunHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> dict:
        return runs_api.get_flow_run(self.store, run_id)


class TaskRunsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> list:
        return runs_api.list_task_runs(self.store, run_id, self.arguments())


class LogsHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> list:
        return runs_api.list_logs(self.store, run_id, self.arguments())


class EventsHandler(NbflowHandler):
    """Batched run events from kernels, notebooks and workers in server mode."""

    @web.authenticated
    @api
    def post(self) -> dict:
        body = self.json_body(check=False)  # checked here: a row-by-row schema walk costs too much per batch
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object of tables: {\"flow_runs\": [[...], ...], ...}.")
        unknown = sorted(set(body) - set(TABLES))
        if unknown:
            raise bad_request(f"Unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}.", unknown[0])
        batch = Batch()
        for table, rows in body.items():
            width = len(TABLES[table])
            oldest = width - len(TASK_RUN_COLUMNS_ADDED) if table == "task_runs" else width
            if not isinstance(rows, list) or any(not isinstance(r, list) or not oldest <= len(r) <= width
                                                 for r in rows):
                raise bad_request(f"Every row of {table} must be a list of {width} values "
                                  f"({', '.join(TABLES[table])}).", table)
            nested = _first_nested(rows)
            if nested is not None:  # no column holds one; the store would choke on it (its key dedup, repr)
                row, column = nested
                raise ApiError(422, f"Row {row} of {table} holds {type(rows[row][column]).__name__} in "
                                    f"{TABLES[table][column]}; run events hold text, numbers, true/false or null.",
                               field=f"{table}.{TABLES[table][column]}")
            setattr(batch, table, [tuple(r) for r in rows])
        self.store.write(batch)
        return {"written": len(batch)}


def _first_nested(rows: list[list]) -> tuple[int, int] | None:
    """(row, column) of the first value that is not text, a number, a boolean or null; a plain loop:
    this runs over every value of every batch."""
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if type(value) not in _SCALARS:
                return i, j
    return None


class SqlHandler(NbflowHandler):
    """Read-only SQL over the run store for clients in server mode (nbflow.sql, %nbflow sql).

    The query sees the store's tables only (no file access), runs on a thread of its own and
    is interrupted past NBFLOW_QUERY_TIMEOUT (408).
    """

    @web.authenticated
    @api(threads=_SQL_THREADS)
    def post(self) -> Reply:
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str) or not body["sql"].strip():
            raise bad_request("The body must be {\"sql\": \"select ...\", \"params\": [...]}.", "sql")
        _check_read_only(body["sql"])
        params = body.get("params") or []
        if not isinstance(params, list):
            raise bad_request("params must be a list of values for the query's ? placeholders.", "params")
        try:
            table = self.store.query_arrow(body["sql"], params)
        except NbflowError:
            raise
        except Exception as exc:  # DuckDB's own error for the user's SQL: bad input, not ours
            raise bad_request(f"The query failed: {exc}", "sql") from None
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return Reply(sink.getvalue().to_pybytes(), ARROW_STREAM)


_parser_lock = threading.Lock()
_parser: Any = None


def _check_read_only(sql: str) -> None:
    """The SQL route reads: one SELECT (or EXPLAIN) statement, nothing that writes or attaches."""
    global _parser
    import duckdb

    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(":memory:")
        try:
            statements = _parser.extract_statements(sql)
        except duckdb.Error as exc:
            raise bad_request(f"The query does not parse: {exc}", "sql") from None
    kinds = [s.type.name for s in statements]
    if len(kinds) != 1 or kinds[0] not in ("SELECT", "EXPLAIN"):
        raise bad_request(f"The SQL route runs one read-only SELECT statement; got {', '.join(kinds) or 'none'}. "
                          "Change runs through the API's other routes.", "sql")
