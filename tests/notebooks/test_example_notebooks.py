"""The example notebooks in notebooks/ run clean in a real kernel and do what they say.

Each notebook is copied into a temporary directory and executed there with nbclient (its
files, e.g. mlflow's ./mlruns, land in the copy); `scheduled_report` also runs through
`nbflow run`. Kernels take a long time to import what the examples use (pandas, plotly,
scikit-learn, mlflow), so every execution starts at once when the module's first test
asks, each with its own NBFLOW_HOME; the tests then read that store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import nbformat
import pytest
from nbclient import NotebookClient

import nbflow

sys.path.insert(0, str(Path(__file__).parents[1] / "notebook"))
from kernel import outputs_text  # noqa: E402 - the notebook tests' shared helper

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
SCHEDULED_REPORT = NOTEBOOKS_DIR / "scheduled_report.ipynb"
SCHEDULED_REPORT_HASH = hashlib.sha256(SCHEDULED_REPORT.read_bytes()).hexdigest()


@dataclass
class Execution:
    """One job's directories and what it produced."""

    #: the job's NBFLOW_HOME (kernels and `nbflow run` get it through the environment)
    home: Path
    workdir: Path
    #: the executed notebooks, in order
    notebooks: list[Any] = field(default_factory=list)
    process: subprocess.CompletedProcess | None = None


def execute(notebook: Path, run: Execution, *, upto: int | None = None) -> Any:
    """Run a copy of `notebook` (its first `upto` cells) in a fresh kernel in the job's workdir."""
    copy = run.workdir / notebook.name
    shutil.copyfile(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    if upto is not None:
        nb.cells = nb.cells[:upto]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(run.workdir)}})
    # JPY_SESSION_NAME is how Jupyter tells a kernel its notebook: the session's flow run is
    # named after it.
    client.execute(env={**os.environ, "NBFLOW_HOME": str(run.home), "JPY_SESSION_NAME": str(copy)})
    run.notebooks.append(nb)
    return nb


def nbflow_run(run: Execution, *args: str) -> None:
    """`python -m nbflow run ARGS` with the job's NBFLOW_HOME."""
    run.process = subprocess.run([sys.executable, "-m", "nbflow", "run", *args], capture_output=True,
                                 text=True, timeout=240, cwd=run.workdir,
                                 env={**os.environ, "NBFLOW_HOME": str(run.home)})


def run_quickstart(run: Execution) -> None:
    nb = execute(NOTEBOOKS_DIR / "quickstart.ipynb", run)
    # Then a new kernel, as after a restart, up to the first cached cell (kept short).
    execute(NOTEBOOKS_DIR / "quickstart.ipynb", run, upto=_cached_cells(nb)[0] + 1)


def _cached_cells(nb: Any) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.source.startswith("%%task measurements --cache")]


JOBS: dict[str, Callable[[Execution], None]] = {
    **{p.stem: (lambda run, p=p: execute(p, run)) for p in NOTEBOOKS},
    "quickstart": run_quickstart,
    "nbflow-run": lambda run: nbflow_run(run, str(SCHEDULED_REPORT), "-p", "n_days", "3",
                                         "-p", "region", "north", "-o", str(run.workdir / "out.ipynb")),
    "nbflow-run-bad-region": lambda run: nbflow_run(run, str(SCHEDULED_REPORT), "-p", "region", "mars",
                                                    "-o", str(run.workdir / "out.ipynb")),
}


def uses(*names: str) -> Callable:
    """Mark a test with the jobs it reads, so that only the jobs of selected tests run."""

    def mark(test: Callable) -> Callable:
        test.jobs = names
        return test

    return mark


def _wanted_jobs(items: list[pytest.Item]) -> list[str]:
    wanted: set[str] = set()
    for item in items:
        if getattr(item, "module", None) is None or item.module.__name__ != __name__:
            continue
        wanted.update(getattr(item.function, "jobs", ()))
        if item.function is test_notebook_runs_without_errors:
            wanted.add(item.callspec.params["notebook"].stem)
    return [name for name in JOBS if name in wanted]


def _run_job(job: Callable[[Execution], None], run: Execution) -> Execution:
    job(run)
    return run


