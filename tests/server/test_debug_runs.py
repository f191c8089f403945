"""Debugging failed deployment runs against a live server: a notebook whose third %%task cell fails on a
bad row comes back in a fresh kernel, a @task failing in a flow run by `nbflow worker start` gives back
its arguments, and `nbflow flow-run debug -o` writes a notebook that runs."""

from __future__ import annotations

import base64
import os
import pickle
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

import nbflow
from deployment_helpers import FAST, deploy, start_run, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server

sys.path.insert(0, str(Path(__file__).parents[1] / "notebook"))
from live_kernel import LiveKernel  # noqa: E402 - the kernel helper of the notebook tests

CHECK_CELL = """%%task check
for i, row in sales.iterrows():
    assert row.amount >= 0, f"bad row {i}: amount {row.amount}"
"""
FIXED_CELL = CHECK_CELL.replace("for i, row in sales", "for i, row in sales[sales.amount >= 0]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("debug-home")
    live = start_server(home, home / "server.log", secrets.token_hex(16), extra_env=FAST)
    try:
        yield live
    finally:
        stop_server(live)


@pytest.fixture
def as_client(server, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process uses the server's home and API, as a kernel the server started would."""
    for name, value in server.client_env().items():
        if name.startswith("NBFLOW_"):
            monkeypatch.setenv(name, value)


def test_a_failed_notebook_cell_comes_back_in_a_fresh_kernel_and_the_run_resumes_there(server, as_client,
                                                                                     tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "sales.ipynb", "region = 'north'", "%load_ext nbflow",
                              "%%task load\nimport pandas as pd\n"
                              "raw = pd.DataFrame({'amount': [10.0, -5.0, 30.0], 'units': [1, 2, 3]})",
                              "%%task enrich\nsales = raw.assign(price=raw.amount / raw.units, region=region)",
                              CHECK_CELL)
    deploy(server, {"name": "sales", "notebook": str(notebook)})
    run = wait_for(server, start_run(server, "sales")["id"])
    assert run["state"] == "Failed", run
    expected = pd.DataFrame({"amount": [10.0, -5.0, 30.0], "units": [1, 2, 3]})
    expected = expected.assign(price=expected.amount / expected.units, region="north")

    status, found = server.request("GET", f"flow_runs/{run['id'][:8]}/debug")
    assert status == 200, found
    assert found["task_name"] == "check" and found["kind"] == "cell"
    assert found["error"] == "AssertionError: bad row 1: amount -5.0"
    assert {"sales", "raw", "region"} <= {v["name"] for v in found["values"]}
    assert found["modules"] == {"pd": "pandas"}
    status, page = server.request("GET", f"flow_runs/{run['id']}/debug_notebook")
    assert status == 200 and page["nbformat"] == 4
    assert page["cells"][1]["source"] == f"%load_ext nbflow\n%nbflow debug {found['task_run_id']}"
    assert page["cells"][2]["source"] == CHECK_CELL.rstrip()
    assert server.request("GET", "flow_runs/00000000/debug")[0] == 404

    kernel = LiveKernel(tmp_path, server.client_env())
    try:
        kernel.run("%load_ext nbflow")
        shown = kernel.run(f"%nbflow debug {run['id'][:8]}")
        assert shown.status == "ok", shown.text
        assert "AssertionError: bad row 1: amount -5.0" in shown.text and "line 2 of the cell" in shown.text
        assert "open (" not in shown.text  # the kernel's own names are not the notebook's variables
        assert [p["text"] for p in shown.payloads if p["source"] == "set_next_input"] == [CHECK_CELL.rstrip()]
        back = kernel.run("import base64, pickle\nprint(base64.b64encode(pickle.dumps(sales)).decode())")
        pd.testing.assert_frame_equal(pickle.loads(base64.b64decode(back.text)), expected)  # same shape, values, dtypes
        fixed = kernel.run(FIXED_CELL)
        assert fixed.status == "ok", fixed.text
    finally:
        kernel.stop()

    # The fix goes into the notebook, whose first cells must not run again: the retry resumes at `check`.
    source = nbformat.read(notebook, as_version=4)
    source.cells[2].source = "%%task load\nraise RuntimeError('the load cell ran again')"
    source.cells[4].source = FIXED_CELL
    source.cells.append(nbformat.v4.new_code_cell("print('rows kept', len(sales[sales.amount >= 0]))"))
    nbformat.write(source, notebook)
    done = subprocess.run([sys.executable, "-m", "nbflow", "flow-run", "retry", run["id"][:8], "--from-failed",
                           "--watch"], capture_output=True, text=True, env=os.environ.copy(), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    status, runs = server.request("GET", "flow_runs?flow_name=sales")
    again = server.request("GET", f"flow_runs/{runs[0]['id']}")[1]
    assert again["id"] != run["id"] and again["state"] == "Completed"
    assert again["triggered_by"] == f"Retry of flow run {run['id']} from its failed task run {found['task_run_id']}"
    tasks = server.request("GET", f"flow_runs/{again['id']}/task_runs")[1]
    assert [t["task_name"] for t in tasks] == ["check"]  # load and enrich were not recomputed
    assert "rows kept 2" in Path(again["output_notebook"]).read_text()
    refused = server.request("POST", f"flow_runs/{again['id']}/retry", {"from_failed": True})
    assert refused[0] == 409 and "kept no inputs" in refused[1]["message"]


def _start_worker(server, pool: str, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "nbflow", "worker", "start", "--pool", pool],
                               env={**server.client_env(), **FAST}, stdout=open(log, "a"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "polling pool" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process


SCORING = """
    import threading
    from nbflow import flow, task

    @task
    def load(n: int) -> list:
        return list(range(n))

    @task
    def score(rows: list, threshold: float, guard: object) -> float:
        total = sum(rows)
        if total > threshold:
            raise ValueError(f"total {total} over threshold {threshold}")
        return total

    @flow
    def scoring(n: int = 4) -> float:
        return score(load(n), 5.0, threading.Lock())
"""


def test_a_task_failing_on_a_worker_gives_back_its_arguments_a_debug_notebook_and_a_retry(server, as_client,
                                                                                          tmp_path: Path) -> None:
    flow_file = write_flow_file(tmp_path / "scoring.py", SCORING)
    status, _ = server.request("POST", "work_pools", {"name": "debugging"})
    assert status == 201
    deploy(server, {"name": "scoring", "entrypoint": f"{flow_file}:scoring", "work_pool": "debugging"})
    worker = _start_worker(server, "debugging", tmp_path / "worker.log")
    try:
        run = wait_for(server, start_run(server, "scoring", {"n": 5})["id"])
        assert run["state"] == "Failed", run

        inputs = nbflow.debug(run["id"])
        assert dict(inputs) == {"rows": [0, 1, 2, 3, 4], "threshold": 5.0}
        assert inputs.error == "ValueError: total 10 over threshold 5.0"
        assert [s["name"] for s in inputs.skipped] == ["guard"] and "cannot pickle" in inputs.skipped[0]["reason"]

        out = tmp_path / "debug.ipynb"
        done = subprocess.run([sys.executable, "-m", "nbflow", "flow-run", "debug", run["id"][:8], "-o", str(out)],
                              capture_output=True, text=True, env=os.environ.copy(), timeout=120)
        assert done.returncode == 0, done.stderr
        assert "not kept: guard" in done.stdout and f"Wrote {out}" in done.stdout
        notebook = nbformat.read(out, as_version=4)
        notebook.cells[-1].source = notebook.cells[-1].source.replace("guard=guard", "guard=None")
        NotebookClient(notebook, timeout=120, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        restored = "".join(o.get("text", "") for o in notebook.cells[1].outputs)
        assert "Restored: rows (list), threshold (float)" in restored
        assert notebook.cells[2].source.startswith("import threading\nfrom nbflow import flow, task\n\ndef score(rows")
        error = [o for o in notebook.cells[-1].outputs if o["output_type"] == "error"]
        assert error and error[0]["evalue"] == "total 10 over threshold 5.0"  # the failing moment, again

        # fixed, and load must not run again: the retry resumes at score with load's kept result
        flow_file.write_text(flow_file.read_text().replace("return list(range(n))", "raise RuntimeError('load ran')")
                             .replace("5.0, threading", "50.0, threading"))
        status, again = server.request("POST", f"flow_runs/{run['id']}/retry", {"from_failed": True})
        assert status == 201, again
        again = wait_for(server, again["id"])
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    assert again["state"] == "Completed", again
    # A flow deployment's run is one record: the flow's task runs are the retry's own.
    tasks = {t["task_name"]: t for t in server.request("GET", f"flow_runs/{again['id']}/task_runs")[1]}
    assert tasks["load"]["state"] == "Cached" and "kept when the run it fed failed" in tasks["load"]["state_message"]
    assert tasks["score"]["state"] == "Completed"
