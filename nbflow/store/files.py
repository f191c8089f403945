"""Files that other processes may read at any moment: written whole or not at all."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path: Path, data: bytes | bytearray | memoryview, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``, so a concurrent
    reader sees the old file or the new one, never half of one.

    No fsync: after a power cut a file may be empty or torn, which its reader's checksum
    catches (a cache miss), so durability is not worth a disk flush per result.
    """
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
