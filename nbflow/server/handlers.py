"""Thin request handlers: parse, call the layer below, answer JSON. Errors map in `errors.py`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from nbflow._version import __version__
from nbflow.errors import NbflowError
from nbflow.server import runs_api
from nbflow.server.errors import bad_request, status_and_body
from nbflow.store.records import TABLES, Batch

ARROW_STREAM = "application/vnd.apache.arrow.stream"


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


def api(method: Callable | None = None, *, threads: ThreadPoolExecutor = _STORE_THREADS) -> Callable:
    """Run the handler method off the event loop and answer its return value as JSON (or a
    Reply); map any exception to its status in one place."""
    if method is None:
        return functools.partial(api, threads=threads)

    @functools.wraps(method)
    async def wrapper(self: "NbflowHandler", *args: Any, **kwargs: Any) -> None:
        try:
            if inspect.iscoroutinefunction(method):
                result = await method(self, *args, **kwargs)
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


class NbflowHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every nbflow API handler."""

    @property
    def store(self) -> Any:
        return self.settings["nbflow_store"]

    def arguments(self) -> dict[str, str]:
        return {k: self.get_argument(k) for k in self.request.arguments}

    def json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None

    def json_object(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON body as an object with only `allowed` keys and every `required` one (an empty body: {})."""
        body = self.json_body() if self.request.body else {}
        if not isinstance(body, dict):
            raise bad_request(f"The body must be a JSON object with the fields {', '.join(allowed)}.")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise bad_request(f"Unknown field(s) {', '.join(unknown)}; this route takes {', '.join(allowed)}.",
                              unknown[0])
        for name in required:
            if body.get(name) in (None, ""):
                raise bad_request(f"{name} is required.", name)
        return body


class HealthHandler(NbflowHandler):
    @allow_unauthenticated
    @api
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
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object of tables: {\"flow_runs\": [[...], ...], ...}.")
        unknown = sorted(set(body) - set(TABLES))
        if unknown:
            raise bad_request(f"Unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}.", unknown[0])
        batch = Batch()
        for table, rows in body.items():
            width = len(TABLES[table])
            if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != width for r in rows):
                raise bad_request(f"Every row of {table} must be a list of {width} values "
                                  f"({', '.join(TABLES[table])}).", table)
            setattr(batch, table, [tuple(r) for r in rows])
        self.store.write(batch)
        return {"written": len(batch)}


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
