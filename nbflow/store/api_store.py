"""The store seen through a running nbflow server's API (server mode).

Run events go in batches to `POST nbflow/api/events`; queries go to `POST
nbflow/api/sql` and come back as Arrow, so DataFrames keep their types. Result
bytes never travel this way: cached results are files under NBFLOW_HOME that the
client reads directly (a failed run's debug data may: nbflow/store/debug_sync.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from nbflow import settings
from nbflow.errors import QueryTimeoutError, StoreBatchError, StoreError
from nbflow.store.records import TABLES, Batch
from nbflow.store.shutdown import stopping

if TYPE_CHECKING:
    import pandas

ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: the largest body `POST nbflow/api/events` takes; the server answers 413 above it.
EVENTS_BODY_LIMIT = 16 * 1024 * 1024
#: write() sends a batch in requests of at most this many bytes (after an outage a batch can be large).
EVENTS_REQUEST_TARGET = 4 * 1024 * 1024
#: longest wait for one answer; a retry never waits past the store's lock_timeout either.
REQUEST_TIMEOUT_S = 30.0
#: shortest wait for one answer, so that the last try near the deadline can still succeed.
MIN_REQUEST_TIMEOUT_S = 0.5


class ApiStore:
    """Writes and reads run records through the server at `url` with `token`."""

    def __init__(self, url: str, token: str, lock_timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token
        #: seconds to keep retrying while the server does not answer (a stopped server's socket
        #: accepts but never answers: each try waits at most what is left of this).
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"ApiStore({self.url!r})"

    def write(self, batch: Batch) -> None:
        """Send the batch to the server, in several requests if it is large (each is written in its own
        transaction; the store's writes are idempotent, so a batch sent again after a failure is safe)."""
        for body in event_bodies(batch):
            self._request("POST", "nbflow/api/events", body)

    def query(self, sql: str, params: list | None = None) -> "pandas.DataFrame":
        import pyarrow as pa

        raw = self._request("POST", "nbflow/api/sql", json.dumps({"sql": sql, "params": params or []}).encode(),
                            accept=ARROW_STREAM)
        return pa.ipc.open_stream(raw).read_all().to_pandas()

    def reset(self) -> None:
        raise StoreError(f"The nbflow server at {self.url} owns the store; stop it before resetting the database.")

    def request(self, method: str, path: str, body: bytes | None = None, *,
                content_type: str = "application/json", accept: str = "application/json") -> bytes:
        """The body of the server's answer to `method nbflow/api/<path>`, retried while the server does not
        answer; a refusal raises StoreError (StoreBatchError for a bad body) with its HTTP `status`."""
        return self._request(method, "nbflow/api/" + path, body, accept, content_type)

    def _request(self, method: str, path: str, body: bytes | None, accept: str = "application/json",
                 content_type: str = "application/json") -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": content_type, "Accept": accept})
        # The server interrupts a query at its time limit and says so (408): wait longer than that.
        patience = settings.query_timeout() if path.endswith("/sql") else 0.0
        deadline = time.monotonic() + self.lock_timeout + patience
        delay = 0.05
        while True:
            wait = min(REQUEST_TIMEOUT_S + patience, max(deadline - time.monotonic(), MIN_REQUEST_TIMEOUT_S))
            try:
                with urllib.request.urlopen(request, timeout=wait) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code == 408:
                    raise QueryTimeoutError(f"The nbflow server stopped the query: {message}") from None
                if exc.code in (400, 413, 422):
                    raise _status(StoreBatchError(f"The nbflow server refused the request: {message}"), exc.code)
                if exc.code in (401, 403):
                    raise _status(StoreError(f"The nbflow server at {self.url} refused the token ({exc.code}): "
                                             f"{message}. Check NBFLOW_API_TOKEN."), exc.code)
                if exc.code < 500 or exc.code == 507 or time.monotonic() > deadline:  # 507: its disk is full
                    raise _status(StoreError(f"The nbflow server at {self.url} answered {exc.code}: {message}"),
                                  exc.code)
            except (urllib.error.URLError, OSError) as exc:
                # At exit, a server that refuses connections has stopped (Jupyter stops serving
                # before it shuts its kernels down): spool at once rather than wait to be killed.
                if time.monotonic() > deadline or (stopping.is_set() and _refused(exc)):
                    raise StoreError(
                        f"The nbflow server at {self.url} did not answer for {self.lock_timeout:g} s ({exc}): "
                        "it is stopped, busy or out of reach. If it is not running, start it again "
                        "(nbflow server start), or unset NBFLOW_API_URL to use the embedded store.") from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 1.0)


def _status(error: StoreError, status: int) -> StoreError:
    """The error, marked with the HTTP status that caused it (raised without the HTTPError as context)."""
    error.status = status  # type: ignore[attr-defined]
    error.__suppress_context__ = True
    return error


def _refused(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "reason", exc), ConnectionRefusedError)


def event_bodies(batch: Batch, target: int = EVENTS_REQUEST_TARGET) -> list[bytes]:
    """The batch as `POST events` bodies of at most `target` bytes each (one body when it fits), rows
    kept in order; a row that alone is over EVENTS_BODY_LIMIT raises StoreBatchError."""
    tables = {name: [list(row) for row in getattr(batch, name)] for name in TABLES if getattr(batch, name)}
    bodies: list[bytes] = []
    todo = [tables]
    while todo:
        part = todo.pop()
        body = json.dumps(part, default=str).encode()
        if len(body) <= target:
            bodies.append(body)
            continue
        rows = [(name, row) for name, table in part.items() for row in table]
        if len(rows) == 1 and len(body) <= EVENTS_BODY_LIMIT:
            bodies.append(body)
        elif len(rows) == 1:
            name, row = rows[0]
            raise StoreBatchError(f"A {name} row is {len(body)} bytes as JSON, over the {EVENTS_BODY_LIMIT} bytes "
                                  f"the nbflow server takes in one request (id {row[0]!r}); make it smaller "
                                  "(e.g. log less text in one message).")
        else:
            middle = len(rows) // 2
            todo += [_tables(rows[middle:]), _tables(rows[:middle])]  # popped first half first
    return bodies


def _tables(rows: list[tuple[str, list]]) -> dict[str, list[list]]:
    grouped: dict[str, list[list]] = {}
    for name, row in rows:
        grouped.setdefault(name, []).append(row)
    return grouped


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("message", exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)
