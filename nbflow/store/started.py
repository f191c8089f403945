"""What a process leaves under NBFLOW_HOME so that a kill -9 at any moment leaves a Crashed run.

Every process that records runs has a start log ``$NBFLOW_HOME/processes/<host>-<pid>-<start>.jsonl``:

- one line per flow run it started (the run's row as first recorded, as JSON), appended when
  the run starts: one write to a file kept open, no fsync (the page cache of a killed process
  survives it). Creating a file per run would cost ~0.5 ms here; an append costs ~10 µs;
- its mtime is when the process was last seen alive: once the file exists (at the first flow
  run), the writer thread touches it every couple of seconds, so a crashed run ends when its
  process died, not when that was noticed.

The writer forgets a line once a flush holding that run succeeded, and rewrites the file with
only the lines it still needs once it grows past COMPACT_BYTES; the process removes the file at
exit. Whoever opens the embedded store (and the server, every scheduler pass) sweeps the logs of
dead processes of its host: a run in the log but not in the store becomes a Crashed run, and a
log whose runs are all stored is removed. Only the standard library is imported here.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Callable

from nbflow.store.liveness import parse_process_key, process_key

FOLDER = "processes"
SUFFIX = ".jsonl"


def log_path(home: Path, host: str, pid: int, process_start: float | None) -> Path:
    """The start log of process `pid` (started at `process_start`) on `host` under `home`."""
    return home / FOLDER / f"{process_key(host, pid, process_start)}{SUFFIX}"


class StartLog:
    """The start log of this process: lines of its flow runs that are not stored yet."""

    #: rewrite the file with only the lines still needed once it is larger than this.
    COMPACT_BYTES = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        #: the line of each flow run started and not stored yet, by flow run id.
        self._lines: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"StartLog({str(self.path)!r}, {len(self._lines)} unsaved)"

    def add(self, run_id: str, row: dict[str, Any]) -> None:
        """Note that flow run `run_id` started, with its first row (one append)."""
        line = json.dumps(row, default=str, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._fd is None:
                self._open()
            os.write(self._fd, line)
            self._lines[run_id] = line
            self._size += len(line)

    def saved(self, run_ids: list[str]) -> None:
        """These flow runs are stored (or spooled): their lines are no longer needed."""
        if not self._lines:
            return
        with self._lock:
            for run_id in run_ids:
                self._lines.pop(run_id, None)
            if self._size > self.COMPACT_BYTES:
                self._rewrite()

    def unsaved(self) -> int:
        """How many started flow runs are not known to be stored."""
        return len(self._lines)

    def touch(self) -> None:
        """Say the process is alive now (the file's mtime); nothing before its first flow run."""
        if self._fd is not None:
            try:
                os.utime(self.path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Close the file, and remove it when every run it names is stored (at exit)."""
        with self._lock:
            self._close()
            if not self._lines:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rewrite(self) -> None:
        data = b"".join(self._lines.values())
        partial = self.path.with_name(self.path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(partial, self.path)
        self._close()
        self._open()


def last_seen(home: Path, host: str, pid: int, process_start: float | None) -> float | None:
    """When the process was last seen alive (its start log's mtime), or None without a log."""
    try:
        return os.stat(log_path(home, host, pid, process_start)).st_mtime
    except OSError:
        return None


def dead_logs(home: Path, host: str, alive: Callable[[int, float], bool]) -> list[tuple[Path, int, float]]:
    """(start log, pid, process_start) of the processes of `host` that `alive` says are gone.

    Logs of other hosts are left alone: their pids cannot be checked from here.
    """
    try:
        names = [entry.name for entry in os.scandir(home / FOLDER)]
    except OSError:
        return []
    dead = []
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        parsed = parse_process_key(name[:-len(SUFFIX)])
        if parsed is None or parsed[0] != host:
            continue
        _, pid, start = parsed
        if not alive(pid, start):
            dead.append((home / FOLDER / name, pid, start))
    return dead


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows in a start log (the last of each run); lines that cannot be read are skipped
    (the process may have been killed in the middle of one)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    rows: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str):
            rows[row["id"]] = row
    return list(rows.values())
