"""nbflow: workflow orchestration for people who live in Jupyter.

`from nbflow import flow, task` and every call is a tracked run in an embedded
DuckDB store under NBFLOW_HOME, with retries, timeouts, caching and task runners.
"""

from nbflow._version import __version__
from nbflow.api import debug, deploy, flow_run, flows, flush, logs, runs, sql, task_runs
from nbflow.deployments import load_flow_from_entrypoint  # also registers Flow.deploy/serve/from_source
from nbflow.engine.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from nbflow.engine.dask_runner import DaskTaskRunner
from nbflow.engine.flows import Flow, flow
from nbflow.engine.annotations import allow_failure, unmapped
from nbflow.engine.context import get_run_context, tags
from nbflow.engine.futures import as_completed, wait
from nbflow.engine.retries import exponential_backoff
from nbflow.engine.run_logging import get_run_logger
from nbflow.engine.states import State
from nbflow.engine.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from nbflow.engine.tasks import Task, task
from nbflow.engine.transactions import Transaction, transaction

__all__ = [
    "INPUTS", "NO_CACHE", "TASK_SOURCE", "DaskTaskRunner", "Flow", "ProcessPoolTaskRunner", "State",
    "Task", "ThreadPoolTaskRunner", "__version__", "as_completed", "debug", "deploy", "exponential_backoff", "flow",
    "flow_run", "flows", "flush", "get_run_logger", "logs", "runs", "sql", "task", "task_runs",
    "unmapped", "wait", "allow_failure", "get_run_context", "tags", "Transaction", "transaction",
    "load_flow_from_entrypoint",
]


def load_ipython_extension(shell: object) -> None:
    """`%load_ext nbflow`: the %%task and %nbflow magics (IPython loads only here)."""
    from nbflow.notebook.magics import load_ipython_extension as load

    load(shell)


def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Jupyter finds the nbflow server extension here (jupyter_server loads only then)."""
    from nbflow.server.app import NbflowApp

    return [{"module": "nbflow.server.app", "app": NbflowApp}]
