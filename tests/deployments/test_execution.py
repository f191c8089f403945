"""One deployment run in a child process: real papermill, real kernels, real process trees."""

from __future__ import annotations

import contextlib
import hashlib
import textwrap
import threading
import time
import uuid
from pathlib import Path

import nbformat
import psutil
import pytest

import nbflow
from nbflow.deployments.execution import Execution, Outcome, RunSpec, execute, output_path

RUN_ID = "0123456789abcdef0123456789abcdef"


def _notebook(path: Path, *cells: str, parameters: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    if parameters:
        nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _notebook_spec(path: Path, parameters: dict | None = None, timeout: float | None = None) -> RunSpec:
    return RunSpec(uuid.uuid4().hex, path.stem, "notebook", str(path), None, parameters or {}, timeout)


def _flow_spec(tmp_path: Path, source: str, name: str, parameters: dict | None = None,
               timeout: float | None = None) -> RunSpec:
    path = tmp_path / "flows.py"
    path.write_text(textwrap.dedent(source))
    return RunSpec(uuid.uuid4().hex, name, "flow", None, f"{path}:{name}", parameters or {}, timeout)


def _gone(pid: int) -> bool:
    """True when the process ended (a zombie nobody reaped counts: PID 1 here may not reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _survivors(run_id: str) -> list[psutil.Process]:
    """Live processes of a run: the child and the kernel inherit NBFLOW_FLOW_RUN_ID in their environment."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("NBFLOW_FLOW_RUN_ID") == run_id and not _gone(process.pid):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _wait_for(path: Path, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while True:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written in {seconds} s")


def _printed(notebook: str) -> str:
    executed = nbformat.read(notebook, as_version=4)
    return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))


# -- notebooks -----------------------------------------------------------------------------------

