"""Debug data of failed task runs: what each saw, kept as files under ``<home>/debug``.

One folder per failed task run, ``<home>/debug/<flow_run_id>/<task_run_id>/`` (the outermost flow
run: a deployment's run holds the failures of the flows it called), holding a
signed ``manifest.json`` (the failure, the code, the values and what was skipped) and one
file per value under ``values/``, written by the ResultStore exactly as results are (JSON,
Parquet, signed cloudpickle) and verified the same way before loading. Keeping it in files
means a worker on the server's machine needs no API round trip, and the folder of a flow run
is found from an id prefix by listing, without the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
from pathlib import Path
from typing import Any

from nbflow import settings
from nbflow.errors import NbflowError, ResultIntegrityError
from nbflow.store.files import atomic_write
from nbflow.store.results import SIGNED_FORMATS, ResultRef, ResultStore, file_blocks

#: signed along with each manifest, so no other signature made with the home's key verifies one.
_MANIFEST_DOMAIN = b"nbflow-debug-manifest-v1\0"
#: the folder of task runs that ran outside any flow run.
NO_FLOW_RUN = "no-flow-run"
MANIFEST = "manifest.json"


class DebugDataError(NbflowError, LookupError):
    """There is no usable debug data for a run (none kept, unknown id, or it failed its check)."""


def debug_root() -> Path:
    return settings.home() / "debug"


def run_folder(flow_run_id: str | None, task_run_id: str) -> Path:
    return debug_root() / (flow_run_id or NO_FLOW_RUN) / task_run_id


def files_of(manifest: dict[str, Any]) -> dict[str, dict[str, str]]:
    """File name under ``values/`` -> its ref, for every file a manifest names (values and function)."""
    refs = [entry["ref"] for entry in manifest["values"].values()]
    if manifest.get("function"):
        refs.append(manifest["function"])
    return {Path(ref["path"]).name: ref for ref in refs}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for block in file_blocks(path):
        digest.update(block)
    return digest.hexdigest()


def checked_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Each file a read manifest names, {"name", "bytes", "sha256"}, each checked by checked_file."""
    folder = Path(manifest["folder"])
    return [{"name": name, "bytes": (folder / "values" / name).stat().st_size,
             "sha256": checked_file(folder, name, ref)} for name, ref in files_of(manifest).items()]


def checked_file(folder: Path, name: str, ref: dict[str, str], data: bytes | None = None) -> str:
    """The sha256 of a file of kept debug data (`data`: its bytes, already read), after the check a load
    makes (a pickle's signature, else its sha256): a modified file is refused here rather than passed on
    to a home that would sign it as its own."""
    path = folder / "values" / name
    try:
        digest, sha256 = value_store(folder).digests(ref["format"], file_blocks(path) if data is None else [data])
    except FileNotFoundError:
        raise DebugDataError(f"Debug file {path} is missing (deleted after it was written).") from None
    if not hmac.compare_digest(digest, str(ref["digest"])):
        raise DebugDataError(f"Debug file {path} was modified after it was written: its digest does not match "
                             "the one recorded with it. It will not be used.")
    return sha256


def adopt(folder: Path, manifest: dict[str, Any]) -> None:
    """Keep debug data made in another NBFLOW_HOME (a worker's, or the server's), its files already in
    ``folder/values`` and checked against their sha256: pickles are signed with this home's key (the
    other digests are sha256s, the same in every home), then the manifest."""
    manifest = json.loads(json.dumps({k: v for k, v in manifest.items() if k != "folder"}))
    store = value_store(folder)
    for name, ref in files_of(manifest).items():
        ref["path"] = name
        if ref["format"] in SIGNED_FORMATS:
            ref["digest"] = store.digests(ref["format"], file_blocks(folder / "values" / name))[0]
    write_manifest(folder, manifest, store)


def value_store(folder: Path) -> ResultStore:
    """The ResultStore that writes and verifies a failed run's values (the home's signing key)."""
    return ResultStore(folder / "values", key_path=settings.home() / "hmac.key")


