"""`nbflow run NOTEBOOK`: a real papermill run in a real kernel, recorded as one flow run."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import nbflow
from nbflow.deployments.notebook_params import NotebookParameterError, check_parameters


def _notebook(path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return _notebook(tmp_path / "report.ipynb", [
        ("%load_ext nbflow", []),
        ("n_rows = 3\nlabel = 'default'\nrate = 0.5", ["parameters"]),
        ("%%task build\nrows = list(range(n_rows))", []),
        ("from nbflow import flow\n@flow\ndef summarise(rows: list) -> int:\n    return sum(rows)\n"
         "total = summarise(rows)\nprint(label, total, rate)", []),
    ])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbflow", *args], capture_output=True, text=True,
                          timeout=240, env=os.environ.copy())


def test_run_notebook_records_one_flow_run_with_its_cells_and_flows(report: Path, tmp_path: Path) -> None:
    before = hashlib.sha256(report.read_bytes()).hexdigest()
    out = tmp_path / "out.ipynb"
    done = _cli("run", str(report), "-p", "n_rows", "5", "-p", "label", "weekly", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(report.read_bytes()).hexdigest() == before  # the source is untouched
    executed = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "weekly 10 0.5" in printed
    runs = nbflow.runs()
    top = runs[runs["flow_name"] == "report"].iloc[0]
    assert top["state"] == "Completed" and top["parameters"] == {"n_rows": 5, "label": "weekly"}
    assert top["output_notebook"] == str(out.resolve())
    child = runs[runs["flow_name"] == "summarise"].iloc[0]
    assert child["parent_flow_run_id"] == top["id"]
    tasks = nbflow.task_runs(top["id"])
    assert tasks["task_name"].tolist() == ["build"] and tasks["state"].tolist() == ["Completed"]


def test_unknown_parameter_is_refused_by_name_and_nothing_is_recorded(report: Path) -> None:
    done = _cli("run", str(report), "-p", "n_rowz", "5")
    assert done.returncode == 1
    assert "n_rowz" in done.stderr and "n_rows" in done.stderr and "Traceback" not in done.stderr
    assert nbflow.runs().empty


@pytest.mark.parametrize(("values", "message"), [
    ({"x=1;import os;os.system('touch /tmp/pwned');y": 1}, "not a Python identifier"),
    ({"class": 1}, "not a Python identifier"),
    ({"n_rows": "many"}, "expects a int"),
    ({"rate": "fast"}, "expects a float"),
])
def test_parameter_names_and_values_are_checked_before_papermill(report: Path, values: dict, message: str) -> None:
    with pytest.raises(NotebookParameterError, match=message):
        check_parameters(report, values)


def test_failing_notebook_ends_failed_naming_the_cell_and_error(tmp_path: Path) -> None:
    broken = _notebook(tmp_path / "broken.ipynb", [
        ("x = 1", ["parameters"]), ("print('before')", []), ("raise ValueError('bad input file')", []),
    ])
    done = _cli("run", str(broken))
    assert done.returncode == 1
    assert "Failed" in done.stderr and "ValueError: bad input file" in done.stderr
    run = nbflow.runs().iloc[0]
    assert run["state"] == "Failed" and run["state_message"] == ("Cell 3 of the output notebook "
                                                                 "(`raise ValueError('bad input file')`) raised ValueError: bad input file")
    assert Path(run["output_notebook"]).is_file()  # the failed run's output notebook is kept


def test_a_notebook_without_kernelspec_needs_k_and_runs_with_it(tmp_path: Path) -> None:
    bare = _notebook(tmp_path / "bare.ipynb", [("print('ran', 6 * 7)", [])])
    nb = nbformat.read(bare, as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, bare)
    refused = _cli("run", str(bare))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "no kernelspec" in refused.stderr and "-k python3" in refused.stderr
    unknown = _cli("run", str(bare), "--kernel", "no-such-kernel")
    assert unknown.returncode == 1 and "no kernel named 'no-such-kernel'" in unknown.stderr
    assert "python3" in unknown.stderr  # the installed kernels are listed
    assert nbflow.runs().empty  # nothing half-recorded
    out = tmp_path / "out.ipynb"
    done = _cli("run", str(bare), "-k", "python3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "ran 42" in "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells
                               for o in c.get("outputs", []))
    assert nbflow.runs()["state"].tolist() == ["Completed"]
