"""The server's side of moving debug data between NBFLOW_HOMEs: a worker on another machine offers a
failed task run's kept inputs and sends the files the server lacks, in chunks; a client on another
machine downloads them.

An upload has three steps, each safe to repeat: `offer` records the manifest and the files (name,
size, sha256) in ``upload.json`` beside them and answers which bytes are missing (a file partly sent
before resumes where it stopped); `receive` appends one chunk at the position the server expects,
and checks a finished file's sha256 before it takes its place; once every file is in, the data is
kept as the server's own (pickles signed with the server's key, the manifest last). A server sharing
the worker's home finds the same signed manifest already there and answers at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from nbflow import settings
from nbflow.errors import NbflowError
from nbflow.store import debug_files
from nbflow.store.files import atomic_write

#: the largest chunk of a file one request carries.
CHUNK_BYTES = 8 * 1024 * 1024
#: the largest kept function (its pickle), apart from the values' size cap.
FUNCTION_MAX_BYTES = 64 * 1024 * 1024
UPLOAD = "upload.json"
PART = ".part"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: one of these guards each folder (by its hash) while a request changes it.
_LOCKS = tuple(threading.Lock() for _ in range(64))


class DebugUploadError(NbflowError):
    """An offer or chunk the server cannot take: its HTTP status, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def folder_of(root_id: str, task_run_id: str) -> Path:
    """The folder of a task run's debug data; `root_id` is its outermost flow run, or the task run's own
    id for a task run outside any flow run."""
    return debug_files.run_folder(None if root_id == task_run_id else root_id, task_run_id)


