"""`%nbflow debug` in real kernels: a failed %%task cell's variables come back in a fresh kernel,
`--no-keep` keeps nothing, and `--pdb` opens the debugger at the failing line through stdin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nbflow
from kernel import run_notebook
from live_kernel import LiveKernel
from nbflow.store.debug_files import DebugDataError

FAILING = ["%load_ext nbflow",
           "import pandas as pd\nsales = pd.DataFrame({'amount': [1.0, -2.0, 3.0]})",
           "%%task check --retries 0\ntotal = sales['amount'].sum()\nassert (sales['amount'] >= 0).all(), 'negative amount'",
           "%%task secret --no-keep\npassword = 'hunter2'\nraise RuntimeError('denied')"]


def test_a_failed_cell_comes_back_in_a_fresh_kernel_and_under_the_debugger(tmp_path: Path) -> None:
    run_notebook(FAILING, tmp_path, allow_errors=True)
    tasks = nbflow.task_runs().set_index("task_name")
    assert tasks.loc["check", "state"] == "Failed" and tasks.loc["secret", "state"] == "Failed"
    with pytest.raises(DebugDataError):  # --no-keep: nothing of it was written
        nbflow.debug(tasks.loc["secret", "id"])
    flow_run_id = tasks.loc["check", "flow_run_id"]

    kernel = LiveKernel(tmp_path)
    try:
        kernel.run("%load_ext nbflow")
        shown = kernel.run(f"%nbflow debug {flow_run_id[:8]} check")
        assert shown.status == "ok", shown.text
        assert "AssertionError: negative amount" in shown.text and "line 2 of the cell" in shown.text
        assert 'File "<%%task cell check>", line 2' in shown.text
        assert "Restored: sales (pandas.DataFrame)" in shown.text
        assert [p["text"] for p in shown.payloads if p["source"] == "set_next_input"] == [FAILING[2]]
        assert kernel.run("sales['amount'].tolist()").text == "[1.0, -2.0, 3.0]"

        debugged = kernel.run(f"%nbflow debug {tasks.loc['check', 'id']} --pdb",
                              answers=["p sales['amount'].min()", "p total", "q"])
        assert debugged.status == "ok", debugged.text
        assert len(debugged.prompts) == 3 and "ipdb" in debugged.prompts[0]
        assert "It raised again: AssertionError: negative amount" in debugged.text
        plain = re.sub(r"\x1b\[[0-9;]*m", "", debugged.text)
        assert re.search(r"----> 2 +assert \(sales\['amount'\] >= 0\)\.all\(\)", plain)  # at the failing line
        assert re.search(r"(?m)^(np\.float64\()?-2\.0\)?$", plain)  # the values at that moment
        assert re.search(r"(?m)^(np\.float64\()?2\.0\)?$", plain)

        kernel.run("from nbflow import flow, task\n@task\ndef half(x: int) -> float:\n    y = x - 4\n    return 1 / y\n"
                   "@flow\ndef halves() -> float:\n    return half(4)\nhalves(return_state=True)\n"
                   "import nbflow\nrun_id = nbflow.runs(flow_name='halves').iloc[0]['id']")
        task_pdb = kernel.run("%nbflow debug $run_id --pdb", answers=["p y", "q"])
        plain = re.sub(r"\x1b\[[0-9;]*m", "", task_pdb.text)
        assert "Restored: x (int)" in plain and re.search(r"----> 5 +return 1 / y", plain)  # the task's own line
        assert re.search(r"(?m)^0$", plain) and len(task_pdb.prompts) == 2

        refused = kernel.run("%nbflow debug 0000ffff")
        assert refused.status == "error" and "has debug data" in refused.text
    finally:
        kernel.stop()
