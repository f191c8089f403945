"""`nbflow flow ...`: the flows that have run, by name."""

from __future__ import annotations

import argparse

from nbflow import api
from nbflow.cli import formatting as fmt
from nbflow.cli.base import Commands, add_command, add_group
from nbflow.cli.tables import format_table


def register(commands: Commands) -> None:
    verbs = add_group(commands, "flow", help="Flows that have run (by name).")
    add_command(verbs, "ls", list_flows,
                help="List flows: how many runs each has, and its last run's start and state.")


def list_flows(args: argparse.Namespace) -> int:
    flows = api.flows().to_dict("records")
    if not flows:
        print("No flows have run yet. Call a function decorated with @flow and it shows up here.")
        return 0
    rows = [(fmt.text(f.get("flow_name")), fmt.text(f.get("runs")), fmt.local_time(f.get("last_run_start")),
             fmt.text(f.get("last_state"))) for f in flows]
    print(format_table(["NAME", "RUNS", "LAST RUN START", "LAST STATE"], rows, right=[1]))
    return 0
