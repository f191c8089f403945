"""The run-event buffer: the engine appends, a background writer flushes in batches.

Recording a state change is a few list appends; no task ever waits on the
database. One writer thread per process wakes every `settings.flush_interval()`
seconds (or sooner when the buffer grows), turns the runs that changed into rows
and writes them in one transaction. At interpreter exit the rest is flushed.

A batch the store could not take yet (locked, disk full, damaged file, server away) stays
pending and is retried with the next one; when the store stays out of reach (SPOOL_AFTER_S)
and at exit (after settings.exit_flush_seconds()) it is spooled to ``<NBFLOW_HOME>/spool/``
and sent later, by this or any other process (see spool.py). A batch the store refuses for
what it holds (StoreBatchError: a malformed row) or that hits a bug would fail forever and
hold back every later record, so it is quarantined instead: written as JSON to
``<NBFLOW_HOME>/quarantine/`` and dropped.

A flow run is visible even when its process is killed before the first flush: its start is
noted in the process's start log (started.py), which the writer touches every HEARTBEAT_S so
that a crash is dated; the line is forgotten once the run is stored.
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
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from nbflow import settings
from nbflow.errors import StoreBatchError, StoreError
from nbflow.store import records, spool, started
from nbflow.store.shutdown import stopping
from nbflow.store.records import Batch

logger = logging.getLogger("nbflow.store")

#: rows buffered before the writer is woken early instead of at its next tick.
EARLY_FLUSH_ROWS = 20_000
#: how often the writer says the process is alive (touches its start log under NBFLOW_HOME).
HEARTBEAT_S = 2.0
#: how long a batch may keep failing before the writer spools it to a file.
SPOOL_AFTER_S = 5.0
#: how often a writer looks for spooled batches to send (one directory listing).
SPOOL_SCAN_S = 5.0

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
        self._in_flight: Batch | None = None  # being written now (for a spool at exit)
        self._failing_since: float | None = None  # time.monotonic() of the first failed try
        self._next_spool_scan = 0.0
        #: this process's start log (see started.py) with its pid, home and process start.
        self._start_log: tuple[started.StartLog, int, Path, float] | None = None
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        #: set at interpreter exit: the writer thread stops touching the store (see _stop_writer).
        self._exiting = False
        self._listeners: list[Callable[[str, Any], None]] = []

    # -- hot path ---------------------------------------------------------------------------

    def flow_run_state(self, run: Any) -> None:
        """Record that a flow run entered `run.state`."""
        state = run.state
        self._flow_runs.append(run)
        self._states.append((run.id, len(run.history), "flow", state.name, state.type.value,
                             state.message, state.timestamp))
        if len(run.history) == 1:
            self._mark_started(run)
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

    def _mark_started(self, run: Any) -> None:
        """Note the run's start in this process's start log, so that a kill before the first
        flush still leaves a Crashed run: one append (~10 µs), no database, import or thread."""
        try:
            log, pid, process_start = self._log()
            row = _flow_run_row(run, time.time(), pid, process_start)
            log.add(run.id, dict(zip(records.FLOW_RUN_COLUMNS, row)))
        except OSError as exc:  # e.g. a read-only home: the run itself must go on
            logger.debug("nbflow could not note the start of flow run %s: %s", run.id, exc)

    def _log(self) -> tuple[started.StartLog, int, float]:
        """This process's start log under the NBFLOW_HOME in force, its pid and start time."""
        pid, home = os.getpid(), settings.home()
        current = self._start_log
        if current is not None and current[1] == pid and current[2] == home:
            return current[0], pid, current[3]
        if current is not None and current[1] == pid:
            current[0].close()  # NBFLOW_HOME changed
        process_start = (self._process_start if pid == self._pid else None) or _process_start() or 0.0
        log = started.StartLog(started.log_path(home, _HOST, pid, process_start))
        self._start_log = (log, pid, home, process_start)
        return log, pid, process_start

    def _heartbeat(self) -> None:
        """Tell sweepers this process is alive now (dates a crash, see started.py)."""
        try:
            self._log()[0].touch()
        except OSError:
            pass

    def _saved(self, batch: Batch) -> None:
        """The flow runs of `batch` are in the store (or a spool file): forget their starts."""
        current = self._start_log
        if current is not None and batch.flow_runs:
            current[0].saved([row[0] for row in batch.flow_runs])

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
        next_heartbeat = 0.0
        while not self._exiting:
            now = time.monotonic()
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + HEARTBEAT_S
            self._wake.wait(min(settings.flush_interval(), HEARTBEAT_S))
            self._wake.clear()
            if self._exiting:
                return
            try:
                self.flush()
                continue
            except StoreError as exc:
                message = str(exc)
                if message != self._last_error:
                    logger.warning("nbflow could not save run records yet (will retry): %s", message)
                    self._last_error = message
            except Exception as exc:  # never let the writer die: the next tick retries
                logger.exception("nbflow's run-record writer failed; it will retry")
                message = f"{type(exc).__name__}: {exc}"
            failing = self._failing_since
            if failing is not None and time.monotonic() - failing >= SPOOL_AFTER_S:
                self.spool_pending(message)

    def spool_pending(self, reason: str) -> Path | None:
        """Move the rows that could not be written to a spool file, to be sent later; its path.

        For a store that stays out of reach: the rows leave memory and survive the process.
        """
        with self._flush_lock:
            batch = self._pending
            if not len(batch):
                return None
            try:
                path = spool.save_batch(batch, spool.SPOOL, reason)
            except OSError as exc:
                logger.error("nbflow could not spool %d unsaved run records to %s: %s; keeping them "
                             "in memory", len(batch), settings.home() / spool.SPOOL, exc)
                return None
            self._pending = Batch()
            self._failing_since = None
            self._saved(batch)
        logger.warning("nbflow saved %d run records it could not send to %s; they are sent when the "
                       "store can be reached again (%s)", len(batch), path, reason)
        return path

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
        replay = write is None and self._write is None
        write = write or self._write or _default_write
        with self._flush_lock:
            if self._exiting and threading.current_thread() is self._thread:
                return 0  # at exit the main thread writes what is left (see _stop_writer)
            written = self._flush_locked(write)
            if replay:
                self._replay_spool(write)
            return written

    def _flush_locked(self, write: Callable[[Batch], None]) -> int:
        """flush() once this thread holds the flush lock."""
        fresh = self.drain()
        earlier, self._pending = self._pending, Batch()
        batch = Batch()
        batch.extend(earlier)
        batch.extend(fresh)
        if not len(batch):
            return 0
        attempt = time.monotonic()
        self._in_flight = batch
        try:
            try:
                write(batch)
            except BaseException as exc:
                if not _refused(exc):
                    self._pending = batch
                    if self._failing_since is None:
                        self._failing_since = attempt
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
                        self._saved(part)
                return written
            self._last_error = None
            self._failing_since = None
            self._saved(batch)
            return len(batch)
        finally:
            self._in_flight = None

    def send_spooled(self) -> None:
        """Flush, then send the spooled batches now (before a read, so that it sees them)."""
        self._next_spool_scan = 0.0
        self.flush()

    def _replay_spool(self, write: Callable[[Batch], None]) -> None:
        """Send spooled batches (this process's or others'), looking at most every SPOOL_SCAN_S."""
        now = time.monotonic()
        if now < self._next_spool_scan or self._pending:
            return
        self._next_spool_scan = now + SPOOL_SCAN_S
        if not spool.pending():
            return
        try:
            sent = spool.replay(write)
        except StoreError as exc:  # the store went away again: the files wait for the next try
            if str(exc) != self._last_error:  # said once; a read that follows meets the same error
                logger.debug("nbflow could not send spooled run records yet (will retry): %s", exc)
        except Exception:  # noqa: BLE001 - a bug must not stop this process's own writes
            logger.exception("nbflow could not send spooled run records (will retry)")
        else:
            if sent:
                logger.info("nbflow sent %d spooled run records", sent)

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

    def _stop_writer(self, timeout: float) -> None:
        """Stop the writer thread and wait until it has left the store code.

        It is a daemon thread. Were it inside DuckDB when the interpreter finalizes (in a call,
        or freeing a connection that a failed write's traceback still holds), DuckDB would give
        up the GIL, CPython would end the thread with a forced unwind through DuckDB's C++
        frames, and the process would abort ("terminate called without an active exception").
        A write to a store that keeps failing (damaged, locked) made that happen in about half
        the runs. Waiting for it costs at most the write under way, as the flush lock did.
        """
        self._exiting = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def flush_quietly(self) -> None:
        """Flush, logging instead of raising on failure (used when switching homes)."""
        try:
            self.flush()
        except StoreError as exc:
            logger.warning("nbflow could not save run records: %s", exc)

    def at_exit(self) -> None:
        """Stop the writer thread, then flush what is left, waiting at most
        settings.exit_flush_seconds() for the store; spool what it cannot take (stderr says where)."""
        if os.getpid() != self._pid:
            return
        budget = settings.exit_flush_seconds()
        deadline = time.monotonic() + budget
        self._stop_writer(budget)
        if not self._flush_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            # The writer thread is stuck on an unreachable store: spool what it is writing and
            # what is left (should its write still succeed, the rows are written twice: harmless).
            batch = Batch()
            in_flight = self._in_flight
            if in_flight is not None:
                batch.extend(in_flight)
            batch.extend(self._pending)
            batch.extend(self.drain())
            self._spool_at_exit(batch, f"the store did not answer within {budget:g} s")
        else:
            try:
                write = self._write or (lambda batch: _default_write(batch, max(deadline - time.monotonic(), 0.5)))
                try:
                    self._flush_locked(write)
                except Exception as exc:  # the process is ending: spool and report, do not raise
                    batch, self._pending = self._pending, Batch()
                    self._spool_at_exit(batch, str(exc))
            finally:
                self._flush_lock.release()
        current = self._start_log
        if current is not None and current[1] == os.getpid():
            current[0].close()  # kept while a run is only known by its start line

    def _spool_at_exit(self, batch: Batch, reason: str) -> None:
        if not len(batch):
            return
        try:
            path = spool.save_batch(batch, spool.SPOOL, reason)
        except OSError as exc:
            print(f"nbflow: {len(batch)} run records could not be saved ({reason}), nor kept in "
                  f"{settings.home() / spool.SPOOL}: {exc}", file=sys.stderr)
            return
        self._saved(batch)
        print(f"nbflow: could not save {len(batch)} run records before exit ({reason}); they are kept "
              f"in {path} and will be sent by the nbflow server, or by the next process that writes "
              f"to the store.", file=sys.stderr)


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


