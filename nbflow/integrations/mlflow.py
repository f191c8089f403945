"""Link nbflow runs and mlflow runs both ways (`pip install 'nbflow[mlflow]'`).

Inside a `@task`, a `%%task` cell or a `@flow`::

    from nbflow.integrations.mlflow import nbflow_mlflow_run

    @task
    def train(alpha: float) -> float:
        with nbflow_mlflow_run(experiment="sweep", run_name=f"alpha={alpha}"):
            mlflow.log_param("alpha", alpha)
            ...

The mlflow run gets the tags `nbflow.flow_run_id`, `nbflow.flow_name`,
`nbflow.task_run_id` and `nbflow.task_name`; the nbflow task run (or, outside a task,
the flow run) gets the tag `mlflow_run_id:<id>`, stored with the run's next state change
(usually its end), and an INFO log line. `find_task_run(mlflow_run_id)` and
`find_mlflow_run(task_run_id)` go from one to the other. `link_mlflow_run()` links an
mlflow run you started yourself.

Where mlflow writes: the `tracking_uri` you pass, else the one mlflow already has
(`MLFLOW_TRACKING_URI` or `mlflow.set_tracking_uri`), else a local file store in
`./mlruns` under the working directory. mlflow 3 refuses a file store unless
`MLFLOW_ALLOW_FILE_STORE=true` is set (it keeps that backend in maintenance mode); set it
(`os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"`) or pass a server or database URI.

The helpers need the nbflow run of the calling code, so they work in tasks that run in
the flow's process (called directly or on the default thread pool), not in task code sent
to a `ProcessPoolTaskRunner` or `DaskTaskRunner` worker. Mapped tasks on the thread pool
each get their own mlflow run: mlflow keeps the active run per thread since 2.18, the
oldest version the extra allows. mlflow is imported on first use.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from nbflow import api
from nbflow.engine.context import flow_run_context, task_run_context
from nbflow.engine.run_logging import get_run_logger
from nbflow.errors import NbflowError

if TYPE_CHECKING:
    import mlflow as mlflow_module

#: prefix of the nbflow run tag that names the linked mlflow run: "mlflow_run_id:<id>".
TAG_PREFIX = "mlflow_run_id:"
#: the mlflow tags that name the nbflow runs.
FLOW_RUN_ID_TAG = "nbflow.flow_run_id"
FLOW_NAME_TAG = "nbflow.flow_name"
TASK_RUN_ID_TAG = "nbflow.task_run_id"
TASK_NAME_TAG = "nbflow.task_name"

_experiment_lock = threading.Lock()  # mapped tasks may create the same experiment at once


class MlflowNotInstalledError(NbflowError, ImportError):
    """mlflow is not installed."""


class NoRunContextError(NbflowError, RuntimeError):
    """An mlflow link was asked for outside any nbflow flow run or task run."""


class MlflowStoreError(NbflowError, RuntimeError):
    """The mlflow tracking store cannot be used as configured."""


def _import_mlflow() -> "mlflow_module":
    try:
        import mlflow
    except ImportError:
        raise MlflowNotInstalledError(
            "nbflow's mlflow integration needs mlflow, which is not installed. "
            "Install it with: pip install 'nbflow[mlflow]'") from None
    return mlflow


def _current_runs(what: str) -> tuple[Any, Any]:
    """(flow_run or None, task_run or None) of the calling code; at least one is set."""
    task_ctx = task_run_context.get()
    flow_ctx = flow_run_context.get()
    if task_ctx is None and flow_ctx is None:
        raise NoRunContextError(
            f"{what} works only inside an nbflow run: call it in a @task or @flow function, or "
            "in a %%task cell. Outside nbflow, use mlflow.start_run() directly.")
    return (flow_ctx.flow_run if flow_ctx else None), (task_ctx.task_run if task_ctx else None)


def nbflow_tags(flow_run: Any, task_run: Any) -> dict[str, str]:
    """The mlflow tags that name these nbflow runs (either may be None)."""
    tags = {}
    flow_run_id = flow_run.id if flow_run is not None else getattr(task_run, "flow_run_id", None)
    if flow_run_id:
        tags[FLOW_RUN_ID_TAG] = flow_run_id
    if flow_run is not None:
        tags[FLOW_NAME_TAG] = flow_run.flow_name
    if task_run is not None:
        tags[TASK_RUN_ID_TAG] = task_run.id
        tags[TASK_NAME_TAG] = task_run.task_name
    return tags


def _file_store_allowed(mlflow: Any) -> bool:
    variable = getattr(getattr(mlflow, "environment_variables", None), "MLFLOW_ALLOW_FILE_STORE", None)
    return variable is None or bool(variable.get())  # older mlflow has no such switch


def _is_file_store(uri: str) -> bool:
    """file:///path, or a bare path (mlflow's file store); not a server, database or Databricks."""
    if "://" in uri:
        return uri.split("://", 1)[0].lower() == "file"
    return not uri.lower().startswith(("databricks", "sqlite:", "uc:"))


def use_tracking_uri(tracking_uri: str | None = None) -> str:
    """Point mlflow at `tracking_uri`, else keep its configured one, else `./mlruns`; return it.

    Raises MlflowStoreError for a file store while mlflow 3 refuses one
    (`MLFLOW_ALLOW_FILE_STORE` unset).
    """
    mlflow = _import_mlflow()
    if tracking_uri is None and mlflow.is_tracking_uri_set():
        uri = mlflow.get_tracking_uri()
    else:
        uri = tracking_uri or (Path.cwd() / "mlruns").as_uri()
        mlflow.set_tracking_uri(uri)  # global, so mlflow.log_*() in the block writes there too
    if _is_file_store(uri) and not _file_store_allowed(mlflow):
        raise MlflowStoreError(
            f"mlflow refuses its local file store ({uri}) unless MLFLOW_ALLOW_FILE_STORE=true. "
            "To resolve this, either: 1. set it before the first mlflow run, e.g. "
            "os.environ['MLFLOW_ALLOW_FILE_STORE'] = 'true'; or 2. pass tracking_uri= a server "
            "(http://host:5000) or a database (sqlite:///mlflow.db, with the full mlflow package).")
    return uri


