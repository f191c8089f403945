"""JupyterLab with nbflow, started and stopped as a user does: no warning at start, and a notebook's
open flow run ends Completed, never Crashed, when JupyterLab is stopped (SIGTERM, as a service
manager or Ctrl-C does). A real Jupyter server and kernel; no browser is needed."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from browser_lab import JupyterLab, execute_in_kernel, start_notebook_session, write_notebook


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None, reason="jupyterlab is not installed")
def test_stopping_jupyter_ends_the_open_notebook_run_completed(tmp_path: Path) -> None:
    lab = JupyterLab(tmp_path, nbflow_home=tmp_path / "nbflow-home")
    lab.start()
    try:
        write_notebook(lab.root_dir / "demo.ipynb", ["%load_ext nbflow"])
        kernel = start_notebook_session(lab, "demo.ipynb")
        execute_in_kernel(lab, kernel, "%load_ext nbflow")
        shown = execute_in_kernel(lab, kernel, "%%task\nx = 41 + 1\nx")
        assert [o["data"]["text/plain"] for o in shown if o["output_type"] == "execute_result"] == ["42"]
        listed = execute_in_kernel(lab, kernel, "%nbflow runs")  # read through the server's SQL route
        table = [o["data"]["text/plain"] for o in listed if o["output_type"] == "execute_result"]
        assert table and "demo" in table[0] and "Running" in table[0], listed
        started = time.monotonic()
        lab.stop()  # SIGTERM while the run is still open (the kernel idles for less than a second)
        # The kernel does not wait for the stopped server: it keeps its records for the next start
        # at once (waiting would get it killed, after 5 s, by Jupyter).
        assert time.monotonic() - started < 4, lab.log_tail()
    finally:
        lab.stop()
    log = lab.log_path.read_text(errors="replace")
    assert "nbflow | extension was successfully loaded" in log
    assert "not recognized by `NbflowApp`" not in log  # --no-browser sets ExtensionApp.open_browser
    summary = lab.flow_run_summary("demo")
    assert summary is not None and summary["state"] == "Completed", (summary, lab.log_tail())
    assert summary["task_states"] == ["Completed"]