def offer(root_id: str, task_run_id: str, manifest: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    """Record an offer of a failed task run's debug data (the body already held to its schema); answer
    {"complete", "missing": [{"name", "bytes", "received"}]}."""
    _check_offer(root_id, task_run_id, manifest, files)
    folder = folder_of(root_id, task_run_id)
    offered = _offer_digest(manifest)
    with _lock(folder):
        kept = _kept_manifest(folder)
        if kept is not None:
            if debug_files.canonical(kept) == debug_files.canonical(manifest) or \
                    (kept.get("received") or {}).get("offer") == offered:
                return {"complete": True, "missing": []}  # the same data: kept already (a shared home, or sent again)
            raise DebugUploadError(409, f"The server already keeps other debug data for task run {task_run_id}; "
                                        "it is not replaced.", "task_run_id")
        try:
            (folder / "values").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(exc) from None
        upload = {"offer": offered, "manifest": manifest, "files": files}
        _write(folder / UPLOAD, json.dumps(upload).encode())
        missing = _missing(folder, files)
        if not missing:
            _commit(folder, upload)
        return {"complete": not missing, "missing": missing}


def receive(root_id: str, task_run_id: str, name: str, position: int, data: bytes) -> dict[str, Any]:
    """Append one chunk of an offered file at `position` (where the server's copy ends); a finished file
    is checked and put in place, and the data is kept once nothing is missing."""
    folder = folder_of(root_id, task_run_id)
    with _lock(folder):
        upload = _upload(folder, root_id, task_run_id)
        entry = next((f for f in upload["files"] if f["name"] == name), None)
        if entry is None:
            raise DebugUploadError(404, f"The offer of task run {task_run_id} has no file {name!r}; its files are "
                                        f"{', '.join(f['name'] for f in upload['files']) or 'none'}.", "name")
        final = folder / "values" / name
        part = final.with_name(name + PART)
        if not final.exists():
            received = part.stat().st_size if part.exists() else 0
            if position != received:
                raise DebugUploadError(409, f"The server has {received} bytes of {name!r}; send the chunk that "
                                            f"starts there (position={received}), not at {position}.", "position")
            if received + len(data) > entry["bytes"]:
                raise DebugUploadError(422, f"{name!r} was offered with {entry['bytes']} bytes; this chunk would take "
                                            f"it to {received + len(data)}.", "position")
            try:
                with open(part, "ab") as f:
                    f.write(data)
            except OSError as exc:
                raise _write_error(exc) from None
            if received + len(data) == entry["bytes"]:
                _finish(part, final, entry)
        missing = _missing(folder, upload["files"])
        if not missing:
            _commit(folder, upload)
        return {"complete": not missing, "missing": missing}


def listing(run_id: str) -> list[dict[str, Any]]:
    """The debug data the server keeps for a run id (a flow run, or a task run, or a unique prefix): each
    failed task run's manifest and its files, for a client in another home to download."""
    found = []
    for manifest in debug_files.find(run_id):
        files = debug_files.checked_files(manifest)
        root = manifest.get("root_flow_run_id") or manifest["task_run_id"]
        found.append({"root_flow_run_id": root, "task_run_id": manifest["task_run_id"],
                      "manifest": {k: v for k, v in manifest.items() if k not in ("folder", "received")},
                      "files": files})
    return found


def kept_file(root_id: str, task_run_id: str, name: str) -> bytes:
    """The bytes of a file of kept debug data: only a file its signed manifest names, and only as it
    was written (a modified file is refused, never handed to a home that would sign it as its own)."""
    folder = folder_of(root_id, task_run_id)
    manifest = _kept_manifest(folder)
    if manifest is None:
        raise DebugUploadError(404, f"The server keeps no debug data of task run {task_run_id} under flow run "
                                    f"{root_id}.")
    ref = debug_files.files_of(manifest).get(name)
    if ref is None:
        raise DebugUploadError(404, f"The debug data of task run {task_run_id} has no file {name!r}.", "name")
    data = (folder / "values" / name).read_bytes()
    debug_files.checked_file(folder, name, ref, data)
    return data


def _check_offer(root_id: str, task_run_id: str, manifest: dict[str, Any], files: list[dict[str, Any]]) -> None:
    """What the schema cannot say: the ids agree, the files are those the manifest names, their digests
    agree, and they fit the server's size cap."""
    if manifest["task_run_id"] != task_run_id:
        raise DebugUploadError(422, f"manifest.task_run_id {manifest['task_run_id']} is not the offered task run "
                                    f"{task_run_id}.", "manifest.task_run_id")
    root = manifest.get("root_flow_run_id") or task_run_id
    if root != root_id:
        raise DebugUploadError(422, f"The debug data of task run {task_run_id} belongs under flow run {root} "
                                    f"(manifest.root_flow_run_id), not {root_id}.", "manifest.root_flow_run_id")
    refs = debug_files.files_of(manifest)
    by_name = {f["name"]: f for f in files}
    if len(by_name) != len(files) or set(by_name) != set(refs) or any(r["path"] != n for n, r in refs.items()):
        raise DebugUploadError(422, "files must list each file the manifest's values and function name, once: "
                                    f"{', '.join(sorted(refs)) or 'none'}.", "files")
    for name, ref in refs.items():
        if name.endswith(PART) or name == UPLOAD:
            raise DebugUploadError(422, f"{name!r} is not a name a kept value can have.", "files")
        if ref["format"] != "pickle" and ref["digest"] != by_name[name]["sha256"]:
            raise DebugUploadError(422, f"The manifest's digest of {name!r} is not the sha256 given for the file.",
                                   "files")
    function = (manifest.get("function") or {}).get("path")
    if function is not None and by_name[function]["bytes"] > FUNCTION_MAX_BYTES:
        raise DebugUploadError(413, f"The kept function {function!r} is {by_name[function]['bytes']:,} bytes, over "
                                    f"the {FUNCTION_MAX_BYTES:,} the server takes.", "files")
    cap = settings.failed_inputs_max_bytes()
    total = sum(f["bytes"] for n, f in by_name.items() if n != function)
    if total > cap:
        raise DebugUploadError(413, f"The values are {total:,} bytes, over the server's size cap of {cap:,} bytes "
                                    "(NBFLOW_FAILED_INPUTS_MAX_BYTES where the server runs).", "files")


def _offer_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(debug_files.canonical(manifest)).hexdigest()


def _kept_manifest(folder: Path) -> dict[str, Any] | None:
    if not (folder / debug_files.MANIFEST).exists():
        return None
    try:
        return debug_files.read_manifest(folder)
    except debug_files.DebugDataError:
        return None  # a damaged copy is replaced by the upload


def _upload(folder: Path, root_id: str, task_run_id: str) -> dict[str, Any]:
    try:
        return json.loads((folder / UPLOAD).read_bytes())
    except FileNotFoundError:
        done = " (it is kept already: every file arrived)" if _kept_manifest(folder) is not None else ""
        raise DebugUploadError(409, f"No offer of task run {task_run_id}'s debug data is open{done}; offer it "
                                    f"first: POST nbflow/api/flow_runs/{root_id}/debug_files.") from None
    except (OSError, ValueError):
        raise DebugUploadError(409, f"The offer of task run {task_run_id}'s debug data is damaged; offer it "
                                    "again.") from None


def _missing(folder: Path, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The offered files the server does not hold whole, with the bytes it has of each."""
    missing = []
    for entry in files:
        final = folder / "values" / entry["name"]
        if final.exists():
            continue
        if entry["bytes"] == 0 and entry["sha256"] == EMPTY_SHA256:
            _write(final, b"")
            continue
        part = final.with_name(entry["name"] + PART)
        received = part.stat().st_size if part.exists() else 0
        if received == entry["bytes"] and debug_files.file_sha256(part) == entry["sha256"]:
            os.replace(part, final)  # whole, but the server stopped before putting it in place
            continue
        if received >= entry["bytes"]:  # left by an offer of other bytes under this name
            part.unlink()
            received = 0
        missing.append({"name": entry["name"], "bytes": entry["bytes"], "received": received})
    return missing


def _finish(part: Path, final: Path, entry: dict[str, Any]) -> None:
    """A whole file: in place if its bytes are those offered, else dropped (send it again)."""
    if debug_files.file_sha256(part) != entry["sha256"]:
        part.unlink()
        raise DebugUploadError(422, f"The bytes received for {entry['name']!r} do not have the sha256 offered; "
                                    "they were dropped: send the file again from position 0.", "name")
    os.replace(part, final)


def _commit(folder: Path, upload: dict[str, Any]) -> None:
    """Keep the offered data as this home's own: re-signed, the manifest written last."""
    manifest = {**upload["manifest"], "received": {"offer": upload["offer"], "at": time.time()}}
    try:
        debug_files.adopt(folder, manifest)
    except OSError as exc:
        raise _write_error(exc) from None
    (folder / UPLOAD).unlink()


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise _write_error(exc) from None


def _write_error(exc: OSError) -> DebugUploadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DebugUploadError(507, f"The server's disk is full ({exc.strerror}): the debug data was not kept. "
                                     f"Free space under {debug_files.debug_root()} and send it again.")
    return DebugUploadError(503, f"The server could not write the debug data under {debug_files.debug_root()}: "
                                 f"{exc.strerror or exc}.")


def _lock(folder: Path) -> threading.Lock:
    return _LOCKS[hash(str(folder)) % len(_LOCKS)]
