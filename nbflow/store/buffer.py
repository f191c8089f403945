"""The run-event buffer: the engine appends, a background writer flushes in batches.

Recording a state change is a few list appends; no task ever waits on the
database. One writer thread per process wakes every `settings.flush_interval()`
seconds (or sooner when the buffer grows), turns the runs that changed into rows
and writes them in one transaction. At interpreter exit the rest is flushed.

A batch the store could not take yet (locked, disk full, damaged file) stays pending and
is retried with the next one. A batch the store refuses for what it holds (StoreBatchError:
a malformed row) or that hits a bug would fail forever and hold back every later record, so
it is quarantined instead: written as JSON to ``<NBFLOW_HOME>/quarantine/`` and dropped.
"""

from __future__ import annotations

import atexit
# Imported now because the final flush at exit may load pandas/pyarrow for the first time, and
# they pull in concurrent.futures.thread, whose import refuses to run during shutdown.
import concurrent.futures.thread  # noqa: F401
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from nbflow import settings
from nbflow.errors import StoreBatchError, StoreError
from nbflow.store import records
from nbflow.store.records import Batch

logger = logging.getLogger("nbflow.store")

#: rows buffered before the writer is woken early instead of at its next tick.
EARLY_FLUSH_ROWS = 20_000

_HOST = socket.gethostname()


def _json_list(values: Any) -> str:
    """A list as JSON; most runs have no tags and no upstream, so skip the encoder for those."""
    return _json(list(values)) if values else "[]"


def _json(value: Any) -> str:
    return json.dumps(value, default=_describe, separators=(",", ":"))


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{type(value).__name__} shape={tuple(shape)}>"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _process_start() -> float | None:
    from nbflow.store.liveness import process_start_time

    return process_start_time(os.getpid())