@pytest.fixture(scope="module")
def jobs(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future]]:
    """Start the jobs the selected tests read, four at a time, each with its own directories."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notebook-job")
    futures = {}
    for name in _wanted_jobs(request.session.items):
        run = Execution(tmp_path_factory.mktemp(f"{name}-home"), tmp_path_factory.mktemp(f"{name}-work"))
        futures[name] = pool.submit(_run_job, JOBS[name], run)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def result(jobs: dict[str, Future], monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Execution]:
    """Wait for a job and point this process at its store."""

    def get(name: str) -> Execution:
        run = jobs[name].result(timeout=300)
        monkeypatch.setenv("NBFLOW_HOME", str(run.home))
        return run

    return get


def errors_of(nb: Any) -> list[str]:
    return [f"cell {i}: {o['ename']}: {o['evalue']}" for i, cell in enumerate(nb.cells)
            for o in cell.get("outputs", []) if o["output_type"] == "error"]


# -- the notebooks as saved ----------------------------------------------------------------------

def test_the_examples_are_there() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"quickstart.ipynb", "etl_pipeline.ipynb", "ml_experiment.ipynb",
            "scheduled_report.ipynb"} <= names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_saved_clean(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"] == KERNELSPEC  # papermill needs it
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {i} has outputs"


# -- executed --------------------------------------------------------------------------------

@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_errors(notebook: Path, result: Callable[[str], Execution]) -> None:
    run = result(notebook.stem)
    for nb in run.notebooks:
        assert errors_of(nb) == []


@uses("quickstart")
def test_quickstart_cached_cell_hits_on_its_second_execution(result: Callable[[str], Execution]) -> None:
    run = result("quickstart")
    first, again = run.notebooks
    cached = _cached_cells(first)
    assert len(cached) == 2  # the cell and its exact copy (a re-run in the same kernel)
    graph_outputs = [o for c in first.cells if c.cell_type == "code" and "%nbflow graph" in c.source
                     for o in c.outputs]
    assert graph_outputs and "text/html" in graph_outputs[0]["data"]  # the run view, with its fallback

    runs = nbflow.task_runs().query("task_name == 'measurements'").sort_values("start_time")
    # kernel 1: Completed, then Cached for the copy; kernel 2 (a restart): Cached at once
    assert runs["state"].tolist() == ["Completed", "Cached", "Cached"]
    assert "measured 300 values" in outputs_text(again.cells[cached[0]])  # printed output replayed
    sessions = nbflow.runs(flow_name="quickstart")
    assert len(sessions) == 2 and set(sessions["id"]) == set(runs["flow_run_id"])


@uses("etl_pipeline")
def test_etl_pipeline_retries_extract_caches_transform_and_loads(result: Callable[[str], Execution]) -> None:
    run = result("etl_pipeline")
    tasks = nbflow.task_runs().set_index("task_name")
    assert set(tasks.index) == {"extract", "transform", "load"}
    assert (tasks["state"] == "Completed").all()
    assert tasks.loc["extract", "run_count"] == 2  # the first request fails, the retry succeeds
    assert tasks.loc["transform", "cache_key"] and tasks.loc["transform", "cache_expiration"]
    assert (run.workdir / "etl_output" / "warehouse.sqlite").is_file()


@uses("ml_experiment")
def test_ml_experiment_links_every_mlflow_run_to_a_task_run(result: Callable[[str], Execution],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    from nbflow.integrations.mlflow import find_mlflow_run, find_task_run

    run = result("ml_experiment")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=(run.workdir / "mlruns").as_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    mlflow_runs = client.search_runs(experiments)
    assert len(mlflow_runs) == 7  # six grid points and the final model
    task_runs = nbflow.task_runs().set_index("id")
    for mlflow_run in mlflow_runs:
        tags, mlflow_run_id = mlflow_run.data.tags, mlflow_run.info.run_id
        task_run_id = tags["nbflow.task_run_id"]
        assert task_run_id in task_runs.index
        assert task_runs.loc[task_run_id, "task_name"] == tags["nbflow.task_name"]
        assert task_runs.loc[task_run_id, "flow_run_id"] == tags["nbflow.flow_run_id"]
        assert f"mlflow_run_id:{mlflow_run_id}" in task_runs.loc[task_run_id, "tags"]
        assert find_task_run(mlflow_run_id)["id"] == task_run_id
        assert find_mlflow_run(task_run_id) == mlflow_run_id
    assert sorted(r.data.tags["nbflow.task_name"] for r in mlflow_runs) == ["final_model"] + ["train"] * 6
    sweep = nbflow.runs(flow_name="sweep").iloc[0]
    assert sweep["state"] == "Completed"
    assert sum(r.data.tags["nbflow.flow_run_id"] == sweep["id"] for r in mlflow_runs) == 6


@uses("scheduled_report")
def test_scheduled_report_runs_with_its_defaults(result: Callable[[str], Execution]) -> None:
    nb = result("scheduled_report").notebooks[0]
    assert any("(7 days)" in outputs_text(c) for c in nb.cells)
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "n_days = 7" in parameters[0].source


@uses("nbflow-run")
def test_scheduled_report_runs_through_nbflow_run_with_parameters(
        result: Callable[[str], Execution]) -> None:
    run = result("nbflow-run")
    assert run.process.returncode == 0, run.process.stdout + run.process.stderr
    assert hashlib.sha256(SCHEDULED_REPORT.read_bytes()).hexdigest() == SCHEDULED_REPORT_HASH  # untouched
    executed = nbformat.read(run.workdir / "out.ipynb", as_version=4)
    assert errors_of(executed) == []
    printed = "\n".join(outputs_text(c) for c in executed.cells)
    assert "(3 days)" in printed and "regions     north" in printed
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "n_days = 3" in injected[0].source

    flow_run = nbflow.runs(flow_name="scheduled_report").iloc[0]
    assert flow_run["state"] == "Completed"
    assert flow_run["parameters"] == {"n_days": 3, "region": "north"}
    tasks = nbflow.task_runs(flow_run["id"]).sort_values("start_time")
    assert tasks["task_name"].tolist() == ["check_parameters", "fetch_sales", "daily_totals"]
    assert (tasks["state"] == "Completed").all()


@uses("nbflow-run-bad-region")
def test_scheduled_report_refuses_an_unknown_region(result: Callable[[str], Execution]) -> None:
    run = result("nbflow-run-bad-region")
    assert run.process.returncode != 0
    flow_run = nbflow.runs(flow_name="scheduled_report").iloc[0]
    assert flow_run["state"] == "Failed" and flow_run["parameters"] == {"region": "mars"}
    assert "ValueError" in flow_run["state_message"]
    assert "region must be 'all' or one of north, south, east, west; got 'mars'" in flow_run["state_message"]
