"""Find a failed task run's debug data from a run id, and load what it kept."""

from __future__ import annotations

import importlib
from typing import Any

from nbflow import settings
from nbflow.errors import NbflowError, UnknownRunError
from nbflow.store import debug_files, debug_sync
from nbflow.store.debug_files import DebugDataError
from nbflow.store.queries import MIN_PREFIX


class FailedInputs(dict):
    """The inputs a failed task run saw, by name, with the failure around them.

    A dict of the values (a @task's arguments by parameter name, a %%task cell's variables);
    `.error`, `.traceback`, `.source`, `.skipped` and `.manifest` describe the failure.
    """

    def __init__(self, values: dict[str, Any], manifest: dict[str, Any], skipped: list[dict[str, str]]) -> None:
        super().__init__(values)
        #: everything recorded about the failure (see nbflow/store/debug_files.py).
        self.manifest = manifest
        #: values not kept or not restored, each {"name", "type", "reason"}.
        self.skipped = skipped

    task_run_id = property(lambda self: self.manifest["task_run_id"])
    flow_run_id = property(lambda self: self.manifest["flow_run_id"])
    task_name = property(lambda self: self.manifest["task_name"])
    kind = property(lambda self: self.manifest["kind"])
    error = property(lambda self: self.manifest["error"])
    traceback = property(lambda self: self.manifest["traceback"])
    source = property(lambda self: self.manifest["source"])

    def __repr__(self) -> str:
        names = ", ".join(self) or "nothing"
        return (f"<FailedInputs of task run {self.task_name!r} ({self.task_run_id[:8]}): {self.error}; "
                f"values: {names}>")


def find_failed_run(run_id: str, task_name: str | None = None) -> dict[str, Any]:
    """The manifest of the failed task run `run_id` names: a task run, or a flow run's first failed
    task run (the one named `task_name` if given); an id or a unique prefix."""
    run_id = (run_id or "").strip()
    if len(run_id) < MIN_PREFIX:
        raise DebugDataError(f"Give a flow run's or task run's id, or a prefix of at least {MIN_PREFIX} "
                             f"characters; got {run_id!r}. List failed runs with `nbflow flow-run ls --state Failed`.")
    manifests = debug_sync.find(run_id)
    if task_name is not None:
        named = [m for m in manifests if m["task_name"] == task_name]
        if manifests and not named:
            names = ", ".join(sorted({m["task_name"] for m in manifests}))
            raise DebugDataError(f"Run {run_id!r} has no failed task run named {task_name!r}; its failed "
                                 f"task runs with debug data: {names}.")
        manifests = named
    if not manifests:
        raise DebugDataError(_why_nothing(run_id))
    return manifests[0]


def load_inputs(manifest: dict[str, Any]) -> FailedInputs:
    """The kept values, each verified before it is loaded (a modified file is refused)."""
    values = {name: debug_files.load_value(manifest, name) for name in manifest["values"]}
    skipped = list(manifest["skipped"])
    for name, module in manifest.get("modules", {}).items():
        try:
            values[name] = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - a module this kernel lacks is listed, not fatal
            skipped.append({"name": name, "type": "module", "reason": f"import {module} failed: {exc}"})
    return FailedInputs(values, manifest, skipped)


def debug(run_id: str, task_name: str | None = None) -> FailedInputs:
    """The inputs of a failed task run (a task run id, or a flow run's first failed task run)."""
    return load_inputs(find_failed_run(run_id, task_name))


def _why_nothing(run_id: str) -> str:
    """Say why a run has no debug data, using the run store when it can be read."""
    advice = (" nbflow keeps the inputs of failed task runs (a @task or %%task cell that raised or timed out) "
              f"unless NBFLOW_KEEP_FAILED_INPUTS=0, @task(keep_failed_inputs=False) or %%task --no-keep, "
              f"for NBFLOW_FAILED_INPUTS_DAYS={settings.failed_inputs_days():g} days.")
    try:
        from nbflow import api

        run = api.flow_run(run_id)
    except UnknownRunError:
        return (f"No failed run with id {run_id!r} has debug data, and no flow run has that id. "
                f"List failed runs with `nbflow flow-run ls --state Failed`.{advice}")
    except (NbflowError, OSError, ImportError):
        return f"No failed task run with id {run_id!r} has debug data.{advice}"
    if run.get("state") in ("Completed", "Cached"):
        return f"Flow run {run['id']} ({run.get('flow_name')}) ended {run['state']}: nothing failed to debug."
    return (f"Flow run {run['id']} ({run.get('flow_name')}) ended {run.get('state')}, but none of its task runs "
            f"kept debug data (the failure was outside a task, or keeping was off, or it was pruned).{advice}")


def summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the REST route answers about a failed task run's debug data (no values)."""
    from nbflow.debugging.report import location

    keys = ("task_run_id", "flow_run_id", "task_name", "kind", "state", "error", "exception_type", "message",
            "traceback", "raised_at", "source", "header", "failed_at", "size_cap", "skipped")
    body = {k: manifest.get(k) for k in keys}
    body["location"] = location(manifest)
    body["values"] = [{"name": n, "type": v["type"], "bytes": v["bytes"], "format": v["ref"]["format"],
                       "role": v["role"]} for n, v in manifest["values"].items()]
    body["modules"] = manifest.get("modules", {})
    return body


def restore_namespace(namespace: dict[str, Any], task_run_id: str) -> FailedInputs:
    """Put a failed task run's kept variables into `namespace` (a retry resuming at its cell); say what
    came back and what did not."""
    inputs = debug(task_run_id)
    namespace.update(inputs)
    print(f"Restored {len(inputs)} variable(s) of failed task run {task_run_id[:8]} ({inputs.task_name}): "
          f"{', '.join(inputs) or 'none'}")
    for skipped in inputs.skipped:
        print(f"Not restored: {skipped['name']} ({skipped['type']}): {skipped['reason']}")
    return inputs
