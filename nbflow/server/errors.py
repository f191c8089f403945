"""The one place that turns exceptions into HTTP status codes and JSON error bodies."""

from __future__ import annotations

from nbflow.deployments.definitions import DeploymentError, UnknownDeploymentError
from nbflow.deployments.notebook_params import NotebookParameterError
from nbflow.deployments.schedules import ScheduleError
from nbflow.errors import (
    NbflowError, ParameterTypeError, QueryTimeoutError, StoreBatchError, StoreError, UnknownRunError,
)


class ApiError(NbflowError):
    """An error a handler raises on purpose, with its status code and the field it concerns."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, field=field)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


#: exception type -> status, most specific first; anything else is a 500 (a bug of ours).
STATUS_FOR: tuple[tuple[type[BaseException], int], ...] = (
    (ApiError, 0),  # carries its own status
    (DeploymentError, 0),  # carries its own status (422, or 409 for a conflict)
    (UnknownRunError, 404),
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
