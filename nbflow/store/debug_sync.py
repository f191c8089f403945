"""A client's side of moving debug data between its NBFLOW_HOME and the server's.

A process that sends its run records to a server (a worker's run on another machine, with its own
NBFLOW_HOME) also sends the server what a failed task run kept, so `%nbflow debug` works where the
server runs; a process that finds no debug data at home asks the server for it (a retry resuming on
another worker, `nbflow flow-run debug` on a laptop). Both sides keep the data as their own:
files checked by sha256 on arrival, pickles signed again with the receiving home's key.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

from nbflow.errors import StoreError
from nbflow.store import backend, debug_files
from nbflow.store.debug_files import DebugDataError
from nbflow.store.debug_uploads import CHUNK_BYTES, folder_of
from nbflow.store.files import atomic_write

#: offers made for one upload before giving up (the server lost an offer, or another sender raced).
_ROUNDS = 3
#: written in a failed task run's folder once a server took its data (or refused it for good).
SENT = "sent"
#: the server will not take this data, whenever it is sent: do not send it again.
_FINAL_REFUSALS = (413, 422)


def share(folder: Path) -> bool:
    """Send a failed task run's debug data to the server this process reports to, if any; True when the
    server keeps it (it shares this home, or every file arrived)."""
    client = backend.api_client()
    if client is None:
        return False
    _send_and_mark(client, folder)
    return True


def share_pending(client: Any, flow_run_id: str | None = None) -> int:
    """Send the failures kept here that no server took yet (the server was away, or the run was killed
    while sending), those of one outermost flow run or all; how many the server took. Stops at the first
    server that does not answer (StoreError)."""
    root = debug_files.debug_root() / flow_run_id if flow_run_id else debug_files.debug_root()
    pattern = f"*/{debug_files.MANIFEST}" if flow_run_id else f"*/*/{debug_files.MANIFEST}"
    sent = 0
    for manifest in sorted(root.glob(pattern)) if root.is_dir() else ():
        folder = manifest.parent
        if (folder / SENT).exists():
            continue
        try:
            _send_and_mark(client, folder)
        except DebugDataError:
            continue  # damaged or modified since: not sent, and loading it here says why
        except StoreError as exc:
            if getattr(exc, "status", None) not in _FINAL_REFUSALS:
                raise
            continue
        sent += 1
    return sent


def _send_and_mark(client: Any, folder: Path) -> None:
    try:
        upload(client, folder)
    except StoreError as exc:
        if getattr(exc, "status", None) in _FINAL_REFUSALS:
            atomic_write(folder / SENT, f"refused: {exc}\n".encode())
        raise
    atomic_write(folder / SENT, f"sent to {client.url}\n".encode())


def upload(client: Any, folder: Path) -> None:
    """Offer the data in `folder`, then send the bytes the server lacks, resuming where it stopped."""
    manifest = debug_files.read_manifest(folder)
    root = manifest.get("root_flow_run_id") or manifest["task_run_id"]
    files = debug_files.checked_files(manifest)
    offer = json.dumps({"task_run_id": manifest["task_run_id"], "files": files,
                        "manifest": {k: v for k, v in manifest.items() if k != "folder"}}).encode()
    for _ in range(_ROUNDS):
        answer = json.loads(client.request("POST", f"flow_runs/{root}/debug_files", offer))
        if answer["complete"]:
            return
        try:
            for missing in answer["missing"]:
                answer = _send(client, root, manifest["task_run_id"], folder / "values" / missing["name"],
                               missing["received"])
        except StoreError as exc:
            if getattr(exc, "status", None) in (409, 422):  # the server's copy moved on, or arrived damaged
                continue
            raise
        if answer["complete"]:
            return
    raise StoreError(f"The nbflow server at {client.url} did not take the debug data of task run "
                     f"{manifest['task_run_id']} after {_ROUNDS} tries.")


def _send(client: Any, root: str, task_run_id: str, path: Path, position: int) -> dict[str, Any]:
    """PUT one file from `position` on, in chunks; the server's last answer."""
    answer: dict[str, Any] = {"complete": False, "missing": []}
    route = f"flow_runs/{root}/debug_files/{task_run_id}/{urllib.parse.quote(path.name)}"
    with open(path, "rb") as f:
        f.seek(position)
        while True:
            chunk = f.read(CHUNK_BYTES)
            if not chunk:
                return answer
            answer = json.loads(client.request("PUT", f"{route}?position={position}", chunk,
                                          content_type="application/octet-stream"))
            position += len(chunk)


def find(run_id: str) -> list[dict[str, Any]]:
    """The manifests of a run's failed task runs (debug_files.find), fetched from the server first when
    this home has none and the process reports to a server."""
    found = debug_files.find(run_id)
    if found:
        return found
    client = backend.api_client()
    if client is None:
        return found
    try:
        fetched = download(client, run_id)
    except StoreError as exc:
        if getattr(exc, "status", None) == 404:
            return []
        raise DebugDataError(f"No debug data of run {run_id!r} is kept here, and asking the nbflow server for it "
                             f"failed: {exc}") from None
    return debug_files.find(run_id) if fetched else []


def download(client: Any, run_id: str) -> int:
    """Fetch the server's debug data of a run into this home; how many failed task runs' data came."""
    fetched = 0
    for item in json.loads(client.request("GET", f"flow_runs/{run_id}/debug_files")):
        folder = folder_of(item["root_flow_run_id"], item["task_run_id"])
        if (folder / debug_files.MANIFEST).exists():
            continue
        for entry in item["files"]:
            route = (f"flow_runs/{item['root_flow_run_id']}/debug_files/{item['task_run_id']}/"
                     f"{urllib.parse.quote(entry['name'])}")
            data = client.request("GET", route, accept="application/octet-stream")
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise StoreError(f"The debug file {entry['name']} of task run {item['task_run_id']} arrived "
                                 "damaged (its sha256 differs from the server's); try again.")
            atomic_write(folder / "values" / Path(entry["name"]).name, data)
        debug_files.adopt(folder, item["manifest"])
        fetched += 1
    return fetched
