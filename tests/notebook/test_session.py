"""The notebook's flow runs as a Jupyter user meets them, in real kernels driven cell by cell:
one run per stretch of execution that ends when the kernel idles, `%nbflow runs`, Out[n], an
interrupt, and a kernel stopped by SIGTERM ending its open run instead of leaving it to be marked
Crashed."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import nbflow
from kernel import LiveKernel
from nbflow import flow

LOAD = "%load_ext nbflow"


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def runs_of(name: str) -> Any:
    return nbflow.runs(flow_name=name).sort_values("created").reset_index(drop=True)


def text(outputs: list[dict]) -> str:
    return "\n".join(o.get("text") or o.get("data", {}).get("text/plain", "") or o.get("evalue", "")
                     for o in outputs)


def test_each_stretch_of_cells_is_a_flow_run_that_ends_when_the_kernel_idles(tmp_path: Path) -> None:
    @flow(name="elsewhere")
    def elsewhere() -> int:
        return 1

    # cells sent back to back are one stretch, even on a busy machine
    kernel = LiveKernel(tmp_path, env={"JPY_SESSION_NAME": str(tmp_path / "sales.ipynb"),
                                       "NBFLOW_NOTEBOOK_IDLE_SECONDS": "2"})
    try:
        kernel.execute(LOAD)
        first = kernel.execute("%%task --cache load\nrows = [1, 2, 3]\nlen(rows)")
        kernel.execute("%%task\ntotal = sum(rows)")
        # The kernel lives on, idle: the run has ended, Completed, after one attempt.
        assert wait_for(lambda: runs_of("sales")["state"].tolist() == ["Completed"]), runs_of("sales")
        done = runs_of("sales")
        assert done["run_count"][0] == 1
        assert sorted(nbflow.task_runs(done["id"][0])["task_name"]) == ["cell[total]", "load"]
        # Out[n]: the last expression is the cell's result, also when it is a cache hit.
        assert [(o["output_type"], o["data"]["text/plain"]) for o in first] == [("execute_result", "3")]
        again = kernel.execute("%%task --cache load\nrows = [1, 2, 3]\nlen(rows)")
        assert [(o["output_type"], o["data"]["text/plain"]) for o in again] == [("execute_result", "3")]
        picture = "%%task --cache picture\nclass P:\n    def _repr_png_(self):\n        return b'PNG'\nP()"
        for _ in range(2):  # a binary Out[n] (a plot) is kept for the cache hit too
            [shown] = kernel.execute(picture)
            assert shown["output_type"] == "execute_result" and shown["data"]["image/png"] == "UE5H"
        kernel.execute("%%task broken\n1 / 0")
        kernel.execute("import nbflow\n@nbflow.flow\ndef mine():\n    return 2\nmine()")
        elsewhere()  # another notebook's or script's run, newer: not this notebook's
        # The cache hit and the failure are the second run.
        assert wait_for(lambda: runs_of("sales")["state"].tolist() == ["Completed", "Failed"]), runs_of("sales")
        assert "Cell 'broken' ended Failed" in runs_of("sales")["state_message"][1]

        table = kernel.execute("%nbflow runs")[0]["data"]["text/html"]
        header = re.findall(r"<th>(\w*)</th>", table)
        assert header[:7] == ["", "flow", "state", "started", "duration", "tasks", "message"]
        assert header[7] == "run" and "host" not in table and "pid" not in table
        assert "mine" in table and "sales" in table and "elsewhere" not in table
        assert "Cell 'broken' ended Failed" in table
        everything = kernel.execute("%nbflow runs --all")[0]["data"]["text/html"]
        assert "elsewhere" in everything
        graph = kernel.execute("%nbflow graph")  # this notebook's newest run, not the store's
        assert "RunView(flow run 'mine'" in text(graph)
        usage = text(kernel.execute("%nbflow runs --limit 0"))
        assert "--limit must be 1 or more" in usage
    finally:
        kernel.stop()
    assert set(runs_of("sales")["state"]) == {"Completed", "Failed"}  # nothing was left Running


def test_an_interrupt_cancels_the_run_and_sigterm_ends_the_open_run_completed(tmp_path: Path) -> None:
    kernel = LiveKernel(tmp_path, env={"JPY_SESSION_NAME": str(tmp_path / "report.ipynb")})
    started = tmp_path / "started"

    def interrupt_once_started() -> None:
        wait_for(started.exists)
        kernel.manager.interrupt_kernel()  # the notebook's stop button

    try:
        kernel.execute(LOAD)
        stopper = threading.Thread(target=interrupt_once_started)
        stopper.start()
        shown = kernel.execute(f"%%task slow\nimport time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)")
        stopper.join()
        assert [o.get("ename") for o in shown if o["output_type"] == "error"] == ["KeyboardInterrupt"]
        assert wait_for(lambda: runs_of("report")["state"].tolist() == ["Cancelled"]), runs_of("report")
        kernel.execute("%%task\nx = 1")
        os.kill(kernel.pid, signal.SIGTERM)  # within the idle second: the run is still open
        kernel.manager.provisioner.process.wait(20)
    finally:
        kernel.stop()
    run = runs_of("report")
    assert run["state"].tolist() == ["Cancelled", "Completed"], run[["state", "state_message"]]
    assert run["state_message"].tolist()[1] == "The kernel shut down"
