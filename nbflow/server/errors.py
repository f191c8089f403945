"""The one place that turns exceptions into HTTP status codes and JSON error bodies."""

from __future__ import annotations

from nbflow.deployments.definitions import DeploymentError, UnknownDeploymentError
from nbflow.deployments.notebook_params import NotebookParameterError
from nbflow.deployments.schedules import ScheduleError
from nbflow.errors import (
    NbflowError, ParameterTypeError, QueryTimeoutError, StoreBatchError, StoreError, UnknownRunError,
)
from nbflow.store.debug_files import DebugDataError
from nbflow.store.debug_uploads import DebugUploadError


class ApiError(NbflowError):
    """An error a handler raises on purpose, with its status code and the field it concerns."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        #: response headers that go with the error (Retry-After on a 429, Allow on a 405).
        self.headers = headers or {}


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field=field)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def too_large(limit: int, route: str) -> ApiError:
    """A body over the route's limit: 413, naming the route and the limit."""
    return ApiError(413, f"The request body is larger than {route} takes: at most {_size(limit)} ({limit} bytes). "
                         "Send less.")


def too_many(message: str, retry_after: int) -> ApiError:
    """429 with Retry-After (whole seconds, at least 1)."""
    return ApiError(429, message, headers={"Retry-After": str(max(1, retry_after))})


def method_not_allowed(method: str, allowed: tuple[str, ...]) -> ApiError:
    """405 with Allow listing the methods the path takes."""
    listed = ", ".join(allowed)
    return ApiError(405, f"This path does not take {method}; it takes {listed}.", headers={"Allow": listed})


def _size(limit: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= scale and limit % scale == 0:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


#: what a status means when tornado or Jupyter raised it without a message of ours.
HTTP_MESSAGES = {
    400: "The request is malformed.",
    401: "This route needs the server's token: send the header `Authorization: token <token>` "
         "(the token `nbflow server start` printed, or NBFLOW_API_TOKEN).",
    403: "Forbidden: the server does not serve this Host, or a browser session sent no XSRF token.",
    404: "No such route under nbflow/api; GET nbflow/api/openapi.json lists them.",
    405: "This path does not take that method.",
}


#: exception type -> status, most specific first; anything else is a 500 (a bug of ours).
STATUS_FOR: tuple[tuple[type[BaseException], int], ...] = (
    (ApiError, 0),  # carries its own status
    (DeploymentError, 0),  # carries its own status (422, or 409 for a conflict)
    (DebugUploadError, 0),  # carries its own status
    (UnknownRunError, 404),
    (DebugDataError, 404),
    (UnknownDeploymentError, 404),
    (ScheduleError, 422),
    (ParameterTypeError, 422),
    (NotebookParameterError, 422),
    (StoreBatchError, 422),
    (QueryTimeoutError, 408),
    (StoreError, 503),
)


def status_and_body(exc: BaseException) -> tuple[int, dict]:
    """The response for an exception: (status, {"message", "field"?})."""
    for kind, status in STATUS_FOR:
        if isinstance(exc, kind):
            if status == 0:
                status = exc.status
            body: dict = {"message": str(exc)}
            field = getattr(exc, "field", None) or getattr(exc, "parameter", None)
            if isinstance(exc, QueryTimeoutError):
                field = "sql"
            if field:
                body["field"] = field
            if getattr(exc, "parameter", None) and field != exc.parameter:
                body["parameter"] = exc.parameter
            return status, body
    return 500, {"message": f"Internal error ({type(exc).__name__}); see the server log."}
