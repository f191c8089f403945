"""Retry a deployment run: again from the start, or `from_failed`, starting at its failed task with
what that task saw restored instead of recomputed. The new run is linked to the old one by its
`triggered_by`, which also tells the worker where to resume."""

from __future__ import annotations

from typing import Any

from nbflow.deployments import service
from nbflow.deployments.definitions import DeploymentError
from nbflow.store import debug_files, queries

_RETRYABLE = frozenset({"Failed", "TimedOut", "Crashed", "Cancelled", "Completed", "Cached"})


def retry_run(store: Any, run_id: str, from_failed: bool = False) -> dict[str, Any]:
    """A new run of the run's deployment with its parameters; with `from_failed`, one that resumes at the
    failed task run whose inputs were kept (409 when there is none)."""
    old = queries.flow_run(store, run_id)
    if not old.get("deployment_id"):
        raise DeploymentError(f"Flow run {old['id']} is not a deployment run, so no worker can run it again; "
                              "call the flow again (its failed task's inputs: nbflow.debug(run_id)).", "id", 409)
    if old.get("state") not in _RETRYABLE:
        raise DeploymentError(f"Flow run {old['id']} is {old.get('state')}; retry it once it has ended.", "id", 409)
    triggered_by = f"Retry of flow run {old['id']}"
    if from_failed:
        manifests = debug_files.find(old["id"])
        if not manifests:
            raise DeploymentError(
                f"Flow run {old['id']} kept no inputs of a failed task run (it ended {old.get('state')}), so it "
                "cannot resume at its failed task; retry it from the start instead.", "from_failed", 409)
        triggered_by += f" from its failed task run {manifests[0]['task_run_id']}"
    return service.create_run(store, old["deployment_id"], old.get("parameters") or {}, triggered_by=triggered_by)
