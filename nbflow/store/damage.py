"""How nbflow names a damaged run store, and remembers it between processes.

A store is a DuckDB file and, after a crash or while a server holds it, its write-ahead log
(`nbflow.duckdb.wal`: what was committed since the last checkpoint). Damage to each calls for
different advice: the file holds every run, so the advice never moves it away for good; a
damaged log is set aside alone.

DuckDB finds damage only in the blocks a statement reads, so a damaged store can answer one
query and fail the next. Once an operation finds damage in a store it had opened, a note
beside the file (`nbflow.duckdb.damage.json`) makes every later open refuse the store, at
the cost of one stat() per open, until `nbflow server database repair` or `reset`
replaces it: nothing is written into damaged blocks, and every command says the store is
damaged, not only those whose query happens to read a damaged block. The note names the
file by device and inode, so once the file is replaced the note is stale and is dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from nbflow.errors import StoreCorruptedError

#: the note beside a store found damaged: <store>.damage.json
NOTE_SUFFIX = ".damage.json"
#: a store set aside by `repair`: <store>.damaged-<UTC time> (its log: the same + ".wal").
BACKUP_INFIX = ".damaged-"

#: DuckDB's words for a damaged store file that name no file (a block's checksum failed).
_BLOCK_DAMAGE = ("corrupt database file", "computed checksum", "invalid block")
#: DuckDB's words for damage that come with the damaged file's path.
_FILE_DAMAGE = ("could not read enough bytes from file", "not a valid duckdb database",
                "data may be corrupt", "corrupt")
#: DuckDB's words for a write-ahead log it could not replay.
_WAL_DAMAGE = ("failure while replaying wal", "corrupt wal")


def wal_path(path: Path) -> Path:
    """The write-ahead log DuckDB keeps beside the store file."""
    return path.with_name(path.name + ".wal")


def note_path(path: Path) -> Path:
    return path.with_name(path.name + NOTE_SUFFIX)


def backup_path(path: Path, when: dt.datetime | None = None) -> Path:
    """Where `repair` keeps a damaged store: <store>.damaged-<UTC time>, e.g. ...damaged-20261204T221946Z."""
    when = when or dt.datetime.now(dt.timezone.utc)
    return path.with_name(f"{path.name}{BACKUP_INFIX}{when.strftime('%Y%m%dT%H%M%SZ')}")


def is_damage(message: str, path: Path) -> bool:
    """Whether a DuckDB error message says the store at `path` (or its log) is damaged.

    Words that could also describe a user's own file (a truncated Parquet file read by
    nbflow.sql()) count only when the message names the store or its log.
    """
    lowered = message.lower()
    if any(p in lowered for p in _BLOCK_DAMAGE) or any(p in lowered for p in _WAL_DAMAGE):
        return True
    return str(path) in message and any(p in lowered for p in _FILE_DAMAGE)


def is_wal_damage(message: str) -> bool:
    lowered = message.lower()
    return any(p in lowered for p in _WAL_DAMAGE)


def error(path: Path, detail: str) -> StoreCorruptedError:
    """The error for a damaged store, with advice that fits what is damaged."""
    detail = " ".join(detail.split())
    wal = wal_path(path)
    if is_wal_damage(detail):
        return StoreCorruptedError(
            f"The run store's write-ahead log {wal} is damaged ({detail}). The store file itself, "
            f"{path}, holds every run up to its last checkpoint: keep it, do not move or delete it. "
            f"Set only the log aside: run `nbflow server database repair` (it renames the log to "
            f"{path.name}{BACKUP_INFIX}<UTC time>.wal and keeps the store file in place), or "
            f"`mv {wal} {wal}.damaged`. What the log held since the last checkpoint (the last "
            f"writes before the process that wrote it stopped) is lost either way.",
            path=str(path), wal=str(wal), detail=detail,
        )
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return StoreCorruptedError(
            f"The run store {path} is empty (0 bytes), so it holds no runs: a process probably "
            f"stopped while creating it ({detail}). Delete it (`rm {path}`, or `nbflow server "
            f"database reset --yes`); the next run starts a new store.",
            path=str(path), detail=detail,
        )
    if "not a valid duckdb database" in detail.lower():
        return StoreCorruptedError(
            f"{path} is not a DuckDB database, so nbflow can read no runs from it ({detail}). If it "
            f"is a file of yours, move it out of NBFLOW_HOME. Otherwise `nbflow server database "
            f"repair` keeps it beside as {path.name}{BACKUP_INFIX}<UTC time> and starts a new, "
            f"empty store (`nbflow server database reset --yes` deletes it instead).",
            path=str(path), detail=detail,
        )
    return StoreCorruptedError(
        f"The run store {path} is damaged ({detail}). It still holds your runs: `nbflow server "
        f"database check` shows which tables can be read, and `nbflow server database repair` "
        f"copies every row it can read into a new store file, keeping this one beside it as "
        f"{path.name}{BACKUP_INFIX}<UTC time>. (`nbflow server database reset --yes` deletes it "
        f"and starts afresh instead.)",
        path=str(path), detail=detail,
    )


# -- the note ---------------------------------------------------------------------------------

def remember(path: Path, exc: StoreCorruptedError) -> None:
    """Leave the note that `path` is damaged, naming this very file (device and inode)."""
    try:
        st = path.stat()
        note = note_path(path)
        tmp = note.with_name(f"{note.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({
            "detail": exc.detail or str(exc), "found": dt.datetime.now(dt.timezone.utc).isoformat(
                timespec="seconds"), "pid": os.getpid(), "dev": st.st_dev, "ino": st.st_ino,
        }))
        os.replace(tmp, note)
    except OSError:
        pass  # a read-only home: the error itself still tells this process what to do


def recall(path: Path) -> StoreCorruptedError | None:
    """The error for a store noted damaged, or None (no note, or a stale note, which is removed)."""
    note = f"{path}{NOTE_SUFFIX}"
    if not os.path.exists(note):  # the usual case, on every open: one stat(), ~2 us
        return None
    try:
        with open(note, encoding="utf-8") as f:
            raw = f.read()
    except OSError:
        return None
    try:
        data = json.loads(raw)
        st = path.stat()
        current = (st.st_dev, st.st_ino) == (data["dev"], data["ino"])
    except (OSError, ValueError, KeyError, TypeError):
        current = False
    if not current:  # the file was replaced or removed since: the note is about another file
        forget(path)
        return None
    found = data.get("found", "an earlier run")
    return StoreCorruptedError(
        f"The run store {path} was found damaged at {found} ({data.get('detail', '')}), so nbflow "
        f"no longer opens it: nothing more is written into a damaged file. It still holds your "
        f"runs: `nbflow server database check` shows which tables can be read, and `nbflow server "
        f"database repair` copies every row it can read into a new store file, keeping this one "
        f"beside it as {path.name}{BACKUP_INFIX}<UTC time>. (`nbflow server database reset --yes` "
        f"deletes it and starts afresh instead.)",
        path=str(path), detail=data.get("detail"),
    )


def noted(path: Path) -> dict | None:
    """The note about `path` when it names the current file (for `check`), else None."""
    try:
        data = json.loads(note_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (st.st_dev, st.st_ino) != (data.get("dev"), data.get("ino")):
        return None
    return data


def forget(path: Path) -> None:
    try:
        note_path(path).unlink()
    except OSError:
        pass

