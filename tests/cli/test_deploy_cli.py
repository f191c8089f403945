"""`nbflow deploy`, `nbflow deployment ...`, `nbflow worker|work-pool ...` in-process, without a server:
deployments go to the embedded store through the local client (server-backed tests live with the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbflow.cli import deployments as deployments_cli
from nbflow.cli.main import main
from nbflow.deployments.client import ApiClient


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server from the environment: every command here uses the embedded store."""
    for name in ("NBFLOW_API_URL", "NBFLOW_API_TOKEN", "NBFLOW_SERVER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    """A notebook whose `parameters` cell takes n (int) and label (str)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("n = 3\nlabel = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(label * n)")]
    path = tmp_path / "report.ipynb"
    nbformat.write(nb, path)
    return path


def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nbflow: error: ")
    return lines[0]


def _fields(out: str) -> dict[str, str]:
    return {label.strip(): value.strip() for label, _, value in
            (line.partition(":") for line in out.splitlines()) if value}


# -- deploy ----------------------------------------------------------------------------------

def test_deploy_a_notebook_then_deploy_it_again_updates_it(notebook: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "nightly", "--cron", "0 2 * * *", "--param", "n=5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Created deployment 'nightly'.")
    first = _fields(out)
    assert first["notebook"] == str(notebook)
    assert first["parameters"] == '{"n": 5}'  # converted by the notebook's parameter type
    assert "02:00" in first["schedule"] and first["next run"] != "-"
    assert "nbflow server start" in out  # stored until a server runs it

    assert main(["deploy", str(notebook), "--name", "nightly", "--interval", "3600"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Updated deployment 'nightly'.")
    second = _fields(out)
    assert second["id"] == first["id"]
    assert "hour" in second["schedule"] and "parameters" not in second


def test_a_bad_cron_expression_names_the_field(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "bad", "--cron", "61 * * * *"]) == 1
    captured = capsys.readouterr()
    assert "schedule.cron" in _error_line(captured.err) and "'61 * * * *'" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(("extra", "words"), [
    (["--cron", "0 2 * * *", "--interval", "60"], ["--interval", "not allowed with", "--cron"]),
    (["--timezone", "Europe/Paris"], ["--timezone", "--cron"]),
    (["--param", "n"], ["--param", "'n'", "KEY=VALUE"]),
    (["--param", "n=1", "--param", "n=2"], ["--param", "'n'", "twice"]),
    (["--interval", "0"], ["--interval", "0"]),
])
def test_usage_errors_of_deploy_exit_2(notebook: Path, extra: list[str], words: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "bad", *extra]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.endswith("(see `nbflow deploy --help`)"), line
    for word in words:
        assert word in line


def test_a_target_that_is_neither_a_notebook_nor_a_flow_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(tmp_path / "etl.py"), "--name", "etl"]) == 2
    assert "FILE.py:FLOW" in _error_line(capsys.readouterr().err)


@pytest.mark.parametrize(("param", "words"), [
    ("nope=1", ["nope", "label, n"]),
    ("n=abc", ["'n'", "'abc'"]),
])
def test_parameters_the_notebook_does_not_take_are_named(notebook: Path, param: str, words: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "bad", "--param", param]) == 1
    line = _error_line(capsys.readouterr().err)
    for word in words:
        assert word in line


def test_deploy_a_flow_entrypoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "etl.py").write_text("from nbflow import flow\n\n@flow\ndef etl(rows: int = 10):\n    return rows\n")
    assert main(["deploy", f"{tmp_path / 'etl.py'}:etl", "--name", "etl", "--param", "rows=20",
                 "--timeout", "600", "--work-pool", "gpu", "--paused"]) == 0
    fields = _fields(capsys.readouterr().out)
    assert fields["flow"] == f"{tmp_path / 'etl.py'}:etl"
    assert (fields["parameters"], fields["timeout"], fields["work pool"], fields["paused"]) == (
        '{"rows": 20}', "10m 00s", "gpu", "yes")


