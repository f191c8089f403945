"""The cache index: one small JSON file per cache key, read without opening the database.

``<root>/<key[:2]>/<key>.json`` holds a CacheEntry: the ResultRef of the cached result
(with small JSON values inline), the task run that made it, and when it expires. A
look-up is one file read and a JSON parse; entries are replaced atomically, so a process
reading while another writes sees a whole entry or none. The store's ``cache_entries``
table mirrors these files for SQL (``CacheEntry.as_row``); look-ups never need it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbflow.store.files import atomic_write
from nbflow.store.results import ResultRef

logger = logging.getLogger(__name__)

#: Cache keys are lowercase hex digests; nothing else may become a file name.
_KEY = re.compile(r"[0-9a-f]{16,128}")
_VERSION = 1
#: Temporary files older than this are leftovers of a crashed writer.
_STALE_TMP_SECONDS = 3600.0


@dataclass(frozen=True)
class CacheEntry:
    """A cached result: which key, where its bytes are, who made it, until when it is valid."""

    key: str
    ref: ResultRef
    task_name: str
    task_run_id: str | None
    #: Epoch seconds (UTC) when the entry was written.
    created: float
    #: Epoch seconds after which the entry is a miss; None: never.
    expires: float | None = None

    def is_expired(self, now: float | None = None) -> bool:
        """True once ``expires`` has passed."""
        return self.expires is not None and self.expires <= (time.time() if now is None else now)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the entry file's content."""
        return {"v": _VERSION, "key": self.key, "ref": self.ref.to_dict(), "task_name": self.task_name,
                "task_run_id": self.task_run_id, "created": self.created, "expires": self.expires}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        """The entry a ``to_dict()`` came from; ValueError, KeyError or TypeError if it is not one."""
        expires = data["expires"]
        entry = cls(data["key"], ResultRef.from_dict(data["ref"]), data["task_name"], data["task_run_id"],
                    float(data["created"]), None if expires is None else float(expires))
        if not isinstance(entry.key, str) or not isinstance(entry.task_name, str):
            raise ValueError(f"not a cache entry: {data!r}")
        return entry

    def as_row(self) -> tuple:
        """The entry as a row of the store's cache_entries table (records.CACHE_COLUMNS)."""
        return (self.key, self.task_name, self.task_run_id, self.ref.format, self.ref.path,
                self.created, self.expires)


class CacheIndex:
    """Cache entries as files under ``root``, safe to share between processes."""

    def __init__(self, root: Path, *, flat: bool = False) -> None:
        self.root = Path(root).absolute()
        self._prefix = str(self.root) + os.sep
        #: entries as ``<root>/<key>`` (a cache policy's key_storage, as Prefect lays it out)
        #: instead of ``<root>/<key[:2]>/<key>.json``.
        self.flat = flat
        self._pattern = "*" if flat else "*/*.json"

    def path(self, key: str) -> Path:
        """The file of ``key``'s entry. Raises ValueError unless ``key`` is a hex digest."""
        return Path(self._file(key))

    def get(self, key: str) -> CacheEntry | None:
        """The live entry for ``key``; None when there is none, it expired, or it is unreadable."""
        file = self._file(key)
        try:
            data = _read_file(file)
        except FileNotFoundError:
            return None
        try:
            raw = json.loads(data)
            if raw.get("v", _VERSION) > _VERSION:
                return None  # written by a newer nbflow: not ours to read or remove
            entry = CacheEntry.from_dict(raw)
            if entry.key != key:
                raise ValueError(f"it holds the entry of key {entry.key!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("Ignoring the damaged cache entry %s (%s: %s); the task will run and "
                           "write a new one.", file, type(exc).__name__, exc)
            return None
        if entry.is_expired():
            self._remove_if_unchanged(file, data)
            return None
        return entry

    def put(self, key: str, ref: ResultRef, *, task_name: str, task_run_id: str | None,
            expires: float | None) -> CacheEntry:
        """Record ``ref`` as the cached result for ``key`` (replacing any older entry)."""
        file = self._file(key)
        entry = CacheEntry(key, ref, task_name, task_run_id, time.time(), expires)
        atomic_write(Path(file), json.dumps(entry.to_dict(), separators=(",", ":")).encode())
        return entry

    def delete(self, key: str) -> bool:
        """Remove ``key``'s entry (not its result file); True if there was one."""
        try:
            os.unlink(self._file(key))
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> int:
        """Remove every entry (result files stay); returns how many were removed."""
        removed = 0
        for file in self.root.glob(self._pattern):
            if self.flat and not _KEY.fullmatch(file.name):
                continue  # not an entry: a key_storage folder may hold other files
            try:
                file.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        cutoff = time.time() - _STALE_TMP_SECONDS
        for tmp in self.root.glob(".*.tmp" if self.flat else "*/.*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:
                pass
        return removed

    def entries(self) -> Iterator[CacheEntry]:
        """Every readable, unexpired entry (for listings and for rebuilding the SQL mirror)."""
        for file in sorted(self.root.glob(self._pattern)):
            key = file.name if self.flat else file.stem
            entry = self.get(key) if _KEY.fullmatch(key) else None
            if entry is not None:
                yield entry

    def _file(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(
                f"Cache key {key!r} is not a lowercase hex digest (16-128 characters of 0-9a-f). "
                f"Cache policies return such keys; a cache_key_fn's string is hashed into one.")
        if self.flat:
            return f"{self._prefix}{key}"
        return f"{self._prefix}{key[:2]}{os.sep}{key}.json"

    def _remove_if_unchanged(self, file: str, data: bytes) -> None:
        """Delete an expired entry unless another process has just replaced it."""
        try:
            if _read_file(file) == data:
                os.unlink(file)
        except FileNotFoundError:
            pass


def _read_file(file: str) -> bytes:
    """The whole file, read with bare os calls: half the cost of ``open()`` for a small file."""
    fd = os.open(file, os.O_RDONLY)
    try:
        chunks = [os.read(fd, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:
            chunks.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return b"".join(chunks)
