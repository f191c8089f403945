"""The store seen through a running nbflow server's API (server mode).

Run events go in batches to `POST nbflow/api/events`; queries go to `POST
nbflow/api/sql` and come back as Arrow, so DataFrames keep their types. Result
bytes never travel this way: cached results are files under NBFLOW_HOME that the
client reads directly.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from nbflow.errors import StoreBatchError, StoreError
from nbflow.store.records import TABLES, Batch

if TYPE_CHECKING:
    import pandas

ARROW_STREAM = "application/vnd.apache.arrow.stream"
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
        body = {name: [list(row) for row in getattr(batch, name)] for name in TABLES if getattr(batch, name)}
        self._request("POST", "nbflow/api/events", json.dumps(body, default=str).encode())

    def query(self, sql: str, params: list | None = None) -> "pandas.DataFrame":
        import pyarrow as pa

        raw = self._request("POST", "nbflow/api/sql", json.dumps({"sql": sql, "params": params or []}).encode(),
                            accept=ARROW_STREAM)
        return pa.ipc.open_stream(raw).read_all().to_pandas()

    def reset(self) -> None:
        raise StoreError(f"The nbflow server at {self.url} owns the store; stop it before resetting the database.")

    def _request(self, method: str, path: str, body: bytes, accept: str = "application/json") -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers={
            "Authorization": f"token {self.token}", "Content-Type": "application/json", "Accept": accept})
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            wait = min(REQUEST_TIMEOUT_S, max(deadline - time.monotonic(), MIN_REQUEST_TIMEOUT_S))
            try:
                with urllib.request.urlopen(request, timeout=wait) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code in (400, 422):
                    raise StoreBatchError(f"The nbflow server refused the request: {message}") from None
                if exc.code in (401, 403):
                    raise StoreError(f"The nbflow server at {self.url} refused the token ({exc.code}): "
                                     f"{message}. Check NBFLOW_API_TOKEN.") from None
                if exc.code < 500 or time.monotonic() > deadline:
                    raise StoreError(f"The nbflow server at {self.url} answered {exc.code}: {message}") from None
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"The nbflow server at {self.url} did not answer for {self.lock_timeout:g} s ({exc}): "
                        "it is stopped, busy or out of reach. If it is not running, start it again "
                        "(nbflow server start), or unset NBFLOW_API_URL to use the embedded store.") from None
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 1.0)


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read()).get("message", exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)
