"""`GET flow_runs/{id}/debug` and `.../debug_notebook`: a failed run's debug data, and the notebook
that brings it back (the dashboard's "Debug in a notebook" button downloads it); `POST .../retry`:
a new run of its deployment, optionally resuming at the failed task; `.../debug_files`: the same data
moved between a worker's or client's NBFLOW_HOME and the server's (nbflow/store/debug_uploads.py)."""

from __future__ import annotations

import re
from typing import Any

from tornado import web

from nbflow.debugging.debug_notebook import notebook_text
from nbflow.debugging.failed_runs import summary
from nbflow.deployments.retries import retry_run
from nbflow.server import bodies
from nbflow.server.errors import ApiError, bad_request, not_found
from nbflow.server.handlers import NbflowHandler, Reply, api
from nbflow.store import debug_files, debug_uploads


def _manifest(run_id: str, task_name: str | None) -> dict[str, Any]:
    if task_name is not None and not task_name.strip():
        raise bad_request("task_name is empty; give the name of a failed task run, or leave it out.", "task_name")
    manifests = debug_files.find(run_id)
    if task_name:
        manifests = [m for m in manifests if m["task_name"] == task_name]
    if not manifests:
        named = f" named {task_name!r}" if task_name else ""
        raise not_found(f"No failed task run{named} of run {run_id} kept debug data: it did not fail in a task, "
                        "keeping was off (NBFLOW_KEEP_FAILED_INPUTS=0, keep_failed_inputs=False, %%task --no-keep), "
                        "or the data was pruned (NBFLOW_FAILED_INPUTS_DAYS).")
    return manifests[0]


class DebugHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> dict:
        return summary(_manifest(run_id, self.arguments().get("task_name")))


class DebugNotebookHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> Reply:
        manifest = _manifest(run_id, self.arguments().get("task_name"))
        name = f"debug-{manifest['task_run_id'][:8]}.ipynb"
        return Reply(notebook_text(manifest), "application/x-ipynb+json; charset=utf-8",
                     (("Content-Disposition", f'attachment; filename="{name}"'),))


class RetryHandler(NbflowHandler):
    @web.authenticated
    @api
    def post(self, run_id: str) -> dict:
        body = self.json_object()
        run = retry_run(self.store, run_id, bool(body.get("from_failed", False)))
        self.set_status(201)
        return run


class DebugFilesHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str) -> list:
        return debug_uploads.listing(run_id)

    @web.authenticated
    @api
    def post(self, run_id: str) -> dict:
        body = self.json_object()
        return debug_uploads.offer(_full_id(run_id, "id"), body["task_run_id"], body["manifest"], body["files"])


class DebugFileHandler(NbflowHandler):
    @web.authenticated
    @api
    def get(self, run_id: str, task_run_id: str, name: str) -> Reply:
        data = debug_uploads.kept_file(_full_id(run_id, "id"), _full_id(task_run_id, "task_run_id"), name)
        return Reply(data, "application/octet-stream")

    @web.authenticated
    @api
    def put(self, run_id: str, task_run_id: str, name: str) -> dict:
        text = self.arguments().get("position", "0")
        if not text.isdigit() or len(text) > 18:
            raise ApiError(422, f"position must be the byte position where the chunk starts, 0 or more; got {text!r}.",
                           field="position")
        return debug_uploads.receive(_full_id(run_id, "id"), _full_id(task_run_id, "task_run_id"), name, int(text),
                                     bytes(self.request.body))


def _full_id(value: str, field: str) -> str:
    """Moving debug data takes whole ids (32 lowercase hex digits), never a prefix."""
    if not re.match(bodies.RUN_ID_PATTERN, value):
        raise ApiError(422, f"{field} must be a whole run id (32 lowercase hex digits), not a prefix; got {value!r}.",
                       field=field)
    return value