class Recorder:
    """Collects run snapshots, state history and logs until the writer takes them."""

    def __init__(self, write: Callable[[Batch], None] | None = None) -> None:
        self._write = write
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._process_start: float | None = None
        self._flow_runs: list = []
        self._task_runs: list = []
        self._states: list[tuple] = []
        self._logs: list[tuple] = []
        self._cache: list[tuple] = []
        self._pending = Batch()  # drained but not yet written (the last write failed)
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._listeners: list[Callable[[str, Any], None]] = []

    # -- hot path ---------------------------------------------------------------------------

    def flow_run_state(self, run: Any) -> None:
        """Record that a flow run entered `run.state`."""
        state = run.state
        self._flow_runs.append(run)
        self._states.append((run.id, len(run.history), "flow", state.name, state.type.value,
                             state.message, state.timestamp))
        if self._thread is None:
            self._start()
        if self._listeners:
            self._notify("flow", run)

    def task_run_state(self, run: Any) -> None:
        """Record that a task run entered `run.state`."""
        state = run.state
        self._task_runs.append(run)
        states = self._states
        states.append((run.id, len(run.history), "task", state.name, state.type.value,
                       state.message, state.timestamp))
        if self._thread is None:
            self._start()
        elif len(states) > EARLY_FLUSH_ROWS and not self._wake.is_set():
            self._wake.set()
        if self._listeners:
            self._notify("task", run)

    def log(self, run: Any, flow_run_id: str | None, task_run_id: str | None, level: int,
            logger_name: str, message: str, timestamp: float) -> None:
        """Record one log line of a flow run (task_run_id None) or a task run."""
        run.log_seq += 1
        self._logs.append((run.id, run.log_seq, flow_run_id, task_run_id, level,
                           logging.getLevelName(level), logger_name, message, timestamp))
        if self._thread is None:
            self._start()

    def cache_entry(self, cache_key: str, task_name: str, task_run_id: str, result_format: str,
                    result_path: str, created: float, expires: float | None) -> None:
        """Mirror a cache index entry into the store so it can be queried with SQL."""
        self._cache.append((cache_key, task_name, task_run_id, result_format, result_path,
                            created, expires))

    def subscribe(self, listener: Callable[[str, Any], None]) -> Callable[[], None]:
        """Call `listener(kind, run)` ("flow" or "task") after every state change in this process.

        For live views (the notebook's run graph). Listeners run on the thread that changed
        the state, so they must be quick; returns a function that unsubscribes.
        """
        self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            self._listeners = [cb for cb in self._listeners if cb is not listener]

        return unsubscribe

    def _notify(self, kind: str, run: Any) -> None:
        for listener in self._listeners:
            try:
                listener(kind, run)
            except Exception:  # a broken view must not break the run
                logger.exception("A run listener failed; unsubscribing it")
                self._listeners = [cb for cb in self._listeners if cb is not listener]

    def flush_soon(self) -> None:
        """Ask the writer to flush now rather than at its next tick (does not wait)."""
        if self._thread is not None:
            self._wake.set()

    # -- writer -----------------------------------------------------------------------------

    def _start(self) -> None:
        if os.getpid() != self._pid:  # forked: the parent's rows and thread are not ours
            self._reset()
        with self._flush_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._loop, name="nbflow-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(settings.flush_interval())
            self._wake.clear()
            try:
                self.flush()
            except StoreError as exc:
                message = str(exc)
                if message != self._last_error:
                    logger.warning("nbflow could not save run records yet (will retry): %s", message)
                    self._last_error = message
            except Exception:  # never let the writer die: the next tick retries
                logger.exception("nbflow's run-record writer failed; it will retry")

    def drain(self) -> Batch:
        """Take everything buffered so far as rows (runs deduplicated, latest snapshot)."""
        if self._process_start is None:
            self._process_start = _process_start() or 0.0
        flow_runs, self._flow_runs = self._flow_runs, []
        task_runs, self._task_runs = self._task_runs, []
        states, self._states = self._states, []
        logs, self._logs = self._logs, []
        cache, self._cache = self._cache, []
        now = time.time()
        pid, start = self._pid, self._process_start
        batch = Batch(state_history=states, logs=logs, cache_entries=cache)
        batch.flow_runs = [_flow_run_row(r, now, pid, start) for r in {id(r): r for r in flow_runs}.values()]
        batch.task_runs = [_task_run_row(r, now) for r in {id(r): r for r in task_runs}.values()]
        return batch

    def flush(self, write: Callable[[Batch], None] | None = None) -> int:
        """Write everything buffered now; return how many rows were written.

        On a failure the store may get over (see _refused) keep the rows for the next try and
        raise. A batch the store refuses is quarantined (see quarantine()) and not raised.
        """
        write = write or self._write or _default_write
        with self._flush_lock:
            fresh = self.drain()
            earlier, self._pending = self._pending, Batch()
            batch = Batch()
            batch.extend(earlier)
            batch.extend(fresh)
            if not len(batch):
                return 0
            try:
                write(batch)
            except BaseException as exc:
                if not _refused(exc):
                    self._pending = batch
                    raise
                if not (len(earlier) and len(fresh)):
                    self._quarantine_or_keep(batch, exc)
                    return 0
                # Rows kept from a failed try and new rows: write them apart, so that the part
                # at fault is quarantined alone (a refused batch writes nothing).
                written = 0
                parts = [earlier, fresh]
                while parts:
                    part = parts.pop(0)
                    try:
                        write(part)
                    except BaseException as part_exc:
                        if not _refused(part_exc):
                            for later in parts:
                                part.extend(later)
                            self._pending = part
                            raise
                        self._quarantine_or_keep(part, part_exc, after=parts)
                    else:
                        written += len(part)
                return written
            self._last_error = None
            return len(batch)

    def _quarantine_or_keep(self, batch: Batch, exc: BaseException,
                            after: "list[Batch] | tuple" = ()) -> None:
        """Quarantine a refused batch; if even that fails keep it (and `after`) pending and raise."""
        try:
            path = quarantine(batch, exc)
        except OSError as save_exc:
            logger.error("nbflow could not quarantine %d refused run records (%s) in %s: %s; "
                         "keeping them in memory", len(batch), exc, settings.home(), save_exc)
            for later in after:
                batch.extend(later)
            self._pending = batch
            raise exc from None
        logger.error("nbflow could not save %d run records and moved them to %s: %s: %s. They "
                     "will not be retried; later records are saved as usual.",
                     len(batch), path, type(exc).__name__, exc)

    def flush_quietly(self) -> None:
        """Flush, logging instead of raising on failure (used when switching homes)."""
        try:
            self.flush()
        except StoreError as exc:
            logger.warning("nbflow could not save run records: %s", exc)

    def at_exit(self) -> None:
        """Flush what is left when the interpreter exits; say clearly if that fails."""
        if os.getpid() != self._pid:
            return
        try:
            self.flush()
        except Exception as exc:  # the process is ending: report, do not raise
            lost = len(self._pending)
            print(f"nbflow: {lost} run records could not be saved: {exc}", file=__import__("sys").stderr)


