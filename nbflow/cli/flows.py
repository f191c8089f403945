"""`nbflow flow ...`: the flows that have run, by name."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nbflow import api
from nbflow.cli import formatting as fmt
from nbflow.cli.base import Commands, CommandError, add_command, add_group
from nbflow.cli.tables import format_fields, format_table

#: recent runs `inspect` lists.
RECENT_RUNS = 5


def register(commands: Commands) -> None:
    verbs = add_group(commands, "flow", help="Flows that have run (by name).")
    add_command(verbs, "ls", list_flows,
                help="List flows: how many runs each has, and its last run's start and state.")
    inspect = add_command(verbs, "inspect", inspect_flow,
                          help="Show a flow: its runs by state, its deployments and its latest runs.")
    inspect.add_argument("name", metavar="NAME", help="the flow's name, as `nbflow flow ls` shows it")
    inspect.add_argument("--json", action="store_true", help="print the flow as JSON")


def list_flows(args: argparse.Namespace) -> int:
    flows = api.flows().to_dict("records")
    if not flows:
        print("No flows have run yet. Call a function decorated with @flow and it shows up here.")
        return 0
    rows = [(fmt.text(f.get("flow_name")), fmt.text(f.get("runs")), fmt.local_time(f.get("last_run_start")),
             fmt.text(f.get("last_state"))) for f in flows]
    print(format_table(["NAME", "RUNS", "LAST RUN START", "LAST STATE"], rows, right=[1]))
    return 0


def inspect_flow(args: argparse.Namespace) -> int:
    name = args.name.strip()
    summary = next((f for f in api.flows().to_dict("records") if f.get("flow_name") == name), None)
    deployments = _deployments_of(name)
    if summary is None and not deployments:
        known = ", ".join(str(f.get("flow_name")) for f in api.flows().to_dict("records")[:10]) or "none yet"
        raise CommandError(f"No flow named {name!r} has run or been deployed (flows: {known}). List them with "
                           "`nbflow flow ls`.")
    states = api.sql("SELECT state, count(*) AS n FROM flow_runs WHERE flow_name = ? GROUP BY state "
                     "ORDER BY n DESC, state", [name]).to_dict("records")
    recent = api.runs(flow_name=name, limit=RECENT_RUNS).to_dict("records")
    if args.json:
        print(json.dumps(fmt.jsonable({
            "name": name, "runs": sum(int(s["n"]) for s in states), "states": {s["state"]: int(s["n"]) for s in states},
            "last_run_start": (summary or {}).get("last_run_start"), "last_state": (summary or {}).get("last_state"),
            "deployments": [{k: d.get(k) for k in ("id", "name", "entrypoint", "notebook", "schedule", "paused",
                                                   "work_pool")} for d in deployments],
            "recent_runs": [{k: r.get(k) for k in ("id", "name", "state", "start_time", "duration_s")}
                            for r in recent]}), indent=2, ensure_ascii=False))
        return 0
    total = sum(int(s["n"]) for s in states)
    by_state = ", ".join(f"{s['state']} {int(s['n'])}" for s in states)
    fields = [("name", name), ("runs", f"{total} ({by_state})" if states else "0"),
              ("last run start", fmt.local_time((summary or {}).get("last_run_start"))),
              ("last state", fmt.text((summary or {}).get("last_state"))),
              ("deployments", ", ".join(f"{name}/{d['name']}" for d in deployments) or "none")]
    print(format_fields(fields))
    if recent:
        print()
        print(f"Latest runs ({len(recent)}):")
        rows = [(fmt.text(r.get("id")), fmt.text(r.get("name")), fmt.text(r.get("state")),
                 fmt.local_time(r.get("start_time")), fmt.duration(r.get("duration_s"))) for r in recent]
        print(format_table(["ID", "NAME", "STATE", "START", "DURATION"], rows, right=[4]))
    return 0


def _deployments_of(name: str) -> list[dict[str, Any]]:
    """The deployments of flow `name`, from the server when one runs, else from the store."""
    from nbflow.deployments.client import connect

    found: list[dict[str, Any]] = []
    client = connect()
    while True:
        page = client.list_deployments(limit=1000, offset=len(found))
        found.extend(page)
        if len(page) < 1000:
            break
    return [d for d in found if d.get("flow_name") == name]
