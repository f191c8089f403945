"""Exceptions nbflow raises on purpose: each says what happened and how to fix it."""

from __future__ import annotations


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
    """A flow was called with parameters that do not match its signature or type hints."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


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


class PausedRunError(NbflowError):
    """The run is paused: its result is not available (Prefect's PausedRun)."""


class CrashedRunError(NbflowError):
    """The run's process or infrastructure broke (not the user's code)."""


class UpstreamFailedError(NbflowError):
    """A task could not start because a future it waits for did not complete."""