# -- deployment ls, run, pause, resume, delete --------------------------------------------------

def test_deployment_ls(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deployment", "ls"]) == 0
    assert "No deployments yet" in capsys.readouterr().out
    assert main(["deploy", str(notebook), "--name", "nightly", "--cron", "30 2 * * *",
                 "--timezone", "Europe/Paris"]) == 0
    capsys.readouterr()
    assert main(["deployment", "ls"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "KIND", "TARGET", "SCHEDULE", "PAUSED", "WORK", "POOL", "NEXT", "RUN"]
    assert row.startswith("nightly") and "notebook" in row and "report.ipynb" in row
    assert "Europe/Paris" in row and " no " in row and "default" in row


def test_pause_resume_and_delete(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "nightly", "--interval", "60"]) == 0
    capsys.readouterr()
    assert main(["deployment", "pause", "nightly"]) == 0
    assert "Paused deployment 'nightly'" in capsys.readouterr().out
    assert main(["deployment", "ls"]) == 0
    assert " yes " in capsys.readouterr().out.splitlines()[1]
    assert main(["deployment", "resume", "nightly"]) == 0
    assert "Resumed deployment 'nightly'; next run: 2" in capsys.readouterr().out
    assert main(["deployment", "delete", "nightly"]) == 0
    assert "Deleted deployment 'nightly'" in capsys.readouterr().out
    assert main(["deployment", "delete", "nightly"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "'nightly'" in line and "nbflow deployment ls" in line


def test_deployment_run_prints_the_new_runs_id(notebook: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(notebook), "--name", "nightly"]) == 0
    capsys.readouterr()
    assert main(["deployment", "run", "nightly", "--param", "n=7"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    run_id = first_line.split()[3]
    assert first_line == f"Created flow run {run_id} of deployment 'nightly' (Scheduled)."
    assert main(["flow-run", "inspect", run_id, "--json"]) == 0
    assert '"n": 7' in capsys.readouterr().out

    assert main(["deployment", "run", "nightly", "--watch"]) == 1  # nothing would run it
    assert "needs a running nbflow server" in _error_line(capsys.readouterr().err)
    assert main(["deployment", "run", "nope"]) == 1
    assert "'nope'" in _error_line(capsys.readouterr().err)


def test_deployment_run_takes_prefects_flow_slash_deployment_form(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "etl.py").write_text("from nbflow import flow\n\n@flow\ndef etl(rows: int = 10):\n    return rows\n")
    assert main(["deploy", f"{tmp_path / 'etl.py'}:etl", "--name", "nightly"]) == 0
    capsys.readouterr()
    assert main(["deployment", "run", "etl/nightly", "--param", "rows=3"]) == 0
    out = capsys.readouterr().out
    assert "of deployment 'etl/nightly' (Scheduled)" in out
    run_id = out.split()[3]
    assert main(["flow-run", "inspect", run_id, "--json"]) == 0
    assert '"rows": 3' in capsys.readouterr().out  # text converted by the flow's annotation
    assert main(["deployment", "pause", "etl/nightly"]) == 0
    capsys.readouterr()
    assert main(["deployment", "run", "other/nightly"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "'other'" in line and "etl/nightly" in line  # says which flow has a deployment of that name


def test_flow_inspect_shows_runs_by_state_deployments_and_latest_runs(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nbflow import flow

    @flow(name="inspected")
    def inspected(fail: bool = False) -> int:
        if fail:
            raise ValueError("no")
        return 1

    inspected()
    inspected(fail=True, return_state=True)
    (tmp_path / "inspected.py").write_text("from nbflow import flow\n\n@flow(name='inspected')\ndef f():\n    pass\n")
    assert main(["deploy", f"{tmp_path / 'inspected.py'}:f", "--name", "daily"]) == 0
    capsys.readouterr()
    assert main(["flow", "inspect", "inspected"]) == 0
    out = capsys.readouterr().out
    fields = _fields(out.split("Latest runs")[0])
    assert fields["name"] == "inspected" and fields["last state"] == "Failed"
    assert fields["runs"] in ("2 (Completed 1, Failed 1)", "2 (Failed 1, Completed 1)")
    assert fields["deployments"] == "inspected/daily"
    assert "Latest runs (2):" in out
    assert main(["flow", "inspect", "inspected", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["states"] == {"Completed": 1, "Failed": 1} and data["deployments"][0]["name"] == "daily"
    assert main(["flow", "inspect", "nope"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "'nope'" in line and "nbflow flow ls" in line


# -- run --watch, against a client that plays back states -----------------------------------------

class _PlaybackClient(ApiClient):
    """A client whose run goes through `states`, one per look."""

    def __init__(self, states: list[Any], **final: Any) -> None:
        super().__init__("http://127.0.0.1:9/")
        self.states, self.final = list(states), final

    def create_run(self, ref: str, parameters: dict | None = None) -> dict:
        return {"id": "f" * 32, "state": "Scheduled"}

    def get_flow_run(self, run_id: str) -> dict:
        state = self.states.pop(0)
        if isinstance(state, BaseException):
            raise state
        return {"id": run_id, "state": state, **(self.final if not self.states else {})}


@pytest.fixture
def playback(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(deployments_cli, "WATCH_POLL_SECONDS", 0)

    def use(states: list[Any], **final: Any) -> None:
        monkeypatch.setattr(deployments_cli, "connect", lambda: _PlaybackClient(states, **final))

    return use


def test_watch_prints_each_state_change_until_completed(playback: Any, capsys: pytest.CaptureFixture[str]) -> None:
    playback(["Scheduled", "Pending", "Running", "Running", "Completed"], output_notebook="/runs/out.ipynb")
    assert main(["deployment", "run", "nightly", "--watch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in out[1:5]] == ["Scheduled", "Pending", "Running", "Completed"]
    assert all(line[2] == ":" and line[5] == ":" for line in out[1:5])  # HH:MM:SS first
    assert "output notebook: /runs/out.ipynb" in out


def test_watch_of_a_failed_run_exits_1_with_its_message(playback: Any, capsys: pytest.CaptureFixture[str]) -> None:
    playback(["Running", "Failed"], state_message="Cell 2 raised ValueError: boom\nTraceback ...",
             output_notebook="/runs/out.ipynb")
    assert main(["deployment", "run", "nightly", "--watch"]) == 1
    captured = capsys.readouterr()
    assert "message:         Cell 2 raised ValueError: boom" in captured.out
    assert "/runs/out.ipynb" in captured.out
    line = _error_line(captured.err)
    assert "ended Failed: Cell 2 raised ValueError: boom" in line


def test_ctrl_c_stops_watching_and_leaves_the_run(playback: Any, capsys: pytest.CaptureFixture[str]) -> None:
    playback(["Running", KeyboardInterrupt()])
    assert main(["deployment", "run", "nightly", "--watch"]) == 130
    assert f"flow run {'f' * 32} continues" in capsys.readouterr().out


# -- workers and work pools ------------------------------------------------------------------------

def test_work_pools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["work-pool", "create", "gpu", "--concurrency-limit", "2"]) == 0
    assert "Created work pool 'gpu' (concurrency limit: 2)" in capsys.readouterr().out
    assert main(["work-pool", "create", "gpu"]) == 1
    assert "gpu" in _error_line(capsys.readouterr().err)
    assert main(["work-pool", "ls"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert ["gpu", "2", "0"] == rows[[r[0] for r in rows].index("gpu")][:3]


def test_worker_start_needs_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "start", "--pool", "gpu"]) == 1
    assert "nbflow server start" in _error_line(capsys.readouterr().err)