def _refused(exc: BaseException) -> bool:
    """True when writing the same batch again would fail again: quarantine it.

    The store says so with StoreBatchError. Every other StoreError (StoreLockedError, a full
    disk, permissions, a damaged or newer file) and any OSError (also as a cause) is about the
    store or the machine: the batch is kept and retried. Any other exception is a bug on the
    way to the store and counts as refused; KeyboardInterrupt, SystemExit and MemoryError never.
    """
    if isinstance(exc, StoreBatchError):
        return True
    if not isinstance(exc, Exception) or isinstance(exc, (StoreError, OSError, MemoryError)):
        return False
    cause = exc.__cause__ or exc.__context__
    seen = 0
    while cause is not None and seen < 20:
        if isinstance(cause, OSError):
            return False
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return True


def quarantine(batch: Batch, exc: BaseException) -> Any:
    """Write a refused batch as JSON to <NBFLOW_HOME>/quarantine/<UTC timestamp>-<pid>.json.

    The file holds the error and, per table, its columns and rows (values that are not JSON
    are written with str()); load_quarantined() reads it back. Returns the file's path.
    """
    now = time.time()
    directory = settings.home() / "quarantine"
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(int(now))) + f".{int(now * 1e6) % 1_000_000:06d}Z"
    payload = {
        "error": f"{type(exc).__name__}: {exc}", "time": now, "host": _HOST, "pid": os.getpid(),
        "tables": {name: {"columns": list(columns), "rows": getattr(batch, name)}
                   for name, columns in records.TABLES.items() if getattr(batch, name)},
    }
    text = json.dumps(payload, default=str)
    for attempt in range(100):
        path = directory / f"{stamp}-{os.getpid()}{f'-{attempt}' if attempt else ''}.json"
        try:
            f = open(path, "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            with f:
                f.write(text)
        except BaseException:  # e.g. the disk is full: leave no half a file behind
            path.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(f"no free quarantine file name for {stamp}-{os.getpid()} in {directory}")


def load_quarantined(path: Any) -> Batch:
    """The batch in a quarantine file, its rows in the current records column order (columns
    the file lacks are None). Fix the rows, then e.g. ``current_store().write(batch)``."""
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    batch = Batch()
    for name, table in payload["tables"].items():
        index = {c: i for i, c in enumerate(table["columns"])}
        getattr(batch, name).extend(
            tuple(row[index[c]] if c in index else None for c in records.TABLES[name])
            for row in table["rows"])
    return batch


def _flow_run_row(r: Any, now: float, pid: int, process_start: float) -> tuple:
    s = r.state
    duration = (r.end_time - r.start_time) if r.end_time and r.start_time else None
    return (r.id, r.flow_name, r.name, r.flow_version, s.name, s.type.value, s.message,
            _json(r.parameters), r.parent_flow_run_id, r.parent_task_run_id, r.deployment_id,
            _json_list(r.tags), r.run_count, r.scheduled_time, r.start_time, r.end_time, duration,
            _HOST, pid, process_start, r.created, now, r.output_notebook)


def _task_run_row(r: Any, now: float) -> tuple:
    s = r.state
    duration = (r.end_time - r.start_time) if r.end_time and r.start_time else None
    return (r.id, r.flow_run_id, r.task_name, r.task_key, r.dynamic_key, s.name, s.type.value,
            s.message, r.error, _json_list(r.upstream), _json_list(r.tags), r.run_count, r.cache_key,
            r.cache_expiration, r.result_format, r.result_path, r.start_time, r.end_time, duration,
            r.created, now)


def _default_write(batch: Batch) -> None:
    from nbflow.store import backend

    backend.write(batch)


#: The process-wide recorder the engine writes to.
recorder = Recorder()
# Flush at the start of interpreter shutdown, while imports still work (pandas/pyarrow may
# load for the first time here); concurrent.futures uses the same hook.
_register = getattr(threading, "_register_atexit", atexit.register)
_register(recorder.at_exit)
