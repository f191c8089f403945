"""Batches of run records kept in files under NBFLOW_HOME: spooled to send later, or quarantined.

``spool/`` holds batches that could not reach the store (it stayed unreachable, or the process
was exiting). Any process whose store works sends them on: the server when it starts and every
scheduler pass, a writer after a flush. A file is claimed by renaming it before it is sent, so
two processes never both send it; a batch sent twice would do no harm anyway (runs are upserted,
history and logs are keyed by (run_id, seq)). ``quarantine/`` holds batches the store refused,
for a person to look at: load_batch() reads one back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from nbflow import settings
from nbflow.errors import StoreBatchError
from nbflow.store import records
from nbflow.store.liveness import is_process_alive, parse_process_key, process_key, process_start_time
from nbflow.store.records import Batch

logger = logging.getLogger("nbflow.store")

SPOOL = "spool"
QUARANTINE = "quarantine"
#: a claimed file is named <file>.sending.<process key of the claimer>.
CLAIM = ".sending."

_HOST = socket.gethostname()
_claimer: tuple[int, str] | None = None


def save_batch(batch: Batch, folder: str, error: str, home: Path | None = None) -> Path:
    """Write `batch` as JSON to <NBFLOW_HOME>/<folder>/<UTC timestamp>-<pid>.json; return the path.

    The file holds `error` (why it is here) and, per table, its columns and rows (values that
    are not JSON are written with str()). It appears whole or not at all: written under a
    temporary name, then renamed.
    """
    now = time.time()
    directory = (home or settings.home()) / folder
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(int(now))) + f".{int(now * 1e6) % 1_000_000:06d}Z"
    payload = {
        "error": error, "time": now, "host": _HOST, "pid": os.getpid(),
        "tables": {name: {"columns": list(columns), "rows": getattr(batch, name)}
                   for name, columns in records.TABLES.items() if getattr(batch, name)},
    }
    text = json.dumps(payload, default=str)
    for attempt in range(100):
        path = directory / f"{stamp}-{os.getpid()}{f'-{attempt}' if attempt else ''}.json"
        partial = path.with_name(path.name + ".partial")
        if path.exists():
            continue
        try:
            f = open(partial, "x", encoding="utf-8")
        except FileExistsError:
            continue
        try:
            with f:
                f.write(text)
            os.replace(partial, path)
        except BaseException:  # e.g. the disk is full: leave no half a file behind
            partial.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(f"no free file name for {stamp}-{os.getpid()} in {directory}")


def load_batch(path: Any) -> Batch:
    """The batch in a spool or quarantine file, its rows in the current records column order
    (columns the file lacks are None)."""
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    batch = Batch()
    for name, table in payload["tables"].items():
        index = {c: i for i, c in enumerate(table["columns"])}
        getattr(batch, name).extend(
            tuple(row[index[c]] if c in index else None for c in records.TABLES[name])
            for row in table["rows"])
    return batch


def finished_flow_runs(home: Path | None = None) -> set[str]:
    """Ids of the flow runs that a spooled batch ends (a final state): a dead process spooled
    their end at exit, so they are not crashed, only not sent yet."""
    directory = (home or settings.home()) / SPOOL
    ids: set[str] = set()
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError:
        return ids
    column = records.TABLES["flow_runs"].index("state_type")
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            batch = load_batch(directory / name)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            continue
        ids.update(row[0] for row in batch.flow_runs if row[column] in _FINAL_TYPES)
    return ids


_FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def pending(home: Path | None = None) -> bool:
    """Whether the spool folder holds any file (one directory listing)."""
    try:
        with os.scandir((home or settings.home()) / SPOOL) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def replay(write: Callable[[Batch], None], home: Path | None = None) -> int:
    """Send the spooled batches, oldest first, with `write`; return how many rows were sent.

    Each file is claimed (renamed) first, deleted once written, and put back when the store
    cannot take it yet (that error is raised: try again later). A file the store refuses, or
    that cannot be read, is moved to quarantine/.
    """
    directory = (home or settings.home()) / SPOOL
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError:
        return 0
    names = _recover_claims(directory, names)
    me = _claimer_key()
    sent = 0
    for name in names:
        if not name.endswith(".json"):
            continue
        claimed = directory / f"{name}{CLAIM}{me}"
        try:
            os.rename(directory / name, claimed)
        except FileNotFoundError:
            continue  # another process took it
        try:
            batch = load_batch(claimed)
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            _quarantine_file(claimed, name, f"the spool file cannot be read: {exc}")
            continue
        try:
            write(batch)
        except StoreBatchError as exc:
            _quarantine_file(claimed, name, f"the store refused it: {exc}")
            continue
        except BaseException:
            os.rename(claimed, directory / name)
            raise
        claimed.unlink(missing_ok=True)
        sent += len(batch)
    return sent


def _recover_claims(directory: Path, names: list[str]) -> list[str]:
    """Put back the files claimed by processes of this host that died while sending them."""
    result = []
    for name in names:
        original, sep, key = name.partition(CLAIM)
        if sep:
            parsed = parse_process_key(key)
            if parsed is None or parsed[0] != _HOST or is_process_alive(parsed[1], parsed[2]):
                continue
            try:
                os.rename(directory / name, directory / original)
            except OSError:
                continue
            name = original
        result.append(name)
    return sorted(result)


def _claimer_key() -> str:
    global _claimer
    pid = os.getpid()
    if _claimer is None or _claimer[0] != pid:
        _claimer = (pid, process_key(_HOST, pid, process_start_time(pid)))
    return _claimer[1]


def _quarantine_file(claimed: Path, name: str, why: str) -> None:
    target = claimed.parent.parent / QUARANTINE / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(claimed, target)
    except OSError as exc:
        logger.error("nbflow could not move the spooled run records %s to %s (%s): %s", claimed,
                     target.parent, exc, why)
        return
    logger.error("nbflow moved the spooled run records %s to %s: %s. They will not be retried.",
                 name, target, why)