def _experiment_id(mlflow: Any, name: str) -> str:
    client = mlflow.MlflowClient()
    with _experiment_lock:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name)
        except mlflow.exceptions.MlflowException:  # another process created it meanwhile
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id


def _tag_nbflow_run(flow_run: Any, task_run: Any, mlflow_run_id: str) -> None:
    """Add `mlflow_run_id:<id>` to the innermost nbflow run's tags and log the link."""
    run = task_run if task_run is not None else flow_run
    tag = TAG_PREFIX + mlflow_run_id
    if tag not in run.tags:
        # Snapshotted into task_runs.tags / flow_runs.tags with the run's next state change.
        run.tags = (*run.tags, tag)
    get_run_logger().info("Linked mlflow run %s", mlflow_run_id)


@contextlib.contextmanager
def nbflow_mlflow_run(experiment: str | None = None, *, tracking_uri: str | None = None,
                      **start_run_kwargs: Any) -> Iterator[Any]:
    """Start an mlflow run linked to the current nbflow task run (or flow run); yield it.

    `experiment` names the mlflow experiment (created when missing; default: mlflow's
    active or default experiment). Other keyword arguments go to `mlflow.start_run`
    (`run_name`, `nested`, `tags`, `description`, ...); the nbflow tags are added to `tags`.
    The run ends with the block (FAILED if the block raises), as `mlflow.start_run` does.
    """
    mlflow = _import_mlflow()
    flow_run, task_run = _current_runs("nbflow_mlflow_run()")
    use_tracking_uri(tracking_uri)
    if experiment is not None:
        if start_run_kwargs.get("experiment_id") is not None:
            raise TypeError("nbflow_mlflow_run() takes experiment (a name) or experiment_id, not both; "
                            f"got experiment={experiment!r} and experiment_id="
                            f"{start_run_kwargs['experiment_id']!r}.")
        start_run_kwargs["experiment_id"] = _experiment_id(mlflow, experiment)
    start_run_kwargs["tags"] = {**(start_run_kwargs.get("tags") or {}), **nbflow_tags(flow_run, task_run)}
    with mlflow.start_run(**start_run_kwargs) as active:
        _tag_nbflow_run(flow_run, task_run, active.info.run_id)
        yield active


def link_mlflow_run(mlflow_run_id: str | None = None, *, tracking_uri: str | None = None) -> str:
    """Link an existing mlflow run (default: the active one) with the current nbflow run.

    Sets the nbflow tags on the mlflow run and `mlflow_run_id:<id>` on the nbflow run;
    returns the mlflow run id.
    """
    mlflow = _import_mlflow()
    flow_run, task_run = _current_runs("link_mlflow_run()")
    use_tracking_uri(tracking_uri)
    if mlflow_run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("link_mlflow_run() without a run id links the active mlflow run, and "
                             "there is none in this thread. Pass the run id, or call it inside "
                             "`with mlflow.start_run():`.")
        mlflow_run_id = active.info.run_id
    client = mlflow.MlflowClient()
    client.get_run(mlflow_run_id)  # an unknown id fails here, before anything is tagged
    for key, value in nbflow_tags(flow_run, task_run).items():
        client.set_tag(mlflow_run_id, key, value)
    _tag_nbflow_run(flow_run, task_run, mlflow_run_id)
    return mlflow_run_id


def find_task_run(mlflow_run_id: str) -> dict[str, Any] | None:
    """The nbflow task run linked to this mlflow run (newest if several), as a dict; else None.

    A link made inside a task run is stored when the task run next changes state, so this
    finds it once the task run has finished.
    """
    df = api.sql(
        "SELECT * FROM task_runs WHERE list_contains(from_json(tags, '[\"VARCHAR\"]'), ?) "
        "ORDER BY coalesce(start_time, created) DESC NULLS LAST LIMIT 1", [TAG_PREFIX + mlflow_run_id])
    if df.empty:
        return None
    return {key: _plain(key, value) for key, value in df.iloc[0].to_dict().items()}


def find_mlflow_run(run_id: str) -> str | None:
    """The id of the mlflow run linked to this nbflow task run (or flow run); None if none.

    With several links, the last one made.
    """
    for table in ("task_runs", "flow_runs"):
        df = api.sql(f"SELECT tags FROM {table} WHERE id = ?", [run_id])
        if not df.empty:
            tags = json.loads(df["tags"].iloc[0] or "[]")
            linked = [t[len(TAG_PREFIX):] for t in tags if t.startswith(TAG_PREFIX)]
            return linked[-1] if linked else None
    return None


def _plain(key: str, value: Any) -> Any:
    """A DataFrame cell as a plain value: JSON columns parsed, missing values None."""
    if key in ("tags", "upstream") and isinstance(value, str):
        return json.loads(value)
    if value is None or isinstance(value, (str, bool, list, dict)):
        return value
    if hasattr(value, "to_pydatetime"):
        return None if value != value else value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


__all__ = [
    "MlflowNotInstalledError", "MlflowStoreError", "NoRunContextError", "find_mlflow_run",
    "find_task_run", "link_mlflow_run", "nbflow_mlflow_run", "nbflow_tags", "use_tracking_uri",
]
