"""The embedded run store: a DuckDB file that processes take turns to open.

DuckDB lets one process at a time open a file, so every operation opens the file,
does its work in one transaction and closes it again, retrying with bounded
back-off while another process holds it. Every open also marks the runs of
processes that died on this host as Crashed.

The server holds the file instead (hold()): then every operation gets a cursor of its
own, writes take turns on a lock while reads never wait for them, SQL can read no file
but the store's own results, and a query that runs past its time limit is interrupted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import os
import random
import re
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from nbflow import settings
from nbflow.errors import (QueryTimeoutError, StoreBatchError, StoreCorruptedError, StoreError,
                           StoreHeldByServerError, StoreLockedError)
from nbflow.store import batch_rows, damage, records, schema, shutdown, spool, started
from nbflow.store.liveness import is_process_alive, process_command
from nbflow.store.query_limits import time_limit
from nbflow.store.server_info import RUNTIME_FILE, ServerInfo, advertised_server

if TYPE_CHECKING:
    import pandas

logger = logging.getLogger("nbflow.store")

#: a non-DuckDB file must not make DuckDB download an extension to read it. A new file is
#: created in storage format v1.4.0 with 64 KiB blocks: every write closes the file, and closing
#: checkpoints, which in that format costs far less (a small write into a store of 1,000 runs:
#: ~80 ms of CPU instead of ~140 ms with DuckDB's default v0.10.2 format and 256 KiB blocks; see
#: benchmarks/store_write.py). duckdb >= 1.4.0 reads and writes it (the pin is >= 1.4.4). Both
#: settings apply only when a file is created: an existing file keeps its format and blocks.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                 "storage_compatibility_version": "v1.4.0", "default_block_size": "65536"}

BACKOFF_START_S = 0.005
BACKOFF_CAP_S = 0.2
#: a file younger than this that DuckDB calls invalid may be half-created by another process.
NEW_FILE_S = 2.0
#: while the server holds the file, how often an operation also looks for runs of dead processes.
HELD_CRASH_CHECK_S = 2.0

_LOCK_CONFLICT = re.compile(r"Conflicting lock is held in (?P<program>.*?) \(PID (?P<pid>\d+)\)")
#: other wordings of "another process holds the file" (Windows, or a lock without a holder).
_LOCK_PHRASES = ("could not set lock on file", "being used by another process")
_HOST = socket.gethostname()

_START = records.FLOW_RUN_COLUMNS.index("start_time")
_CREATED = records.FLOW_RUN_COLUMNS.index("created")
#: command lines of nbflow servers (standalone, or the extension in a Jupyter server); not kernels.
_SERVER_COMMANDS = ("nbflow server", "jupyter-lab", "jupyter lab", "jupyterlab", "jupyter-server",
                    "jupyter server", "jupyter_server", "jupyter-notebook", "jupyter notebook")
#: DuckDB errors of a write that are not the batch's fault: retrying the same batch later may
#: work (with the disk, permission and corruption errors that _classify recognises).
_NOT_THE_BATCH = ("IOException", "OutOfMemoryException", "InterruptException",
                  "TransactionException", "FatalException", "ConnectionException")

_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()
#: (pid, process_start) of processes found dead; only "dead" is final, a live one may die later.
_dead_processes: set[tuple[int, float]] = set()


def _forget_locks() -> None:
    # A forked child must not inherit a lock that a thread of its parent held.
    global _path_locks_guard
    _path_locks.clear()
    _path_locks_guard = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def _lock_for(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _path_locks_guard:
        lock = _path_locks.get(key)
        if lock is None:
            lock = _path_locks[key] = threading.Lock()
        return lock


def _timestamp(epoch: float) -> dt.datetime:
    """Naive UTC datetime for a TIMESTAMP column."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).replace(tzinfo=None)