def write_manifest(folder: Path, manifest: dict[str, Any], store: ResultStore) -> None:
    """Sign and write the manifest last: a folder without one is an unfinished capture."""
    manifest = json.loads(json.dumps(manifest, default=str))  # what a reader will see, signed as such
    body = canonical(manifest)
    signed = {"manifest": manifest, "signature": store.sign(body, _MANIFEST_DOMAIN)}
    atomic_write(folder / MANIFEST, json.dumps(signed, indent=1, default=str).encode())


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a failed run's folder, after checking its signature."""
    path = folder / MANIFEST
    try:
        signed = json.loads(path.read_bytes())
        manifest, signature = signed["manifest"], signed["signature"]
    except FileNotFoundError:
        raise DebugDataError(f"The debug data in {folder} is incomplete (no {MANIFEST}).") from None
    except (ValueError, KeyError, TypeError):
        raise DebugDataError(f"Debug file {path} is damaged (not nbflow's JSON); it will not be used.") from None
    expected = value_store(folder).sign(canonical(manifest), _MANIFEST_DOMAIN)
    if not isinstance(signature, str) or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise DebugDataError(
            f"Debug file {path} was modified after it was written: its signature does not match. "
            "It will not be loaded.")
    manifest["folder"] = str(folder)
    return manifest


def load_value(manifest: dict[str, Any], name: str) -> Any:
    """One kept value, verified like a stored result (a modified file is refused)."""
    entry = manifest["values"][name]
    folder = Path(manifest["folder"])
    ref = ResultRef.from_dict({**entry["ref"], "path": str(folder / "values" / Path(entry["ref"]["path"]).name)})
    try:
        return value_store(folder).read(ref)
    except ResultIntegrityError as exc:
        text = str(exc).replace("and the task will be recomputed", "so it is not restored") \
                       .replace("; the task will be recomputed", "; it is not restored")
        raise DebugDataError(f"Debug value {name!r}: {text}") from None


def find(run_id: str) -> list[dict[str, Any]]:
    """Manifests of the failed task runs a run id (or unique prefix) names, oldest failure first:
    the task run itself, or every failed task run of a flow run (and of the flows it called)."""
    root = debug_root()
    if not root.is_dir() or not run_id:
        return []
    flows = [d for d in root.iterdir() if d.is_dir()]
    tasks = [t for d in flows for t in d.iterdir() if t.name.startswith(run_id) and (t / MANIFEST).exists()]
    matched = [d for d in flows if d.name.startswith(run_id) and d.name != NO_FLOW_RUN]
    exact_tasks = [t for t in tasks if t.name == run_id]
    exact_flows = [d for d in matched if d.name == run_id]
    if exact_tasks or exact_flows:
        tasks, matched = exact_tasks, exact_flows
    candidates = [t.name for t in tasks] + [d.name for d in matched]
    if len(candidates) > 1:
        raise DebugDataError(f"The id prefix {run_id!r} matches {len(candidates)} runs "
                             f"({', '.join(c[:12] for c in candidates[:5])}); give more of the id.")
    if tasks:
        return [read_manifest(tasks[0])]
    if matched:
        manifests = [read_manifest(t) for t in matched[0].iterdir() if (t / MANIFEST).exists()]
    else:  # a flow run called inside another one: its failures are kept under the outer run
        manifests = [m for m in (_readable(t) for d in flows for t in d.iterdir() if (t / MANIFEST).exists())
                     if m is not None and (m.get("flow_run_id") or "").startswith(run_id)]
        if len({m["flow_run_id"] for m in manifests}) > 1:
            raise DebugDataError(f"The id prefix {run_id!r} matches several flow runs; give more of the id.")
    return sorted(manifests, key=lambda m: m.get("failed_at") or 0)


def _readable(folder: Path) -> dict[str, Any] | None:
    """A manifest while searching others: one that fails its check is not this run's problem."""
    try:
        return read_manifest(folder)
    except DebugDataError:
        return None


def prune(days: float, now: float | None = None) -> int:
    """Delete the debug data of failures older than ``days``; return how many runs' data went."""
    root = debug_root()
    if not root.is_dir():
        return 0
    limit = (now or time.time()) - days * 86400
    removed = 0
    for flow_dir in root.iterdir():
        if not flow_dir.is_dir():
            continue
        for folder in list(flow_dir.iterdir()):
            try:
                if folder.stat().st_mtime < limit:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        try:
            flow_dir.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def canonical(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's signature covers (its folder is where it was read, not part of it)."""
    return json.dumps({k: v for k, v in manifest.items() if k != "folder"}, sort_keys=True,
                      separators=(",", ":"), default=str).encode()
