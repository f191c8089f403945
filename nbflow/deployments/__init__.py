"""Deployments: notebooks and flows run on demand or on a schedule, executed with papermill.

Importing this package registers `Flow.deploy()`, `Flow.serve()` and `Flow.from_source()` with
the engine (which does not import this layer). The client code behind them loads on first use:
it brings the store and the server's error mapping with it.
"""

from __future__ import annotations

from typing import Any

from nbflow.engine.deployer import register_deployer
from nbflow.errors import DeploymentRemovedError

__all__ = ["load_flow_from_entrypoint"]


def _deploy(flow: Any, name: str, **options: Any) -> dict[str, Any]:
    from nbflow.deployments.client import deploy

    return deploy(flow, name, **options)


def _serve(flow: Any, name: str, **options: Any) -> None:
    from nbflow.deployments.client import serve

    serve(flow, name, **options)


def _from_source(source: Any, entrypoint: str) -> Any:
    from nbflow.deployments.loading import flow_from_source

    return flow_from_source(source, entrypoint)


def load_flow_from_entrypoint(entrypoint: str, use_placeholder_flow: bool = True) -> Any:
    """The flow at "path/to/file.py:flow_name", loaded by running the file (as Prefect's)."""
    from nbflow.deployments.loading import load_flow_from_entrypoint as load

    return load(entrypoint, use_placeholder_flow)


register_deployer(deploy=_deploy, serve=_serve, from_source=_from_source)


def __getattr__(name: str) -> Any:
    if name == "Deployment":
        raise DeploymentRemovedError(
            "`nbflow.deployments:Deployment` does not exist (Prefect 3 removed it as well). Use "
            "`flow.serve()`, `flow.deploy()`, or `nbflow deploy FILE.py:FLOW --name NAME` instead.")
    raise AttributeError(f"module 'nbflow.deployments' has no attribute {name!r}")