def quarantine(batch: Batch, exc: BaseException) -> Path:
    """Write a refused batch as JSON to <NBFLOW_HOME>/quarantine/<UTC timestamp>-<pid>.json.

    The file holds the error and, per table, its columns and rows (values that are not JSON
    are written with str()); load_quarantined() reads it back. Returns the file's path.
    """
    return spool.save_batch(batch, spool.QUARANTINE, f"{type(exc).__name__}: {exc}")


def load_quarantined(path: Any) -> Batch:
    """The batch in a quarantine file, its rows in the current records column order (columns
    the file lacks are None). Fix the rows, then e.g. ``current_store().write(batch)``."""
    return spool.load_batch(path)


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
            r.created, now, r.name)


def _default_write(batch: Batch, timeout: float | None = None) -> None:
    from nbflow.store import backend

    backend.write(batch, timeout)


#: The process-wide recorder the engine writes to.
recorder = Recorder()
# Flush at the start of interpreter shutdown, while imports still work (pandas/pyarrow may
# load for the first time here); concurrent.futures uses the same hook.
_register = getattr(threading, "_register_atexit", atexit.register)


def _at_exit() -> None:
    stopping.set()  # other threads' waits for a locked store give up at once (EmbeddedStore._open_with_retry)
    recorder.at_exit()


_register(_at_exit)
