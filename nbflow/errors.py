"""Exceptions nbflow raises on purpose: each says what happened and how to fix it."""

from __future__ import annotations

import inspect
from typing import Any, Callable


class NbflowError(Exception):
    """Base class of every error nbflow raises on purpose."""


class TaskDefinitionError(NbflowError, ValueError, TypeError):
    """A @task or @flow was declared with an invalid option (Prefect raises ValueError or TypeError)."""


class InvalidNameError(NbflowError, ValueError):
    """A flow's name holds a character Prefect bans in names (/ % & > <)."""


class MappingMissingIterable(NbflowError, TypeError):
    """`.map()` was called without any iterable argument to map over."""


class MappingLengthMismatch(NbflowError, ValueError):
    """`.map()` was called with iterables of different lengths."""


class ReservedArgumentError(NbflowError, TypeError):
    """A task's or flow's function uses a parameter name the call itself takes (wait_for, return_state)."""


class ParameterTypeError(NbflowError, TypeError):
    """A flow was called with parameter values that do not fit its type hints (pydantic said so)."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        #: the first parameter at fault
        self.parameter = parameter

    @classmethod
    def from_validation_error(cls, exc: Any) -> "ParameterTypeError":
        """Prefect's message for a pydantic ValidationError: one line per bad parameter."""
        errors = exc.errors()
        lines = []
        for err in errors:
            where = ".".join(str(part) for part in err["loc"])
            value = repr(err.get("input"))
            got = f" (got {type(err.get('input')).__name__} {value if len(value) <= 60 else value[:57] + '...'})"
            lines.append(f"{where}: {err['msg']}{got if err.get('type') != 'missing' else ''}")
        first = errors[0]["loc"][0] if errors and errors[0]["loc"] else None
        return cls("Flow run received invalid parameters:\n - " + "\n - ".join(lines),
                   parameter=str(first) if first is not None else None)


class ParameterBindError(NbflowError, TypeError):
    """A flow was called with arguments its signature cannot take (missing, unknown, too many)."""

    @classmethod
    def from_bind_failure(cls, fn: Callable[..., Any], exc: TypeError, call_args: tuple,
                          call_kwargs: dict[str, Any]) -> "ParameterBindError":
        """Prefect's message: what Python said, the function's signature and what it received."""
        name = getattr(fn, "__name__", type(fn).__name__)
        signature = ", ".join(_parameter_text(p) for p in inspect.signature(fn).parameters.values())
        return cls(f"Error binding parameters for function '{name}': {exc}.\nFunction '{name}' has signature "
                   f"'{signature}' but received args: {call_args} and kwargs: {list(call_kwargs)}.")


class ConfigurationError(NbflowError, ValueError):
    """Options that cannot work together (e.g. SERIALIZABLE caching without a lock manager)."""


class FingerprintError(NbflowError, TypeError):
    """A value cannot be fingerprinted, so no cache key can be computed from it."""


class SerializationError(NbflowError, TypeError):
    """A result cannot be serialized for persistence or caching."""


class ResultStorageError(NbflowError, OSError):
    """A result could not be written to result storage (disk full, permissions)."""


class ResultIntegrityError(NbflowError):
    """A stored result failed its signature or checksum check and was not loaded."""


class StoreError(NbflowError):
    """The run store could not be opened, read or written."""


class StoreLockedError(StoreError):
    """Another process held the store longer than the lock timeout."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class StoreHeldByServerError(StoreLockedError):
    """A running nbflow server holds the store's file: this process should use its API."""

    def __init__(self, message: str, *, pid: int, url: str, token: str) -> None:
        super().__init__(message, pid=pid)
        self.url = url
        #: the server's token (from its runtime file), for switching to its API; never shown.
        self.token = token


class StoreBatchError(StoreError):
    """The store refused a batch of run records because of the rows themselves (a malformed
    row, a value that does not fit its column): writing the same batch again would fail again.

    Every other StoreError is about the store (locked, disk full, damaged, too new) and a later
    retry of the same batch may succeed.
    """


class StoreCorruptedError(StoreError):
    """The store file or its write-ahead log is damaged, or the file is not a DuckDB database."""

    def __init__(self, message: str, *, path: str | None = None, wal: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        #: the damaged write-ahead log when only the log is damaged (the store file is fine).
        self.wal = wal
        #: DuckDB's own words about the damage.
        self.detail = detail


class SchemaVersionError(StoreError):
    """The store was written by a newer nbflow than this one."""


class QueryTimeoutError(NbflowError, TimeoutError):
    """A query over the run store ran past its time limit and was interrupted."""

    def __init__(self, message: str, *, limit: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class UnknownRunError(NbflowError, LookupError):
    """No flow run or task run has the given id."""


class MissingResultError(NbflowError):
    """A state has no result to return (it was not persisted, or the run did not complete)."""


class TimedOutError(NbflowError, TimeoutError):
    """A task or flow run exceeded its timeout_seconds."""


class CancelledRunError(NbflowError):
    """The run was cancelled."""


class FailedRunError(NbflowError):
    """The run failed and its state holds no exception of its own (Prefect's FailedRun)."""


class PausedRunError(NbflowError):
    """The run is paused: its result is not available (Prefect's PausedRun)."""


class CrashedRunError(NbflowError):
    """The run's process or infrastructure broke (not the user's code)."""


class UpstreamFailedError(NbflowError):
    """A task could not start because a future it waits for did not complete."""


def _parameter_text(param: inspect.Parameter) -> str:
    """`name: hint = default` as written (a string hint without quotes, as under `from __future__ import
    annotations`)."""
    text = str(param.replace(annotation=inspect.Parameter.empty, default=inspect.Parameter.empty))
    if param.annotation is not inspect.Parameter.empty:
        hint = param.annotation
        text += f": {hint if isinstance(hint, str) else inspect.formatannotation(hint)}"
    if param.default is not inspect.Parameter.empty:
        text += f" = {param.default!r}"
    return text


class MissingFlowError(NbflowError, LookupError):
    """An entrypoint names no flow: the file or module has no such name, or it is not a @flow."""


class ScriptError(NbflowError, RuntimeError):
    """Running a flow's file to load the flow raised; the original exception is the cause."""


class DeploymentRemovedError(NbflowError, ImportError):
    """Prefect 2's `Deployment` class was asked for: Prefect 3 removed it, and nbflow never had it."""


# Prefect's names for the same errors (prefect.exceptions), so `except FailedRun:` keeps working.
PrefectException = NbflowError
FailedRun = FailedRunError
CrashedRun = CrashedRunError
CancelledRun = CancelledRunError
PausedRun = PausedRunError
MissingResult = MissingResultError
UnfinishedRun = MissingResultError
UpstreamTaskError = UpstreamFailedError
