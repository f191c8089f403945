"""What the dashboard reads beyond the run routes: state history, the laid-out run graph, the
executed notebook as HTML, and the workers."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from nbflow import settings
from nbflow.deployments import paths
from nbflow.server.errors import ApiError
from nbflow.server.runs_api import jsonable
from nbflow.store import queries


def run_states(store: Any, run_id: str) -> list[dict[str, Any]]:
    """Every state the flow run went through, in order."""
    full_id = queries.flow_run(store, run_id)["id"]
    frame = queries.state_history(store, full_id)
    return [{"seq": int(r["seq"]), "state": r["state"], "message": jsonable(r["message"]),
             "timestamp": jsonable(r["timestamp"])} for r in frame.to_dict("records")]


def run_graph(store: Any, run_id: str) -> dict[str, Any]:
    """The flow run's task graph, laid out and collapsed as the notebook widget draws it."""
    from nbflow.notebook.run_graph import RunGraph, collapse, layout, ordered_counts, state_colour

    flow_run = queries.flow_run(store, run_id)
    tasks = queries.task_runs(store, flow_run_id=flow_run["id"], limit=None)
    graph = RunGraph.from_rows(flow_run, tasks.to_dict("records"))
    display = collapse(graph)
    places = layout(display)
    nodes = []
    for node in display:
        x, y = places[node.id]
        end = node.end
        nodes.append({"id": node.id, "name": node.label, "task_name": node.task_name, "state": node.state,
                      "colour": state_colour(node.state), "x": x, "y": y, "start_time": _iso(node.start),
                      "end_time": _iso(end), "duration_s": None if node.start is None or end is None
                      else max(end - node.start, 0.0), "error": node.error, "count": len(node.members),
                      "counts": node.counts})
    edges = [{"from": u, "to": node.id} for node in display for u in node.upstream]
    counts = graph.counts()
    states = ordered_counts({s: 1 for s in ("Scheduled", "Pending", "Running", "Retrying", "Completed", "Cached",
                                             "Failed", "TimedOut", "Crashed", "Cancelled")})
    return {"nodes": nodes, "edges": edges, "counts": counts, "collapsed": len(display) < len(graph.nodes),
            "colours": {s: state_colour(s) for s in states}}


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def output_notebook_html(store: Any, run_id: str) -> str:
    """The run's executed notebook rendered as one HTML page (no scripts run: the page sandboxes it)."""
    target = _output_notebook(store, run_id)
    stat = target.stat()
    return _render(str(target), stat.st_mtime_ns, stat.st_size)


def output_notebook_json(store: Any, run_id: str) -> dict[str, Any]:
    """The run's executed notebook as nbformat JSON (for JupyterLab's notebook viewer)."""
    target = _output_notebook(store, run_id)
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ApiError(422, f"The output notebook {target} cannot be read as a notebook: {exc}",
                       field="output_notebook") from None


def _output_notebook(store: Any, run_id: str) -> Path:
    """The path of the run's output notebook, confined to the allowed roots; 404/422 otherwise."""
    run = queries.flow_run(store, run_id)
    path = run.get("output_notebook")
    if not path:
        raise ApiError(404, f"Flow run {run['id']} has no output notebook (only notebook runs have one).")
    try:  # resolved now: the recorded file may have been replaced by a symlink since
        target = paths.resolve(path, "output_notebook")
    except paths.PathNotAllowedError as exc:
        raise ApiError(422, f"The output notebook of flow run {run['id']} is not shown: {exc}",
                       field="output_notebook") from None
    if target.suffix != ".ipynb" or not os.path.isfile(target):
        raise ApiError(404, f"The output notebook of flow run {run['id']} is no longer at {path}.")
    return target


@functools.lru_cache(maxsize=32)
def _render(path: str, mtime_ns: int, size: int) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(notebook)
    # The sandbox would block them, and the browser would log an error for each one it blocks.
    return _SCRIPT.sub("", body)


#: a script element (nbconvert's page and the cells' JavaScript outputs).
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)


def list_workers(store: Any) -> list[dict[str, Any]]:
    """Workers that ever heartbeated, most recent first, with whether they are online now."""
    frame = store.query("SELECT id, work_pool, host, pid, started, heartbeat FROM workers "
                        "ORDER BY heartbeat DESC NULLS LAST LIMIT 1000")
    cutoff = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=settings.heartbeat_timeout())
    workers = []
    for row in frame.to_dict("records"):
        beat = row["heartbeat"]
        online = beat is not None and str(beat) != "NaT" and beat.to_pydatetime() >= cutoff
        workers.append({k: jsonable(v) for k, v in row.items()} | {"online": bool(online)})
    return workers