class EmbeddedStore:
    """Run records in a DuckDB file, opened per transaction and shared by turns between processes."""

    def __init__(self, path: Path, lock_timeout: float) -> None:
        self.path = Path(path)
        #: seconds to keep retrying while another process holds the file.
        self.lock_timeout = lock_timeout
        #: the connection kept open while this process owns the file (the server), else None.
        self._held: Any = None
        self._next_crash_check = 0.0
        #: while held: writing transactions take turns here; reads use cursors of their own.
        self._write_lock = threading.Lock()
        #: while held: the cursors in use, interrupted when the file is released.
        self._cursors: set[Any] = set()
        self._cursors_guard = threading.Lock()
        #: set by release(): an interrupted query was stopped by the closing store, not its limit.
        self._closing = False

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.path)!r}, lock_timeout={self.lock_timeout})"

    # -- public ---------------------------------------------------------------------------

    def write(self, batch: records.Batch) -> None:
        """Write every row of `batch` in one transaction: all of it is committed or none.

        Idempotent: runs and cache entries are upserted by id, history and logs are
        ignored when their (run_id, seq) is already stored, so a batch may be written twice.
        The tables have no keys or indexes (see schema.KEYS): the statements keep them unique.

        Raises StoreBatchError when the batch itself is refused (a malformed row, a value
        DuckDB cannot store): writing it again would fail again. Any other StoreError
        (StoreLockedError, a full disk, a damaged file) is about the store: retry later.
        """
        import duckdb

        tables = batch_rows.batch_to_arrow(batch)
        if not tables:
            return
        with self._connect() as con, self._transaction(con, "write run records to"):
            self._mark_crashed(con)
            try:
                for name, table in tables.items():
                    batch_rows.insert(con, name, table)
            except duckdb.Error as exc:
                raise self._batch_failure(exc) from exc

    def query(self, sql: str, params: list | None = None, *,
              timeout: float | None = None) -> "pandas.DataFrame":
        """Run one SQL statement (parameters bound, never formatted in) and return a DataFrame.

        A statement running longer than `timeout` seconds (default settings.query_timeout())
        is interrupted and QueryTimeoutError raised.
        """
        import pandas

        def fetch(con: Any) -> Any:
            return pandas.DataFrame() if con.description is None else con.df()

        return self._read(sql, params, timeout, fetch)

    def query_arrow(self, sql: str, params: list | None = None, *, timeout: float | None = None) -> Any:
        """As query(), as an Arrow table (what the server's SQL route sends)."""
        import pyarrow as pa

        def fetch(con: Any) -> Any:
            return pa.table({}) if con.description is None else con.fetch_arrow_table()

        return self._read(sql, params, timeout, fetch)

    def _read(self, sql: str, params: list | None, timeout: float | None, fetch: Any) -> Any:
        import duckdb

        limit = settings.query_timeout() if timeout is None else timeout
        with self._connect(write=False) as con:
            self._mark_crashed_before_read(con)
            with time_limit(con, limit) as expired:
                try:
                    con.execute(sql, params or [])
                    return fetch(con)
                except duckdb.Error as exc:
                    if expired.is_set() and isinstance(exc, duckdb.InterruptException):
                        raise QueryTimeoutError(
                            f"The query ran longer than the limit of {limit:g} s and was stopped. Narrow it "
                            f"(a WHERE on start_time, a LIMIT), or raise NBFLOW_QUERY_TIMEOUT "
                            f"(seconds; 0 for no limit).", limit=limit) from None
                    if self._closing and isinstance(exc, duckdb.InterruptException):
                        raise StoreError(f"The query over the run store {self.path} was interrupted "
                                         f"because the store is closing; run it again.") from None
                    translated = self._classify(exc)
                    if translated is None:
                        raise  # the SQL itself is wrong: DuckDB's message says how
                    raise translated from exc

    def _mark_crashed_before_read(self, con: Any) -> None:
        """Mark runs of dead processes Crashed before a read, so the reader sees them so."""
        if self._held is None:
            with self._transaction(con, "update crashed runs in"):
                self._mark_crashed(con)
        elif time.monotonic() >= self._next_crash_check:
            with self.transaction("update crashed runs in") as writer:
                self._mark_crashed(writer)

    @contextlib.contextmanager
    def transaction(self, doing: str = "update") -> Iterator[Any]:
        """A connection inside one transaction: committed when the block ends, rolled back if it raises.

        For the small deployment tables, changed row by row; run records go through write().
        """
        with self._connect() as con, self._transaction(con, doing):
            yield con

    def sweep(self) -> int:
        """Mark Crashed the runs of dead processes of this host now, also those started but never
        saved (from their start logs, see started.py); return how many flow runs. The server
        calls it every scheduler pass, for processes that send their runs over HTTP too."""
        with self._connect() as con, self._transaction(con, "update crashed runs in"):
            return self._mark_crashed(con, force=True)

    def hold(self, readable: tuple[Path, ...] = ()) -> None:
        """Keep the file open from now on: the server owns it, and skips ~20-35 ms of open and
        close per request. Other processes cannot open it until release().

        SQL over the held file reads no file but the store itself and those under the
        `readable` directories (DuckDB's external access is turned off): the server's SQL
        route must not read /etc/passwd or the server's token.
        """
        deadline = time.monotonic() + self.lock_timeout
        with self._thread_lock(deadline):
            if self._held is not None:
                return
            con = self._open_with_retry(deadline)
            try:
                schema.ensure(con, str(self.path))
                folders = [str(Path(p).absolute()).rstrip("/") + "/" for p in readable]
                con.execute("SET allowed_directories = ?", [folders])
                con.execute("SET enable_external_access = false")
            except BaseException:
                con.close()
                raise
            self._closing = False
            self._held = con

    def release(self, grace: float = 3.0) -> None:
        """Close the held connection (checkpointing the WAL), so other processes may open the file.

        Queries still running are interrupted; writes get `grace` seconds to finish.
        """
        with self._cursors_guard:
            con, self._held = self._held, None
            running = list(self._cursors)
        if con is None:
            return
        self._closing = True
        for cursor in running:
            with contextlib.suppress(Exception):
                cursor.interrupt()
        deadline = time.monotonic() + grace
        while self._cursors and time.monotonic() < deadline:
            time.sleep(0.01)
        with contextlib.suppress(Exception):
            con.close()

    def reset(self) -> None:
        """Delete the database file and its WAL (`nbflow server database reset`).

        Refuses while another process holds the file; a corrupt file is deleted all the same.
        """
        import duckdb

        deadline = time.monotonic() + self.lock_timeout
        with self._thread_lock(deadline):
            if self.path.exists():
                try:
                    con = self._open_with_retry(deadline)
                except StoreLockedError:
                    raise
                except StoreError:
                    pass  # corrupt or unreadable: deleting it is the point
                else:
                    with contextlib.suppress(duckdb.Error):
                        con.close()
            for p in (self.path, damage.wal_path(self.path)):
                p.unlink(missing_ok=True)
            damage.forget(self.path)

    # -- opening --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _thread_lock(self, deadline: float) -> Iterator[None]:
        """This process's turn: threads of one process queue here, not on the file lock."""
        with self._turn(_lock_for(self.path), deadline):
            yield

    @contextlib.contextmanager
    def _turn(self, lock: threading.Lock, deadline: float) -> Iterator[None]:
        if not lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise StoreLockedError(
                f"Another thread of this process (PID {os.getpid()}) held the run store "
                f"{self.path} for more than {self.lock_timeout:g} s; raise "
                f"NBFLOW_STORE_LOCK_TIMEOUT or look for a stuck query in this process.",
                pid=os.getpid(),
            )
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def _connect(self, write: bool = True) -> Iterator[Any]:
        """An open connection with the current schema, held only for the caller's block.

        While the file is held: a cursor of the held connection; `write` blocks take turns.
        """
        import duckdb

        deadline = time.monotonic() + self.lock_timeout
        if self._held is not None:
            with (self._turn(self._write_lock, deadline) if write else contextlib.nullcontext()):
                cursor = self._cursor()
                try:
                    yield cursor
                finally:
                    with self._cursors_guard:
                        self._cursors.discard(cursor)
                    with contextlib.suppress(Exception):
                        cursor.close()
            return
        with self._thread_lock(deadline):
            con = self._open_with_retry(deadline)
            try:
                try:
                    schema.ensure(con, str(self.path))
                except duckdb.Error as exc:  # the first query: a damaged file fails here
                    raise self._open_error(exc) from exc
                yield con
            except BaseException as exc:
                found = isinstance(exc, StoreCorruptedError) and exc.wal is None
                if found:  # later opens refuse the file, also where they would not meet the damage
                    damage.remember(self.path, exc)
                self._close(con, damaged=found)
                raise
            failure = self._close(con, damaged=False)
            if failure is not None:
                damage.remember(self.path, failure)
                raise failure

    def _close(self, con: Any, damaged: bool) -> StoreCorruptedError | None:
        """Close `con`; return the damage its checkpoint met, log any other failure.

        Closing checkpoints: it writes what was committed from the WAL into the file. A file
        known `damaged` is closed without that, so no block of it is rewritten; what was
        committed stays in the WAL, where `nbflow server database repair` reads it.
        """
        import duckdb

        if damaged:
            with contextlib.suppress(duckdb.Error):
                con.execute("PRAGMA disable_checkpoint_on_shutdown")
        try:
            con.close()
        except duckdb.Error as exc:
            failure = self._classify(exc)
            if isinstance(failure, StoreCorruptedError):
                return failure
            # Committed data is already durable in the WAL; the next close checkpoints it.
            logger.warning("Closing the run store %s failed (data is safe in its WAL): %s",
                           self.path, exc)
        return None

    def _cursor(self) -> Any:
        """A cursor of the held connection, registered so that release() can interrupt it."""
        with self._cursors_guard:
            if self._held is None:
                raise StoreError(f"The run store {self.path} is closing (the server is stopping); "
                                 f"nothing was done. Retry once the server is back.")
            cursor = self._held.cursor()
            self._cursors.add(cursor)
            return cursor

    @contextlib.contextmanager
    def _transaction(self, con: Any, doing: str) -> Iterator[None]:
        """BEGIN ... COMMIT; on any failure roll back and raise what went wrong in our words."""
        con.execute("BEGIN TRANSACTION")
        try:
            yield
            con.execute("COMMIT")
        except BaseException as exc:
            _rollback(con)
            failure = self._failure(exc, doing)
            if failure is exc:
                raise
            raise failure from exc

    def _open_with_retry(self, deadline: float) -> Any:
        """duckdb.connect, retrying with jittered exponential back-off while another process
        holds the file, until `deadline` (time.monotonic())."""
        import duckdb

        noted = damage.recall(self.path)
        if noted is not None:
            raise noted
        self.path.parent.mkdir(parents=True, exist_ok=True)
        delay = BACKOFF_START_S
        while True:
            try:
                return duckdb.connect(str(self.path), config=DUCKDB_CONFIG)
            except duckdb.Error as exc:
                message = str(exc)
                conflict = _LOCK_CONFLICT.search(message)
                if conflict is None and not any(p in message.lower() for p in _LOCK_PHRASES) \
                        and not self._being_created(message):
                    raise self._open_error(exc) from exc
                server = self._server_holding(conflict)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or server is not None or shutdown.background_gives_up():
                    raise self._locked(conflict, server) from None
                time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
                delay = min(delay * 2, BACKOFF_CAP_S)

    def _being_created(self, message: str) -> bool:
        """Whether "not a valid DuckDB database" or a short read may only mean another process is
        creating the file right now (its header not all written yet): true for a file changed in
        the last NEW_FILE_S."""
        lowered = message.lower()
        if "not a valid duckdb database" not in lowered and "could not read enough bytes" not in lowered:
            return False
        try:
            return time.time() - self.path.stat().st_mtime < NEW_FILE_S
        except OSError:
            return True  # gone again: the creator failed, so try afresh

    # -- errors ---------------------------------------------------------------------------

    def _server_holding(self, conflict: re.Match | None) -> ServerInfo | None:
        """The live nbflow server advertised in this store's home when it is the lock holder."""
        if conflict is None:
            return None
        return advertised_server(int(conflict["pid"]), self.path.parent)

    def _locked(self, conflict: re.Match | None, server: ServerInfo | None = None) -> StoreLockedError:
        pid = int(conflict["pid"]) if conflict else None
        if server is not None and pid is not None:
            return StoreHeldByServerError(
                f"The run store {self.path} is held by the running nbflow server at {server.url} "
                f"(PID {pid}). Processes share the store through that server: reach it with "
                f"NBFLOW_API_URL={server.url} and NBFLOW_API_TOKEN (its token is in "
                f"{self.path.parent / RUNTIME_FILE}; NBFLOW_SERVER=off prevents this), or stop it "
                f"(kill {pid}) before opening the file directly.",
                pid=pid, url=server.url, token=server.token,
            )
        command = process_command(pid) if pid else ""
        if "ipykernel" not in command and any(name in command for name in _SERVER_COMMANDS):
            return StoreLockedError(
                f"The run store {self.path} is held by an nbflow server (PID {pid}, {command[:80]}) "
                f"that does not advertise itself in {self.path.parent / RUNTIME_FILE}: it is starting "
                f"or stopping, or it runs with another NBFLOW_HOME. Wait for it, or set "
                f"NBFLOW_API_URL and NBFLOW_API_TOKEN to the URL and token it printed at start.",
                pid=pid,
            )
        holder = f"PID {pid}, {conflict['program']}" if conflict else "its PID unknown"
        stop = f"kill {pid}" if pid else f"find it with `lsof {self.path}`"
        return StoreLockedError(
            f"The run store {self.path} is held by another process ({holder}) and stayed locked "
            f"for {self.lock_timeout:g} s: stop that process if it is stuck ({stop}), or start "
            f"`nbflow server start` so that processes share the store through the server.",
            pid=pid,
        )

    def _open_error(self, exc: BaseException) -> StoreError:
        """Error for a failed open or first query: corrupt unless it is clearly something else."""
        message = str(exc)
        if "different configuration" in message:
            return StoreError(
                f"This process already has the run store {self.path} open through another DuckDB "
                f"connection with different settings ({message}). Close that connection "
                f"(con.close()) and retry, or query the store with nbflow.runs() / store.query()."
            )
        classified = self._classify(exc)
        if classified is not None:
            return classified
        return self._corrupted(message)

    def _classify(self, exc: BaseException) -> StoreError | None:
        """Our error for a disk, permission or corruption failure; None when it is none of those."""
        message = str(exc)
        lowered = message.lower()
        if "no space left" in lowered or getattr(exc, "errno", None) == errno.ENOSPC:
            return StoreError(
                f"The disk holding the run store is full (directory {self.path.parent}): {message}. "
                f"Nothing of this transaction was written and earlier records are intact; free "
                f"space there, or set NBFLOW_HOME to a directory on a disk with room."
            )
        if "permission denied" in lowered or "read-only file system" in lowered:
            return StoreError(
                f"nbflow may not write the run store {self.path}: {message}. Fix the file's "
                f"permissions, or set NBFLOW_HOME to a directory you can write."
            )
        if damage.is_damage(message, self.path):
            return self._corrupted(message)
        return None

    def _batch_failure(self, exc: BaseException) -> StoreError:
        """Error for a failed insert: the batch's fault unless DuckDB says otherwise."""
        classified = self._classify(exc)
        if classified is not None:
            return classified
        if type(exc).__name__ in _NOT_THE_BATCH:
            return StoreError(f"Could not write run records to the run store {self.path}: {exc}. "
                              f"Nothing of this transaction was written.")
        return StoreBatchError(
            f"The run store {self.path} refused a batch of run records: {exc}. Nothing of this "
            f"transaction was written; the same rows would fail again, so look for the value "
            f"that does not fit its column where the row is built."
        )

    def _corrupted(self, message: str) -> StoreCorruptedError:
        """The damage error for DuckDB's `message`, with the advice that fits (see damage.error)."""
        return damage.error(self.path, message)

    def _failure(self, exc: BaseException, doing: str) -> BaseException:
        """The exception to raise after a rolled-back transaction."""
        import duckdb

        if isinstance(exc, StoreError) or not isinstance(exc, (duckdb.Error, OSError)):
            return exc
        return self._classify(exc) or StoreError(
            f"Could not {doing} the run store {self.path}: {exc}. Nothing of this transaction "
            f"was written."
        )

    # -- crash detection ------------------------------------------------------------------

    def _mark_crashed(self, con: Any, force: bool = False) -> int:
        """Mark Crashed the unfinished runs of this host whose process is gone; return how many.

        Runs inside the caller's transaction. First the flow runs that dead processes started but
        never saved become runs (from their start logs, see started.py); then every unfinished run
        of a dead process ends Crashed when its process was last seen alive, not now. When every
        owner is alive it costs one scan of flow_runs' state_type column (~0.3 ms for 100k runs)
        and one listing of the processes folder. A held file is checked at most every few seconds
        unless `force`.
        """
        if self._held is not None and not force:
            now = time.monotonic()
            if now < self._next_crash_check:
                return 0
            self._next_crash_check = now + HELD_CRASH_CHECK_S
        home = self.path.parent
        gone = started.dead_logs(home, _HOST, _alive)
        busy = self._save_started(con, gone) if gone else set()
        candidates = con.execute(
            # A deployment's run is its worker's to end (heartbeats): its process may be killed on purpose.
            "SELECT id, pid, process_start, epoch(start_time) FROM flow_runs "
            "WHERE state_type IN ('RUNNING', 'PENDING') AND host = ? AND pid IS NOT NULL AND deployment_id IS NULL",
            [_HOST],
        ).fetchall()
        dead = [row for row in candidates if not _alive(row[1], row[2])]
        if dead and spool.pending(home):  # ended at exit but not sent yet: the spool settles them
            spooled = spool.finished_flow_runs(home)
            dead = [row for row in dead if row[0] not in spooled]
        for log, pid, _ in gone:
            # A log is kept while its process has runs to settle: its mtime dates their crash.
            if log not in busy and not any(row[1] == pid for row in dead):
                log.unlink(missing_ok=True)
        if not dead:
            return 0
        self._crash(con, dead, home)
        logger.info("Marked %d flow runs of dead processes on %s as Crashed", len(dead), _HOST)
        return len(dead)

    def _save_started(self, con: Any, gone: list[tuple[Path, int, float]]) -> set[Path]:
        """Store the flow runs that dead processes started but never saved (from their start
        logs, see started.py); return the logs to keep until those runs are committed."""
        logs = [(log, started.read_log(log)) for log, _, _ in gone]
        ids = [row["id"] for _, rows in logs for row in rows]
        if not ids:
            return set()
        stored = {r[0] for r in con.execute("SELECT id FROM flow_runs WHERE list_contains(?, id)", [ids]).fetchall()}
        busy, new = set(), {}
        for log, rows in logs:
            for row in rows:
                if row["id"] not in stored:
                    busy.add(log)
                    values = [row.get(c) for c in records.FLOW_RUN_COLUMNS]
                    values[_START] = values[_START] or values[_CREATED]  # it was just starting
                    new[row["id"]] = tuple(values)
        if new:
            try:
                batch_rows.insert(con, "flow_runs", batch_rows.rows_to_table("flow_runs", records.FLOW_RUN_COLUMNS,
                                                                           list(new.values())))
            except StoreBatchError as exc:  # a log this version cannot read: drop it, go on
                logger.warning("Dropped the start logs %s of dead processes: their runs cannot be "
                               "stored: %s", ", ".join(str(log) for log in busy), exc)
                return set()
        return busy

    def _crash(self, con: Any, dead: list[tuple], home: Path) -> None:
        """Mark the flow runs `dead` (id, pid, process_start, start epoch) and their unfinished task
        runs Crashed, ending when their process was last seen alive."""
        import pyarrow as pa

        now = time.time()
        now_ts = _timestamp(now)
        seen = _last_seen(con, dead, home)
        ends = [min(max(seen.get(r[0]) or now, r[3] or 0.0), now) for r in dead]
        flows = pa.table({
            "id": [r[0] for r in dead],
            "message": [f"Process {r[1]} on {_HOST} exited before the run finished" for r in dead],
            "end_time": pa.array([_timestamp(e) for e in ends], pa.timestamp("us")),
            "duration_s": [None if r[3] is None else max(e - r[3], 0.0) for r, e in zip(dead, ends)],
        })
        con.register("nbflow_dead_flow_runs", flows)
        try:
            tasks = con.execute(
                "SELECT t.id, d.message, greatest(d.end_time, coalesce(t.start_time, d.end_time)) "
                "FROM task_runs t JOIN nbflow_dead_flow_runs d "
                "ON t.flow_run_id = d.id WHERE t.state_type IN ('RUNNING', 'PENDING')"
            ).fetchall()
            con.execute(
                "UPDATE flow_runs SET state = 'Crashed', state_type = 'CRASHED', "
                "state_message = d.message, end_time = d.end_time, duration_s = d.duration_s, updated = ? "
                "FROM nbflow_dead_flow_runs d WHERE flow_runs.id = d.id",
                [now_ts],
            )
            crashed = pa.table({
                "id": [r[0] for r in dead] + [t[0] for t in tasks],
                "run_kind": ["flow"] * len(dead) + ["task"] * len(tasks),
                "message": flows.column("message").to_pylist() + [t[1] for t in tasks],
                "end_time": pa.array([_timestamp(e) for e in ends] + [t[2] for t in tasks], pa.timestamp("us")),
            })
            con.register("nbflow_crashed_runs", crashed)
            if tasks:
                con.execute(
                    "UPDATE task_runs SET state = 'Crashed', state_type = 'CRASHED', "
                    "state_message = c.message, end_time = c.end_time, "
                    "duration_s = CASE WHEN start_time IS NULL THEN NULL "
                    "ELSE greatest(epoch(c.end_time) - epoch(start_time), 0) END, updated = ? "
                    "FROM nbflow_crashed_runs c WHERE task_runs.id = c.id AND c.run_kind = 'task'",
                    [now_ts],
                )
            # Unique without a key: seq is one past the run's last, and we hold the file.
            con.execute(
                "INSERT INTO state_history "
                "(run_id, seq, run_kind, state, state_type, message, timestamp) "
                "SELECT c.id, coalesce(h.last_seq, 0) + 1, c.run_kind, 'Crashed', 'CRASHED', "
                "c.message, c.end_time FROM nbflow_crashed_runs c LEFT JOIN "
                "(SELECT run_id, max(seq) AS last_seq FROM state_history "
                " WHERE run_id IN (SELECT id FROM nbflow_crashed_runs) GROUP BY run_id) h "
                "ON h.run_id = c.id",
            )
        finally:
            for view in ("nbflow_dead_flow_runs", "nbflow_crashed_runs"):
                with contextlib.suppress(Exception):
                    con.unregister(view)


