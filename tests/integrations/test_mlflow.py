"""nbflow.integrations.mlflow against real mlflow on a temporary local file store."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest

import nbflow
from nbflow import flow, task
from nbflow.integrations.mlflow import (
    MlflowNotInstalledError,
    MlflowStoreError,
    NoRunContextError,
    find_mlflow_run,
    find_task_run,
    link_mlflow_run,
    nbflow_mlflow_run,
)


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A file store of its own; mlflow's global tracking URI is reset afterwards."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    yield (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(None)


def _task_run(task_run_id: str) -> dict:
    runs = nbflow.task_runs()
    return runs[runs["id"] == task_run_id].iloc[0].to_dict()


def test_a_task_run_and_its_mlflow_run_name_each_other(tracking_uri: str) -> None:
    @task
    def train(alpha: float) -> tuple[str, str]:
        with nbflow_mlflow_run(experiment="sweep", tracking_uri=tracking_uri,
                               run_name=f"alpha={alpha}", tags={"team": "ds"}) as run:
            mlflow.log_param("alpha", alpha)
            mlflow.log_metric("score", 1 - alpha)
        from nbflow.engine.context import task_run_context

        return run.info.run_id, task_run_context.get().task_run.id

    @flow
    def sweep() -> tuple[str, str]:
        return train(0.25)

    mlflow_run_id, task_run_id = sweep()
    run = mlflow.MlflowClient(tracking_uri).get_run(mlflow_run_id)
    tags = run.data.tags
    flow_run = nbflow.runs(flow_name="sweep").iloc[0]
    assert tags["nbflow.task_run_id"] == task_run_id
    assert tags["nbflow.task_name"] == "train"
    assert tags["nbflow.flow_run_id"] == flow_run["id"]
    assert tags["nbflow.flow_name"] == "sweep"
    assert tags["team"] == "ds" and run.info.run_name == "alpha=0.25"
    assert run.data.params == {"alpha": "0.25"} and run.data.metrics == {"score": 0.75}
    assert run.info.status == "FINISHED"
    assert mlflow.MlflowClient(tracking_uri).get_experiment(run.info.experiment_id).name == "sweep"

    assert f"mlflow_run_id:{mlflow_run_id}" in _task_run(task_run_id)["tags"]
    found = find_task_run(mlflow_run_id)
    assert found["id"] == task_run_id and found["task_name"] == "train"
    assert found["state"] == "Completed" and f"mlflow_run_id:{mlflow_run_id}" in found["tags"]
    assert find_mlflow_run(task_run_id) == mlflow_run_id
    logs = nbflow.logs(task_run_id)
    assert any(f"Linked mlflow run {mlflow_run_id}" in m for m in logs["message"])


def test_mapped_tasks_get_one_mlflow_run_each(tracking_uri: str) -> None:
    @task
    def fit(depth: int) -> str:
        with nbflow_mlflow_run(experiment="mapped", tracking_uri=tracking_uri) as run:
            mlflow.log_param("depth", depth)
        return run.info.run_id

    @flow
    def grid() -> list[str]:
        return [f.result() for f in fit.map([1, 2, 3, 4])]

    ids = grid()
    assert len(set(ids)) == 4
    client = mlflow.MlflowClient(tracking_uri)
    experiments = [e for e in client.search_experiments() if e.name == "mapped"]
    assert len(experiments) == 1  # created once although the tasks ran at the same time
    task_run_ids = set()
    for mlflow_run_id in ids:
        run = client.get_run(mlflow_run_id)
        linked = find_task_run(mlflow_run_id)
        assert linked["id"] == run.data.tags["nbflow.task_run_id"]
        assert find_mlflow_run(linked["id"]) == mlflow_run_id
        task_run_ids.add(linked["id"])
    assert len(task_run_ids) == 4


def test_in_a_flow_outside_tasks_the_flow_run_is_linked(tracking_uri: str) -> None:
    @flow(name="report-flow")
    def report() -> str:
        with nbflow_mlflow_run(tracking_uri=tracking_uri) as run:
            mlflow.log_metric("rows", 3)
        return run.info.run_id

    mlflow_run_id = report()
    flow_run = nbflow.runs(flow_name="report-flow").iloc[0]
    tags = mlflow.MlflowClient(tracking_uri).get_run(mlflow_run_id).data.tags
    assert tags["nbflow.flow_run_id"] == flow_run["id"] and tags["nbflow.flow_name"] == "report-flow"
    assert "nbflow.task_run_id" not in tags
    assert f"mlflow_run_id:{mlflow_run_id}" in flow_run["tags"]
    assert find_mlflow_run(flow_run["id"]) == mlflow_run_id
    assert find_task_run(mlflow_run_id) is None  # no task run is linked


def test_link_an_existing_or_the_active_mlflow_run(tracking_uri: str) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as earlier:
        mlflow.log_param("source", "outside nbflow")

    @task
    def adopt(run_id: str) -> str:
        return link_mlflow_run(run_id)

    @task
    def adopt_active() -> str:
        with mlflow.start_run() as run:
            assert link_mlflow_run() == run.info.run_id
        return run.info.run_id

    @flow
    def linking() -> tuple[str, str]:
        return adopt(earlier.info.run_id), adopt_active()

    first, second = linking()
    assert first == earlier.info.run_id
    client = mlflow.MlflowClient(tracking_uri)
    for mlflow_run_id, task_name in ((first, "adopt"), (second, "adopt_active")):
        tags = client.get_run(mlflow_run_id).data.tags
        linked = find_task_run(mlflow_run_id)
        assert linked["task_name"] == tags["nbflow.task_name"] == task_name
        assert tags["nbflow.task_run_id"] == linked["id"]


def test_a_failing_block_fails_both_runs_and_keeps_the_link(tracking_uri: str) -> None:
    @task
    def broken() -> None:
        with nbflow_mlflow_run(experiment="broken", tracking_uri=tracking_uri):
            raise ValueError("diverged")

    with pytest.raises(ValueError, match="diverged"):
        broken()
    task_run = nbflow.task_runs().iloc[0]
    assert task_run["task_name"] == "broken" and task_run["state"] == "Failed"
    mlflow_run_id = find_mlflow_run(task_run["id"])
    assert mlflow_run_id is not None
    assert mlflow.MlflowClient(tracking_uri).get_run(mlflow_run_id).info.status == "FAILED"
    assert find_task_run(mlflow_run_id)["id"] == task_run["id"]


def test_default_store_is_mlruns_in_the_working_directory(tracking_uri: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    @task
    def train() -> str:
        with nbflow_mlflow_run(experiment="here") as run:
            pass
        return run.info.run_id

    mlflow_run_id = train()
    assert mlflow.get_tracking_uri() == (workdir / "mlruns").as_uri()
    assert (workdir / "mlruns").is_dir()
    assert find_task_run(mlflow_run_id)["task_name"] == "train"


def test_file_store_without_its_switch_says_how_to_fix_it(tracking_uri: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(mlflow.environment_variables, "MLFLOW_ALLOW_FILE_STORE"):
        pytest.skip(f"mlflow {mlflow.__version__} has no file store switch: "
                    "only later versions refuse a file store without it")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")

    @task
    def train() -> None:
        with nbflow_mlflow_run(tracking_uri=tracking_uri):
            pass

    with pytest.raises(MlflowStoreError, match="MLFLOW_ALLOW_FILE_STORE=true"):
        train()


def test_outside_any_nbflow_run_is_a_clear_error(tracking_uri: str) -> None:
    with pytest.raises(NoRunContextError, match=r"inside an nbflow run: call it in a @task or @flow"):
        with nbflow_mlflow_run(tracking_uri=tracking_uri):
            pass
    with pytest.raises(NoRunContextError, match=r"link_mlflow_run\(\) works only inside an nbflow run"):
        link_mlflow_run("0" * 32, tracking_uri=tracking_uri)
    assert mlflow.active_run() is None  # nothing was started
    assert find_task_run("no-such-run") is None
    assert find_mlflow_run("no-such-run") is None


def test_without_mlflow_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` sees when it is missing

    @task
    def train() -> None:
        with nbflow_mlflow_run():
            pass

    with pytest.raises(MlflowNotInstalledError, match=r"pip install 'nbflow\[mlflow\]'"):
        train()
