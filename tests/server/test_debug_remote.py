"""Debug data across NBFLOW_HOMEs, as between machines: a worker with a home of its own sends what a failed
task run kept to the server (a file of more than one chunk included), a client in a third home fetches it,
and a retry resuming on a worker that lost its copy fetches it too. Offers and chunks that are wrong, too
large, out of order or damaged are refused with a clear answer, an interrupted upload resumes where it
stopped, and a server whose disk is full says so while the run keeps its data at home."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

import nbflow
from deployment_helpers import FAST, deploy, start_run, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server
from nbflow.store.api_store import ApiStore
from nbflow.store.debug_uploads import CHUNK_BYTES

MIB = 1024 * 1024
#: the server keeps at most this much of one failed run (its own NBFLOW_FAILED_INPUTS_MAX_BYTES).
SERVER_CAP = 40 * MIB

AUDIT = """
    from fractions import Fraction

    import pandas as pd
    from nbflow import flow, task

    @task
    def load(n: int) -> pd.DataFrame:
        return pd.DataFrame({"amount": [float(i) for i in range(n)]})

    @task
    def check(sales: pd.DataFrame, limit: Fraction, blob: bytes) -> float:
        total = float(sales.amount.sum())
        if total > limit:
            raise ValueError(f"total {total} over {limit}")
        return total

    @flow
    def audit(n: int = 4, blob_mib: int = 0) -> float:
        return check(load(n), Fraction(5), b"x" * (blob_mib * 1024 * 1024))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("server-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16),
                        extra_env={**FAST, "NBFLOW_FAILED_INPUTS_MAX_BYTES": str(SERVER_CAP)})
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture(scope="module")
def remote_worker(server, tmp_path_factory: pytest.TempPathFactory):
    """`nbflow worker start` with an NBFLOW_HOME of its own, reaching the server only through its API."""
    home = tmp_path_factory.mktemp("worker-home")
    status, _ = server.request("POST", "work_pools", {"name": "remote"})
    assert status == 201
    log = home / "worker.log"
    process = subprocess.Popen([sys.executable, "-m", "nbflow", "worker", "start", "--pool", "remote"],
                               env=_home_env(server, home), stdout=open(log, "a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "polling pool" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    try:
        yield home
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def _home_env(server, home: Path) -> dict[str, str]:
    return {**os.environ, **FAST, "NBFLOW_HOME": str(home), "NBFLOW_API_URL": server.url,
            "NBFLOW_API_TOKEN": server.token}


def _use(monkeypatch: pytest.MonkeyPatch, server, home: Path) -> None:
    """This process in `home`, reporting to the server (as a kernel or laptop there would)."""
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    monkeypatch.setenv("NBFLOW_API_URL", server.url)
    monkeypatch.setenv("NBFLOW_API_TOKEN", server.token)


def test_a_remote_workers_failure_is_debugged_at_the_server_and_anywhere_and_resumes_on_a_worker_without_it(
        server, remote_worker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow_file = write_flow_file(tmp_path / "audit.py", AUDIT)
    deploy(server, {"name": "audit", "entrypoint": f"{flow_file}:audit", "work_pool": "remote"})
    run = wait_for(server, start_run(server, "audit", {"n": 5, "blob_mib": 12})["id"])
    assert run["state"] == "Failed", run
    expected = pd.DataFrame({"amount": [0.0, 1.0, 2.0, 3.0, 4.0]})

    # The worker kept it at home and sent it: the server's home holds it, signed with the server's key.
    assert list((remote_worker / "debug" / run["id"]).iterdir())
    assert list((server.home / "debug" / run["id"]).iterdir())
    status, found = server.request("GET", f"flow_runs/{run['id']}/debug")
    assert status == 200, found
    assert found["error"] == "ValueError: total 10.0 over 5"
    assert {v["name"]: v["format"] for v in found["values"]} == {"sales": "parquet", "limit": "pickle",
                                                                 "blob": "pickle"}
    _use(monkeypatch, server, server.home)
    inputs = nbflow.debug(run["id"])
    pd.testing.assert_frame_equal(inputs["sales"], expected)
    assert inputs["limit"] == Fraction(5) and inputs["blob"] == b"x" * (12 * MIB)  # 12 MiB: two chunks

    # A client in a third home (a laptop) finds nothing at home and fetches it from the server, by prefix.
    laptop = tmp_path / "laptop-home"
    _use(monkeypatch, server, laptop)
    inputs = nbflow.debug(run["id"][:8])
    pd.testing.assert_frame_equal(inputs["sales"], expected)
    assert inputs["limit"] == Fraction(5) and len(inputs["blob"]) == 12 * MIB
    assert (laptop / "debug" / run["id"] / inputs.task_run_id / "manifest.json").exists()
    out = tmp_path / "debug.ipynb"
    done = subprocess.run([sys.executable, "-m", "nbflow", "flow-run", "debug", run["id"][:8], "-o", str(out)],
                          capture_output=True, text=True, env=_home_env(server, tmp_path / "other-laptop"),
                          timeout=120)
    assert done.returncode == 0 and f"Wrote {out}" in done.stdout, done.stdout + done.stderr

    # Fixed; the worker lost its copy: the retry fetches the kept inputs and load does not run again.
    flow_file.write_text(flow_file.read_text().replace("return pd.DataFrame", "raise RuntimeError('load ran')\n"
                                                       "    return pd.DataFrame")
                         .replace("if total > limit:", "if total > limit * 100:"))
    shutil.rmtree(remote_worker / "debug")
    status, again = server.request("POST", f"flow_runs/{run['id']}/retry", {"from_failed": True})
    assert status == 201, again
    again = wait_for(server, again["id"])
    assert again["state"] == "Completed", again
    tasks = {t["task_name"]: t for t in server.request("GET", f"flow_runs/{again['id']}/task_runs")[1]}
    assert tasks["load"]["state"] == "Cached" and tasks["check"]["state"] == "Completed"


def test_a_failed_cell_of_a_notebook_run_on_a_remote_worker_comes_back_at_the_server(
        server, remote_worker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = write_notebook(tmp_path / "report.ipynb", "region = 'north'", "%load_ext nbflow",
                              "%%task load\nimport pandas as pd\nraw = pd.DataFrame({'amount': [10.0, -5.0]})",
                              "%%task check\nassert (raw.amount >= 0).all(), 'a negative amount'")
    deploy(server, {"name": "report", "notebook": str(notebook), "work_pool": "remote"})
    run = wait_for(server, start_run(server, "report")["id"])
    assert run["state"] == "Failed", run
    _use(monkeypatch, server, server.home)
    inputs = nbflow.debug(run["id"])
    assert inputs.task_name == "check" and inputs.error == "AssertionError: a negative amount"
    pd.testing.assert_frame_equal(inputs["raw"], pd.DataFrame({"amount": [10.0, -5.0]}))
    assert inputs["region"] == "north"


def test_a_run_keeps_its_data_at_home_and_says_so_when_the_server_refuses_it(
        server, remote_worker: Path, tmp_path: Path) -> None:
    flow_file = write_flow_file(tmp_path / "audit.py", AUDIT)
    deploy(server, {"name": "audit-big", "entrypoint": f"{flow_file}:audit", "work_pool": "remote"})
    run = wait_for(server, start_run(server, "audit-big", {"n": 5, "blob_mib": 45})["id"])
    assert run["state"] == "Failed" and "total 10.0 over 5" in run["state_message"], run
    status, logs = server.request("GET", f"flow_runs/{run['id']}/logs")
    warning = [line["message"] for line in logs if "only on this machine" in line["message"]]
    assert warning and "over the server's size cap of 41,943,040 bytes" in warning[0], logs
    [folder] = (remote_worker / "debug" / run["id"]).iterdir()  # kept at home, not lost
    assert (folder / "sent").read_text().startswith("refused: ")  # and not offered again by the worker
    assert server.request("GET", f"flow_runs/{run['id']}/debug")[0] == 404


KILLED_WHILE_SENDING = """
    import os
    import signal

    from nbflow import flow, task
    from nbflow.store import debug_sync

    def kill_9(folder):
        os.kill(os.getpid(), signal.SIGKILL)  # as the run begins to send what its failed task kept

    debug_sync.share = kill_9

    @task
    def parse(text: str) -> int:
        return int(text)

    @flow
    def ingest(text: str = "twelve") -> int:
        return parse(text)
"""


def test_a_run_killed_while_sending_its_debug_data_has_it_sent_by_its_worker(server, remote_worker: Path,
                                                                             tmp_path: Path) -> None:
    flow_file = write_flow_file(tmp_path / "ingest.py", KILLED_WHILE_SENDING)
    deploy(server, {"name": "ingest", "entrypoint": f"{flow_file}:ingest", "work_pool": "remote"})
    run = wait_for(server, start_run(server, "ingest")["id"])
    assert run["state"] == "Crashed", run
    status, found = server.request("GET", f"flow_runs/{run['id']}/debug")
    assert status == 200, found
    assert found["error"] == "ValueError: invalid literal for int() with base 10: 'twelve'"
    assert [v["name"] for v in found["values"]] == ["text"]


def test_a_worker_sends_what_failed_while_the_server_was_away_when_it_starts(server, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "worker-home"
    folder = _failed_run_folder(home, monkeypatch, b"kept while offline")
    root = folder.parent.name
    assert server.request("GET", f"flow_runs/{root}/debug")[0] == 404
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "nbflow", "worker", "start", "--pool", "offline-pool"],
                              env=_home_env(server, home), stdout=open(log, "a"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while server.request("GET", f"flow_runs/{root}/debug")[0] != 200:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    assert (folder / "sent").read_text() == f"sent to {server.url}\n"
    assert "sent the server the debug data of 1 failed task run(s)" in log.read_text()
    _use(monkeypatch, server, server.home)
    assert nbflow.debug(root)["payload"] == b"kept while offline"


def _failed_run_folder(home: Path, monkeypatch: pytest.MonkeyPatch, blob: bytes) -> Path:
    """Debug data kept by a real failure in `home`, with no server in use (so nothing was sent)."""
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    monkeypatch.delenv("NBFLOW_API_URL", raising=False)

    @nbflow.task
    def store(payload: bytes, label: str) -> None:
        raise RuntimeError(f"cannot store {label}")

    @nbflow.flow
    def archive() -> None:
        store(blob, "report")

    assert archive(return_state=True).is_failed()
    nbflow.flush()
    [folder] = [t for d in (home / "debug").iterdir() for t in d.iterdir()]
    return folder


class _CountingClient(ApiStore):
    """The real API client, counting the bytes each chunk carried."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[int] = []

    def request(self, method: str, path: str, body: bytes | None = None, **kwargs) -> bytes:
        if method == "PUT":
            self.sent.append(len(body or b""))
        return super().request(method, path, body, **kwargs)


def _offer(folder: Path) -> tuple[str, dict]:
    from nbflow.store import debug_files

    manifest = debug_files.read_manifest(folder)
    files = debug_files.checked_files(manifest)
    manifest.pop("folder")
    return manifest["root_flow_run_id"], {"task_run_id": manifest["task_run_id"], "manifest": manifest, "files": files}


def test_an_interrupted_upload_resumes_where_the_server_stopped(server, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.store import debug_sync

    blob = os.urandom(10 * MIB)
    folder = _failed_run_folder(tmp_path / "offline-home", monkeypatch, blob)
    root, offer = _offer(folder)
    task_run_id = offer["task_run_id"]
    status, answer = server.request("POST", f"flow_runs/{root}/debug_files", offer)
    assert status == 200 and not answer["complete"], answer
    big = max(answer["missing"], key=lambda m: m["bytes"])
    assert big["received"] == 0 and big["bytes"] > CHUNK_BYTES
    first = (folder / "values" / big["name"]).read_bytes()[:CHUNK_BYTES]
    status, answer = server.request("PUT", f"flow_runs/{root}/debug_files/{task_run_id}/{big['name']}?position=0",
                                    first, headers={"Content-Type": "application/octet-stream"})
    assert status == 200 and not answer["complete"], answer
    # the connection broke here; a later upload sends only what is missing
    client = _CountingClient(server.url, server.token)
    debug_sync.upload(client, folder)
    assert sum(client.sent) == sum(f["bytes"] for f in offer["files"]) - CHUNK_BYTES
    status, found = server.request("GET", f"flow_runs/{root}/debug")
    assert status == 200 and found["error"] == "RuntimeError: cannot store report", found
    # offered again (the sender did not hear the answer): kept already
    status, answer = server.request("POST", f"flow_runs/{root}/debug_files", offer)
    assert (status, answer) == (200, {"complete": True, "missing": []})
    _use(monkeypatch, server, tmp_path / "laptop")
    assert nbflow.debug(task_run_id)["payload"] == blob


def test_bad_offers_and_chunks_get_clear_refusals(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _failed_run_folder(tmp_path / "offline-home", monkeypatch, b"abc")
    root, offer = _offer(folder)
    task_run_id = offer["task_run_id"]
    route = f"flow_runs/{root}/debug_files"
    octets = {"Content-Type": "application/octet-stream"}
    chunk_route = f"{route}/{task_run_id}/{offer['files'][0]['name']}"

    status, body = server.request("PUT", chunk_route + "?position=0", b"abc", headers=octets)
    assert status == 409 and "offer it first: POST" in body["message"], body
    json_file = next(f for f in offer["files"] if f["name"].endswith(".json"))
    wrong = json.loads(json.dumps(offer))
    next(f for f in wrong["files"] if f["name"] == json_file["name"])["sha256"] = "0" * 64
    status, body = server.request("POST", route, wrong)
    assert (status, body["field"]) == (422, "files") and "digest" in body["message"], body
    status, body = server.request("POST", route, {**offer, "files": offer["files"][:-1]})
    assert (status, body["field"]) == (422, "files") and "each file the manifest" in body["message"], body
    huge = json.loads(json.dumps(offer))
    for f in huge["files"]:
        f["bytes"] = SERVER_CAP
    status, body = server.request("POST", route, huge)
    assert status == 413 and "size cap of 41,943,040 bytes" in body["message"], body
    status, body = server.request("POST", f"flow_runs/{'f' * 32}/debug_files", offer)
    assert (status, body["field"]) == (422, "manifest.root_flow_run_id"), body
    status, body = server.request("POST", f"flow_runs/{root[:8]}/debug_files", offer)
    assert (status, body["field"]) == (422, "id") and "not a prefix" in body["message"], body
    status, body = server.request("POST", route, {**offer, "manifest": {**offer["manifest"], "kind": "script"}})
    assert (status, body["field"]) == (422, "manifest.kind"), body

    status, answer = server.request("POST", route, offer)
    assert status == 200 and len(answer["missing"]) == len(offer["files"]), answer
    pickled = next(f for f in offer["files"] if f["name"].endswith(".pkl") and f["name"] != "__function__.pkl")
    data = (folder / "values" / pickled["name"]).read_bytes()
    put = f"{route}/{task_run_id}/{pickled['name']}"
    status, body = server.request("PUT", f"{put}?position=5", data, headers=octets)
    assert (status, body["field"]) == (409, "position") and "position=0" in body["message"], body
    status, body = server.request("PUT", f"{put}?position=x", data, headers=octets)
    assert (status, body["field"]) == (422, "position"), body
    status, body = server.request("PUT", f"{put}?position=0", data + b"!", headers=octets)
    assert status == 422 and f"offered with {len(data)} bytes" in body["message"], body
    tampered = bytes([data[0] ^ 1]) + data[1:]
    status, body = server.request("PUT", f"{put}?position=0", tampered, headers=octets)
    assert status == 422 and "do not have the sha256 offered" in body["message"], body
    status, body = server.request("PUT", f"{route}/{task_run_id}/nothing.pkl?position=0", data, headers=octets)
    assert status == 404 and "has no file 'nothing.pkl'" in body["message"], body
    status, body = server.request("PUT", f"{put}?position=0", b"x" * (CHUNK_BYTES + 1), headers=octets)
    assert status == 413, body
    for entry in offer["files"]:
        status, answer = server.request("PUT", f"{route}/{task_run_id}/{entry['name']}?position=0",
                                        (folder / "values" / entry["name"]).read_bytes(), headers=octets)
        assert status == 200, answer
    assert answer == {"complete": True, "missing": []}
    status, body = server.request("PUT", f"{put}?position=0", data, headers=octets)
    assert status == 409 and "kept already" in body["message"], body
    other = {**offer, "manifest": {**offer["manifest"], "task_name": "another"}}
    status, body = server.request("POST", route, other)
    assert status == 409 and "is not replaced" in body["message"], body

    status, listed = server.request("GET", route)
    assert status == 200 and [item["task_run_id"] for item in listed] == [task_run_id]
    status, raw = server.request("GET", f"{route}/{task_run_id}/{pickled['name']}")
    assert status == 200 and hashlib.sha256(raw).hexdigest() == pickled["sha256"]
    assert server.request("GET", f"{route}/{task_run_id}/manifest.json")[0] == 404
    assert server.request("GET", f"flow_runs/{'e' * 32}/debug_files")[1] == []


def test_a_modified_debug_file_is_neither_sent_nor_served(server, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.store import debug_files, debug_sync

    folder = _failed_run_folder(tmp_path / "offline-home", monkeypatch, b"the payload")
    root, offer = _offer(folder)
    pickled = next(f["name"] for f in offer["files"] if f["name"].endswith(".pkl") and f["name"] != "__function__.pkl")
    original = (folder / "values" / pickled).read_bytes()
    (folder / "values" / pickled).write_bytes(original.replace(b"the payload", b"the paYload"))
    with pytest.raises(debug_files.DebugDataError, match="was modified after it was written"):
        debug_sync.upload(ApiStore(server.url, server.token), folder)
    assert server.request("GET", f"flow_runs/{root}/debug")[0] == 404  # nothing was offered

    (folder / "values" / pickled).write_bytes(original)
    debug_sync.upload(ApiStore(server.url, server.token), folder)
    kept = server.home / "debug" / root / offer["task_run_id"] / "values" / pickled
    kept.write_bytes(kept.read_bytes().replace(b"the payload", b"the paYload"))  # modified on the server
    status, body = server.request("GET", f"flow_runs/{root}/debug_files")
    assert status == 404 and "was modified after it was written" in body["message"], body
    status, body = server.request("GET", f"flow_runs/{root}/debug_files/{offer['task_run_id']}/{pickled}")
    assert status == 404 and "was modified after it was written" in body["message"], body


def test_a_server_with_a_full_disk_says_so(server, small_disk: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from nbflow.store import debug_sync
    from nbflow.errors import StoreError

    folder = _failed_run_folder(tmp_path / "offline-home", monkeypatch, os.urandom(9 * MIB))
    debug = server.home / "debug"
    saved = server.home / "debug.saved"
    if debug.exists():
        debug.rename(saved)
    debug.symlink_to(small_disk)  # the server's debug data on a 6 MiB disk
    try:
        with pytest.raises(StoreError) as refused:
            debug_sync.upload(ApiStore(server.url, server.token), folder)
        assert getattr(refused.value, "status", None) == 507
        assert "The server's disk is full" in str(refused.value) and "send it again" in str(refused.value)
    finally:
        debug.unlink()
        if saved.exists():
            saved.rename(debug)
