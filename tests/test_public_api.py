"""The public face: exported names, Prefect-compatible import paths, and a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import nbflow


def test_exported_members() -> None:
    assert sorted(nbflow.__all__) == sorted([
        "INPUTS", "NO_CACHE", "TASK_SOURCE", "DaskTaskRunner", "Flow", "ProcessPoolTaskRunner",
        "State", "Task", "ThreadPoolTaskRunner", "__version__", "as_completed", "debug", "deploy", "exponential_backoff",
        "flow", "flow_run", "flows", "flush", "get_run_logger", "logs", "runs", "sql", "task",
        "task_runs", "unmapped", "wait", "allow_failure", "get_run_context", "tags", "Transaction", "transaction",
        "load_flow_from_entrypoint",
    ])
    for name in nbflow.__all__:
        assert getattr(nbflow, name) is not None, name


def test_prefect_style_import_paths() -> None:
    from nbflow.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE  # noqa: F401
    from nbflow.futures import as_completed, wait  # noqa: F401
    from nbflow.states import Completed, Failed, State  # noqa: F401
    from nbflow.task_runners import DaskTaskRunner, ThreadPoolTaskRunner  # noqa: F401
    from nbflow.tasks import exponential_backoff, task, task_input_hash  # noqa: F401
    from nbflow.utilities.annotations import allow_failure, opaque, quote, unmapped  # noqa: F401
    from nbflow.runtime import deployment, flow_run, task_run  # noqa: F401
    from nbflow.context import FlowRunContext, TaskRunContext, get_run_context  # noqa: F401
    from nbflow.exceptions import CrashedRun, FailedRun, MissingResult, ParameterTypeError  # noqa: F401
    from nbflow.logging import get_run_logger as run_logger

    assert run_logger is nbflow.get_run_logger and callable(nbflow.flows)  # nbflow.flows() is not a module


def test_import_nbflow_loads_no_heavy_module() -> None:
    code = ("import sys, json, nbflow; heavy = ['pandas', 'duckdb', 'pyarrow', 'numpy', 'cloudpickle', "
            "'dask', 'distributed', 'IPython', 'tornado', 'jupyter_server', 'papermill']; "
            "print(json.dumps([m for m in heavy if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_deploy_is_a_function_also_after_the_deployments_package_loads() -> None:
    import nbflow.deployments.schedules  # noqa: F401

    assert callable(nbflow.deploy) and nbflow.deploy.__module__ == "nbflow.api"


def test_the_flows_function_is_not_shadowed_by_a_submodule() -> None:
    import importlib

    for name in ("tasks", "futures", "states", "task_runners", "cache_policies"):
        importlib.import_module(f"nbflow.{name}")
    assert callable(nbflow.flows) and callable(nbflow.runs) and callable(nbflow.logs)