def _last_seen(con: Any, dead: list[tuple], home: Path) -> dict[str, float]:
    """When the process of each dead flow run was last seen alive, by flow run id (epoch s).

    The latest of: its process folder's mtime (touched every couple of seconds), the last
    snapshot of any of its process's runs that it saved, and the last of the run's task runs.
    """
    processes = {(r[1], r[2]) for r in dead}
    seen = {key: started.last_seen(home, _HOST, key[0], key[1]) or 0.0 for key in processes}
    for pid, process_start, updated in con.execute(
            "SELECT pid, process_start, max(epoch(updated)) FROM flow_runs WHERE host = ? "
            "AND list_contains(?, pid) AND state_type <> 'CRASHED' GROUP BY pid, process_start",
            [_HOST, sorted({r[1] for r in dead})]).fetchall():
        key = (pid, process_start)
        if key in seen and updated is not None:
            seen[key] = max(seen[key], updated)
    tasks = dict(con.execute(
        "SELECT flow_run_id, max(epoch(updated)) FROM task_runs WHERE list_contains(?, flow_run_id) "
        "GROUP BY flow_run_id", [[r[0] for r in dead]]).fetchall())
    return {r[0]: max(seen[(r[1], r[2])], tasks.get(r[0]) or 0.0) for r in dead}


def _alive(pid: int, process_start: float | None) -> bool:
    key = (pid, process_start)
    if process_start and key in _dead_processes:
        return False
    if is_process_alive(pid, process_start):
        return True
    if process_start:  # without a start time a reused pid could be a new, live owner
        _dead_processes.add(key)
    return False


def _rollback(con: Any) -> None:
    with contextlib.suppress(Exception):
        con.execute("ROLLBACK")
