"""`nbflow server database check` and `repair`: read every row of a suspect store, copy what reads.

DuckDB checks a block's checksum when it reads the block, so reading every column of every row
finds all the damage that matters (damage in free space does not). Where a table cannot be read
whole, it is read by ranges of row ids, halving a failing range down to MIN_RANGE rows, and a
range that still fails is read column by column: rows keep every column that reads, the others
become NULL. So a damaged block costs the values it held, not the table.

The reading runs in a child process (`python -m nbflow.store.repair`, JSON lines on stdout):
DuckDB may crash on a damaged file, and the command must report that rather than abort. A
table whose reading crashed the child is skipped on the next try. The child opens the store
READ_ONLY, which also keeps writers out (DuckDB's file lock) while `repair` copies and swaps.

`repair` copies into a new file beside the store, keeps the old file (and its WAL) as
<store>.damaged-<UTC time>, and puts the new file in its place with one rename. A store whose
only damage is its WAL keeps its file in place: only the WAL is set aside.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from nbflow.errors import StoreError, StoreLockedError
from nbflow.store import damage
from nbflow.store.liveness import is_process_alive
from nbflow.store.server_info import RUNTIME_FILE

#: row ids read in one statement once a table fails to read whole.
RANGE = 2048
#: the smallest range halving goes down to before reading column by column.
MIN_RANGE = 64
#: a hard link to the store read without its WAL: <store>.check-<pid> (see _attached).
CHECK_INFIX = ".check-"
#: phrases of a lock held by another process (as in embedded._LOCK_PHRASES).
_LOCK_PHRASES = ("could not set lock on file", "conflicting lock", "being used by another process")


@dataclass
class TableReport:
    """What could be read of one table."""

    name: str
    rows: int | None = None  #: rows the table says it holds (None: not even that could be read)
    read: int = 0  #: rows read with every column
    partial: int = 0  #: rows read with some columns NULL (their values could not be read)
    lost_columns: list[str] = field(default_factory=list)
    error: str | None = None  #: the first read error, when any
    crashed: bool = False  #: reading it crashed DuckDB

    @property
    def lost(self) -> int | None:
        """Rows not read at all (None when the table's row count is unknown)."""
        return None if self.rows is None else max(self.rows - self.read - self.partial, 0)

    @property
    def intact(self) -> bool:
        return self.error is None and not self.crashed and self.rows == self.read


@dataclass
class StoreReport:
    """What `check` found, or what `repair` copied."""

    path: Path
    exists: bool = True
    size: int = 0
    wal_size: int | None = None  #: bytes of the WAL beside the store, None without one
    open_error: str | None = None  #: the store could not be opened (nothing below was read)
    wal_error: str | None = None  #: the WAL could not be replayed: the tables were read without it
    locked: str | None = None  #: another process holds the file (nothing was read)
    schema_version: int | None = None
    tables: list[TableReport] = field(default_factory=list)
    skipped_objects: list[str] = field(default_factory=list)  #: views etc., not copied
    note: dict | None = None  #: nbflow's note that it found the store damaged (see damage.py)
    failure: str | None = None  #: the reading (or copying) itself failed; nothing was changed
    notes: list[str] = field(default_factory=list)  #: anything else worth saying

    @property
    def healthy(self) -> bool:
        """Every row of every table reads back, with the WAL."""
        return (self.exists and self.open_error is None and self.wal_error is None
                and self.locked is None and self.failure is None and all(t.intact for t in self.tables))

    @property
    def file_intact(self) -> bool:
        """The store file itself reads back whole (its WAL may be damaged)."""
        return (self.exists and self.open_error is None and self.locked is None
                and self.failure is None and all(t.intact for t in self.tables))


@dataclass
class RepairReport:
    """What `repair` did."""

    action: str  #: "untouched", "note cleared", "wal set aside" or "copied"
    check: StoreReport  #: the store as found
    copy: StoreReport | None = None  #: what was copied (action "copied")
    backup: Path | None = None  #: where the old file is kept
    wal_backup: Path | None = None  #: where the old WAL is kept


# -- the commands ---------------------------------------------------------------------------

def check(path: Path) -> StoreReport:
    """Read every row of every table of the store at `path` without writing anything."""
    path = Path(path)
    report = _child_read(path, into=None)
    report.note = damage.noted(path)
    return report


def repair(path: Path, force: bool = False) -> RepairReport:
    """Copy every readable row of a damaged store into a new file and put it in the store's place.

    A healthy store is left untouched unless `force`. Raises StoreLockedError while a live
    server or another process holds the store.
    """
    path = Path(path)
    _refuse_live_server(path)
    found = check(path)
    if found.locked:
        raise StoreLockedError(f"The run store {path} is held by another process ({found.locked}); "
                               f"stop it, then run `nbflow server database repair` again.")
    if not found.exists:
        return RepairReport("untouched", found)
    if found.failure:
        raise StoreError(f"Reading the run store {path} failed: {found.failure}. Nothing was changed.")
    if found.healthy and not force:
        if found.note is None:
            return RepairReport("untouched", found)
        damage.forget(path)
        return RepairReport("note cleared", found)
    backup = _free_backup_path(path)
    wal = damage.wal_path(path)
    if found.wal_error and found.file_intact and not force:
        wal_backup = damage.wal_path(backup)
        os.replace(wal, wal_backup)
        damage.forget(path)
        return RepairReport("wal set aside", found, backup=None, wal_backup=wal_backup)
    new = path.with_name(f"{path.name}.repair-{os.getpid()}.tmp")
    _remove(new)
    try:
        copied = _child_read(path, into=new, backup=backup)
    finally:
        _remove(new)
    if copied.locked:
        raise StoreLockedError(f"The run store {path} is held by another process ({copied.locked}); "
                               f"stop it, then run `nbflow server database repair` again.")
    if "swapped" not in copied.notes:
        raise StoreError(f"Repairing the run store {path} failed before the new file replaced it: "
                         f"{copied.failure or 'the copy stopped'}. Nothing was changed; a full disk "
                         f"needs room for a copy of the store beside it.")
    copied.notes.remove("swapped")
    had_wal = found.wal_size is not None
    return RepairReport("copied", found, copied, backup=backup,
                        wal_backup=damage.wal_path(backup) if had_wal else None)


def _refuse_live_server(path: Path) -> None:
    """Raise StoreLockedError when the runtime file beside the store names a live server."""
    try:
        data = json.loads((path.parent / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return
    pid = data.get("pid") if isinstance(data, dict) else None
    if isinstance(pid, int) and pid != os.getpid() and is_process_alive(pid, None):
        raise StoreLockedError(
            f"The nbflow server at {data.get('url', '?')} (PID {pid}) holds the run store {path}; "
            f"stop it (Ctrl-C where it runs, or kill {pid}), then run `nbflow server database repair` "
            f"again.", pid=pid)


def _free_backup_path(path: Path) -> Path:
    backup = damage.backup_path(path)
    n = 1
    while backup.exists() or damage.wal_path(backup).exists():
        n += 1
        backup = backup.with_name(f"{damage.backup_path(path).name}-{n}")
    return backup


def _remove(path: Path) -> None:
    for p in (path, damage.wal_path(path)):
        with contextlib.suppress(OSError):
            p.unlink()


# -- the parent: run the reader, retry around crashes -------------------------------------------

def _child_read(path: Path, into: Path | None, backup: Path | None = None) -> StoreReport:
    """Run the reader in a child process; skip a table that crashed it and try again."""
    report = StoreReport(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        report.exists = False
        return report
    report.size = st.st_size
    with contextlib.suppress(OSError):
        report.wal_size = damage.wal_path(path).stat().st_size
    skip: list[str] = []
    crashed: list[TableReport] = []
    while True:
        if into is not None:
            _remove(into)
        argv = [sys.executable, "-m", "nbflow.store.repair", str(path)]
        if into is not None:
            argv += ["--into", str(into), "--backup", str(backup)]
        for name in skip:
            argv += ["--skip", name]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = child.communicate()
        _remove(path.with_name(f"{path.name}{CHECK_INFIX}{child.pid}"))  # left if it crashed
        proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        attempt = _assemble(path, events, report)
        attempt.tables = sorted(attempt.tables + crashed, key=lambda t: t.name)
        if proc.returncode == 0 or any(e["event"] == "done" for e in events):
            return attempt
        if proc.returncode > 0:  # it failed, it did not crash: say so, and change nothing
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            attempt.failure = attempt.failure or last or f"exit code {proc.returncode}"
            return attempt
        started = [e["name"] for e in events if e["event"] == "table_start"]
        finished = {e["name"] for e in events if e["event"] == "table"}
        signal = f"signal {-proc.returncode}"
        stuck = [name for name in started if name not in finished]
        if not stuck:  # it died opening the store, or between tables
            attempt.open_error = attempt.open_error or f"DuckDB crashed opening it ({signal})"
            return attempt
        skip.append(stuck[0])
        crashed.append(TableReport(stuck[0], error=f"DuckDB crashed reading it ({signal})", crashed=True))


def _assemble(path: Path, events: list[dict], base: StoreReport) -> StoreReport:
    report = StoreReport(path, size=base.size, wal_size=base.wal_size)
    for e in events:
        kind = e["event"]
        if kind == "open":
            report.wal_error = e.get("wal_error")
            report.open_error = e.get("open_error")
            report.locked = e.get("locked")
            report.schema_version = e.get("schema_version")
            report.skipped_objects = e.get("skipped_objects", [])
        elif kind == "table":
            report.tables.append(TableReport(
                e["name"], rows=e.get("rows"), read=e.get("read", 0), partial=e.get("partial", 0),
                lost_columns=e.get("lost_columns", []), error=e.get("error")))
        elif kind == "note":
            report.notes.append(e["text"])
        elif kind == "fatal":
            report.failure = e["message"]
    return report


# -- the child: read (and copy) -----------------------------------------------------------------

def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def _attached(con: Any, path: Path) -> Iterator[dict]:
    """ATTACH the store READ_ONLY as `src`; if its WAL is damaged, without the WAL.

    DuckDB replays `<file>.wal` and follows symlinks to find it, so the file is read without
    its WAL through a hard link under another name beside it (the same inode, so the same
    file lock), else through a copy. Yields what happened: wal_error, open_error, locked.
    """
    import duckdb

    status: dict = {}
    link = path.with_name(f"{path.name}{CHECK_INFIX}{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="nbflow-check-") as tmp:
        try:
            try:
                con.execute(f"ATTACH {_literal(str(path))} AS src (READ_ONLY)")
            except duckdb.Error as exc:
                message = " ".join(str(exc).split())
                if any(p in message.lower() for p in _LOCK_PHRASES):
                    status["locked"] = message
                elif damage.is_wal_damage(message):
                    status["wal_error"] = message
                    try:
                        os.link(path, link)
                        alone = link
                    except OSError:
                        alone = Path(tmp) / path.name
                        shutil.copyfile(path, alone)
                    try:
                        con.execute(f"ATTACH {_literal(str(alone))} AS src (READ_ONLY)")
                    except duckdb.Error as exc2:
                        status["open_error"] = " ".join(str(exc2).split())
                else:
                    status["open_error"] = message
            yield status
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute("DETACH src")
            _remove(link)


def _read_store(path: Path, into: Path | None, backup: Path | None, skip: set[str]) -> None:
    import duckdb

    from nbflow.store.embedded import DUCKDB_CONFIG

    con = duckdb.connect(":memory:", config=DUCKDB_CONFIG)
    with _attached(con, path) as status:
        opened = "open_error" not in status and "locked" not in status
        tables: list[tuple[str, str]] = []
        if opened:
            try:
                tables = con.execute(
                    "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = 'src' "
                    "AND schema_name = 'main' ORDER BY table_name").fetchall()
                status["skipped_objects"] = [r[0] for r in con.execute(
                    "SELECT view_name FROM duckdb_views() WHERE database_name = 'src' "
                    "AND NOT internal").fetchall()]
            except duckdb.Error as exc:
                status["open_error"] = " ".join(str(exc).split())
                opened = False
        if opened:
            with contextlib.suppress(duckdb.Error, TypeError, ValueError):
                row = con.execute("SELECT value FROM src.main.nbflow_meta "
                                  "WHERE key = 'schema_version'").fetchone()
                status["schema_version"] = int(row[0]) if row else None
        _emit("open", **status)
        if "locked" in status:
            return
        if into is not None:
            con.execute(f"ATTACH {_literal(str(into))} AS fresh")
            con.execute("USE fresh")
        copied = set()
        for name, sql in tables:
            if name in skip:  # reading it crashed DuckDB: the new store gets it empty
                if into is not None:
                    con.execute(sql)
                    copied.add(name)
                continue
            _emit("table_start", name=name)
            _emit("table", **_read_table(con, name, sql if into is not None else None))
            copied.add(name)
        if into is None:
            _emit("done")
            return
        _finish_schema(con, copied, status.get("schema_version"))
        con.execute("USE memory")
        con.execute("DETACH fresh")  # checkpoints and closes the new file
        _swap(path, into, backup)
        _emit("note", text="swapped")
        _emit("done")
    con.close()


class _CopyFailed(Exception):
    """Writing the new file failed (a full disk): the repair stops and changes nothing."""


def _read_table(con: Any, name: str, create_sql: str | None) -> dict:
    """Read (and with `create_sql`, copy into `fresh`) every row of src.main.<name> that reads."""
    import duckdb

    table = f"src.main.{_quote(name)}"
    out: dict[str, Any] = {"name": name, "read": 0, "partial": 0, "lost_columns": []}
    described = con.execute(
        "SELECT column_name, is_nullable FROM duckdb_columns() WHERE database_name = 'src' "
        "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [name]).fetchall()
    columns = [c for c, _ in described]
    #: a row without one of these (its key) is lost, not partly read
    required = {c for c, nullable in described if not nullable}
    if create_sql is not None:
        con.execute(create_sql)
    try:
        out["rows"] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except duckdb.Error as exc:
        out["rows"] = None
        out["error"] = " ".join(str(exc).split())

    def read(where: str, readable: list[str]) -> int:
        hashes = "".join(f", bit_xor(hash({_quote(c)}))" for c in readable)
        return con.execute(f"SELECT count(*){hashes} FROM {table} WHERE {where}").fetchone()[0]

    def move(where: str, readable: list[str]) -> int:
        """Read (copy) the rows `where` selects; columns not in `readable` become NULL.

        Raises duckdb.Error when reading fails, _CopyFailed when writing the new file does.
        """
        if create_sql is None:
            return read(where, readable)
        exprs = [_quote(c) if c in readable else "NULL" for c in columns]
        cols = ", ".join(map(_quote, columns))
        try:
            return con.execute(f"INSERT INTO main.{_quote(name)} ({cols}) SELECT {', '.join(exprs)} "
                               f"FROM {table} WHERE {where}").fetchone()[0]
        except duckdb.Error as exc:
            read(where, readable)  # raises if reading is what failed
            raise _CopyFailed(f"writing {name} into the new file failed: {' '.join(str(exc).split())}") from exc

    try:
        out["read"] = move("TRUE", columns)
        return out
    except duckdb.Error as exc:
        out.setdefault("error", " ".join(str(exc).split()))
    try:
        top = con.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except duckdb.Error:
        return out
    lost_columns: set[str] = set()

    def salvage(lo: int, hi: int) -> None:
        where = f"rowid >= {lo} AND rowid < {hi}"
        try:
            out["read"] += move(where, columns)
            return
        except duckdb.Error:
            pass
        if hi - lo > MIN_RANGE:
            mid = (lo + hi) // 2
            salvage(lo, mid)
            salvage(mid, hi)
            return
        readable = []
        for column in columns:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"SELECT bit_xor(hash({_quote(column)})) FROM {table} WHERE {where}").fetchone()
                readable.append(column)
        if readable and required <= set(readable):
            with contextlib.suppress(duckdb.Error):
                out["partial"] += move(where, readable)
                lost_columns.update(c for c in columns if c not in readable)

    for lo in range(0, (top if top is not None else -1) + 1, RANGE):
        salvage(lo, lo + RANGE)
    out["lost_columns"] = sorted(lost_columns)
    return out


def _finish_schema(con: Any, copied: set[str], version: int | None) -> None:
    """Make the new file an nbflow store: an empty schema if nothing was copied, and a schema
    version if nbflow_meta lost it (only when the tables are the current schema's)."""
    from nbflow.store import records, schema

    if not copied:
        schema.create(con)
        _emit("note", text="nothing could be read: the new store is empty")
        return
    if version is not None:
        return
    current = set(records.TABLES) | {"deployments", "deployment_runs", "work_pools", "workers"}
    if current <= copied:
        if "nbflow_meta" not in copied:
            con.execute(schema.META_DDL)
        con.execute("INSERT OR REPLACE INTO nbflow_meta VALUES ('schema_version', ?)",
                    [str(schema.SCHEMA_VERSION)])
        _emit("note", text=f"the schema version could not be read; set to {schema.SCHEMA_VERSION}, "
                           f"the version whose tables the store has")
    else:
        _emit("note", text="the schema version could not be read and the tables are not those of "
                           "this nbflow's schema: nbflow may refuse the new store")


def _swap(path: Path, new: Path, backup: Path) -> None:
    """Keep the old store (and its WAL) as `backup`, and put `new` in its place in one rename."""
    wal = damage.wal_path(path)
    if wal.exists():
        os.replace(wal, damage.wal_path(backup))
    try:
        os.link(path, backup)  # the old file stays reachable under the backup name...
    except FileNotFoundError:
        pass
    except OSError:  # no hard links on this file system: two renames then
        os.replace(path, backup)
    os.replace(new, path)  # ...while the new one takes its place at once
    damage.forget(path)


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m nbflow.store.repair STORE [--into NEW --backup OLD] [--skip TABLE ...]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nbflow.store.repair")
    parser.add_argument("store", type=Path)
    parser.add_argument("--into", type=Path)
    parser.add_argument("--backup", type=Path)
    parser.add_argument("--skip", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        _read_store(args.store, args.into, args.backup, set(args.skip))
    except Exception as exc:  # not a crash: the parent reports it and changes nothing
        said = " ".join(str(exc).split())
        _emit("fatal", message=said if isinstance(exc, _CopyFailed) else f"{type(exc).__name__}: {said}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