def test_completed_notebook_keeps_an_output_with_the_parameters_and_leaves_the_source(
        tmp_path: Path, nbflow_home: Path) -> None:
    source = _notebook(tmp_path / "report.ipynb",
                       "import os\nprint('result', n * 2, os.environ['NBFLOW_FLOW_RUN_ID'], "
                       "os.environ['EXTRA'], os.path.basename(os.getcwd()))",
                       parameters="n = 1")
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    spec = _notebook_spec(source, {"n": 21})
    outcome = execute(spec, env={"EXTRA": "from-worker"})
    assert outcome.state == "Completed", outcome.message
    out = Path(outcome.output_notebook)
    assert out.parent == nbflow_home / "runs" / "report" and out.name.endswith(f"-{spec.run_id[:8]}.ipynb")
    assert f"result 42 {spec.run_id} from-worker {tmp_path.name}" in _printed(str(out))
    injected = [c for c in nbformat.read(out, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n = 21" in injected[0].source
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert out.with_suffix(".log").is_file()  # the child's output is kept next to the notebook


def test_failing_cell_is_failed_naming_cell_exception_and_message(tmp_path: Path) -> None:
    source = _notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError(f'bad input {n}')",
                       parameters="n = 0")
    outcome = execute(_notebook_spec(source, {"n": 7}))
    assert outcome.state == "Failed"
    assert outcome.message == ("Cell 4 of the output notebook (`raise ValueError(f'bad input {n}')`) raised "
                               "ValueError: bad input 7")  # parameters, injected, x, raise
    executed = nbformat.read(outcome.output_notebook, as_version=4)
    assert any("ValueError" in str(c.get("outputs")) for c in executed.cells)


def test_a_run_over_its_timeout_is_timed_out_and_its_kernel_is_gone(tmp_path: Path) -> None:
    source = _notebook(tmp_path / "hang.ipynb", "import time\ntime.sleep(600)")
    spec = _notebook_spec(source, timeout=5)
    kernels: set[int] = set()
    done = threading.Event()

    def watch_for_the_kernel() -> None:
        while not done.is_set():
            for process in _survivors(spec.run_id):
                with contextlib.suppress(psutil.Error):
                    if "ipykernel" in " ".join(process.cmdline()):
                        kernels.add(process.pid)
            done.wait(0.1)

    threading.Thread(target=watch_for_the_kernel, daemon=True).start()
    execution = Execution(spec)
    started = time.monotonic()
    execution.start()
    outcome = execution.wait()
    done.set()
    assert outcome == Outcome("TimedOut", "The run exceeded its timeout of 5 s; its kernel was stopped",
                              str(execution.output_notebook))
    assert 5 <= time.monotonic() - started < 12
    assert kernels and all(_gone(pid) for pid in kernels)
    assert not _survivors(spec.run_id)


def test_a_kernel_that_dies_is_crashed(tmp_path: Path) -> None:
    source = _notebook(tmp_path / "dies.ipynb", "import os\nos.kill(os.getpid(), 9)")
    outcome = execute(_notebook_spec(source))
    assert outcome.state == "Crashed"
    assert "kernel died" in outcome.message


def test_a_child_that_dies_leaves_no_orphaned_kernel(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    source = _notebook(tmp_path / "orphan.ipynb",
                       f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                       "time.sleep(1)\nos.kill(os.getppid(), 9)\ntime.sleep(600)")
    spec = _notebook_spec(source)
    outcome = execute(spec)
    assert outcome.state == "Crashed"
    assert outcome.message.startswith("The run's process was killed by signal 9 (SIGKILL)")
    assert _gone(_wait_for(pid_file, 0))  # at once: the kernel's own parent poller would take ~1 s
    assert not _survivors(spec.run_id)


def test_cancel_kills_the_run_and_its_kernel(tmp_path: Path) -> None:
    pid_file = tmp_path / "kernel.pid"
    source = _notebook(tmp_path / "long.ipynb",
                       f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                       "time.sleep(600)")
    cancel = threading.Event()
    pids: list[int] = []

    def cancel_once_running() -> None:
        pids.append(_wait_for(pid_file))
        cancel.set()

    threading.Thread(target=cancel_once_running, daemon=True).start()
    spec = _notebook_spec(source)
    outcome = execute(spec, cancel=cancel)
    assert (outcome.state, outcome.message) == ("Cancelled", "Cancelled by request")
    assert pids and _gone(pids[0]) and not _survivors(spec.run_id)


def test_bad_parameter_names_never_reach_papermill(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    source = _notebook(tmp_path / "params.ipynb", "pass", parameters="x = 0")
    name = f"x=1;open({str(marker)!r},'w');y"
    outcome = execute(_notebook_spec(source, {name: 1}))
    assert outcome.state == "Failed" and "not Python identifiers" in outcome.message
    assert not marker.exists()


def test_a_missing_notebook_is_failed_with_its_path(tmp_path: Path) -> None:
    outcome = execute(_notebook_spec(tmp_path / "gone.ipynb"))
    assert outcome.state == "Failed" and str(tmp_path / "gone.ipynb") in outcome.message
    assert outcome.output_notebook is None  # nothing was written


# -- flow entrypoints ----------------------------------------------------------------------------

FLOWS = """
    import os
    import helpers
    from nbflow import flow, task

    @task
    def double(x: int) -> int:
        return x * 2

    @flow(name="etl-flow")
    def etl(n: int = 1) -> int:
        assert open("data.txt").read() == "here"  # the file's directory is the working directory
        return double(n) + helpers.ONE

    @flow
    def broken_flow(n: int = 1) -> int:
        raise ValueError(f"broken at {n}")

    def plain(n: int = 1) -> None:
        raise KeyError(f"missing {n}")

    def dies() -> None:
        import sys
        print("about to die", file=sys.stderr)
        os._exit(3)
"""


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("ONE = 1\n")
    (tmp_path / "data.txt").write_text("here")
    return tmp_path


def test_a_flow_entrypoint_runs_as_the_deployment_run_itself(flow_dir: Path) -> None:
    spec = _flow_spec(flow_dir, FLOWS, "etl", {"n": 3})
    spec.deployment_id, spec.deployment_name = "dep-1", "nightly"
    outcome = execute(spec)
    assert outcome == Outcome("Completed", "Flow etl-flow completed")
    runs = nbflow.runs()
    assert runs["id"].tolist() == [spec.run_id]  # one record: the deployment's run, not a wrapper and a child
    run = runs.iloc[0]
    assert run["flow_name"] == "etl-flow" and run["name"] == "nightly" and run["state"] == "Completed"
    assert run["parameters"] == {"n": 3} and run["parent_flow_run_id"] is None
    assert run["deployment_id"] == "dep-1" and "deployment" in run["tags"]
    assert nbflow.task_runs(flow_run_id=spec.run_id)["task_name"].tolist() == ["double"]


@pytest.mark.parametrize(("name", "state", "message"), [
    ("broken_flow", "Failed", "broken at 2"),
    ("plain", "Failed", "KeyError: 'missing 2'"),
    ("no_such_flow", "Failed", "has no attribute 'no_such_flow'; its functions and flows are: "),
])
def test_flow_entrypoints_that_fail(flow_dir: Path, name: str, state: str, message: str) -> None:
    outcome = execute(_flow_spec(flow_dir, FLOWS, name, {"n": 2} if name != "no_such_flow" else {}))
    assert outcome.state == state and message in outcome.message, outcome.message
    if name == "no_such_flow":
        assert "flows.py" in outcome.message and "broken_flow, dies, etl, plain" in outcome.message


def test_an_entrypoint_that_cannot_be_imported_is_failed(tmp_path: Path) -> None:
    outcome = execute(_flow_spec(tmp_path, "import no_such_module_here\n", "etl"))
    assert outcome.state == "Failed"
    assert "flows.py" in outcome.message and "ModuleNotFoundError" in outcome.message


def test_a_child_that_dies_without_an_outcome_is_crashed_with_its_stderr(flow_dir: Path) -> None:
    outcome = execute(_flow_spec(flow_dir, FLOWS, "dies"))
    assert outcome.state == "Crashed"
    assert outcome.message.startswith("The run's process exited with code 3: ")
    assert "about to die" in outcome.message


def test_timeout_kills_processes_started_in_a_session_of_their_own(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    source = f"""
        import subprocess, sys, time
        def spawn() -> None:
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                    start_new_session=True)
            open({str(pid_file)!r}, "w").write(str(proc.pid))
            time.sleep(600)
    """
    started = time.monotonic()
    spec = _flow_spec(tmp_path, source, "spawn", timeout=3)
    outcome = execute(spec)
    assert outcome == Outcome("TimedOut", "The run exceeded its timeout of 3 s; its process was stopped")
    assert time.monotonic() - started < 10
    assert _gone(_wait_for(pid_file, 0)) and not _survivors(spec.run_id)


def test_kill_stops_a_run_that_is_then_cancelled(tmp_path: Path) -> None:
    execution = Execution(_flow_spec(tmp_path, "import time\ndef nap():\n    time.sleep(600)\n", "nap"))
    execution.start()
    execution.kill()
    outcome = execution.wait()
    assert outcome.state == "Cancelled" and execution.wait() is outcome


# -- specs ---------------------------------------------------------------------------------------

def test_run_spec_from_a_claimed_run_ignores_extra_keys() -> None:
    claimed = {"id": RUN_ID, "flow_name": "etl", "kind": "flow", "notebook": None,
               "entrypoint": "/x/etl.py:etl", "parameters": None, "timeout_seconds": 30,
               "state": "Pending", "deployment_id": "d1"}
    assert RunSpec.from_claim(claimed) == RunSpec(RUN_ID, "etl", "flow", None, "/x/etl.py:etl", {}, 30.0,
                                                  deployment_id="d1")


def test_output_path_is_under_the_home_by_notebook_name(nbflow_home: Path) -> None:
    path = output_path(RunSpec(RUN_ID, "r", "notebook", "/data/report.ipynb", None, {}))
    assert path.parent == nbflow_home / "runs" / "report"
    assert path.name.endswith(f"Z-{RUN_ID[:8]}.ipynb")
    with pytest.raises(ValueError, match="only notebook runs"):
        output_path(RunSpec(RUN_ID, "etl", "flow", None, "/x/etl.py:etl", {}))
