"""`nbflow flow-run ...`: list flow runs, inspect one with its task runs, read its logs."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from nbflow import api
from nbflow.cli import formatting as fmt
from nbflow.cli.base import (STATE_NAMES, Commands, CommandError, add_command, add_group, log_level,
                             positive_int, state_name)
from nbflow.cli.tables import format_fields, format_table
from nbflow.errors import NbflowError, UnknownRunError
from nbflow.store.queries import MIN_PREFIX

#: flow runs `ls` shows unless told otherwise.
DEFAULT_LIMIT = 20
#: the most columns an error takes in the task runs table; `--json` has it whole.
ERROR_WIDTH = 60

#: flow run fields shown first by `inspect`, and shown even when empty.
MAIN_FIELDS = ("id", "name", "flow_name", "state", "state_message", "parameters",
               "start_time", "end_time", "duration_s")
#: fields holding times (naive UTC in the store, or epoch seconds), shown in local time.
TIME_FIELDS = frozenset({"scheduled_time", "start_time", "end_time", "created", "updated",
                         "process_start"})


def register(commands: Commands) -> None:
    verbs = add_group(commands, "flow-run", help="Flow runs: list them, inspect one, read its logs, debug a failed one.")

    ls = add_command(verbs, "ls", list_flow_runs, help="List flow runs, newest first.")
    ls.add_argument("--flow-name", metavar="NAME", help="only runs of the flow with this name")
    ls.add_argument("--state", type=state_name, metavar="STATE",
                    help="only runs in this state (any case): " + ", ".join(STATE_NAMES.values()))
    ls.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                    help=f"show at most N runs (default {DEFAULT_LIMIT})")

    inspect = add_command(verbs, "inspect", inspect_flow_run,
                          help="Show a flow run's fields and its task runs.")
    inspect.add_argument("id", type=run_id_arg, metavar="ID", help="the flow run's id, or a unique prefix of it")
    inspect.add_argument("--json", action="store_true", help="print the run (with its task runs) as JSON")

    logs = add_command(verbs, "logs", show_logs, help="Print a flow run's log lines, oldest first.")
    logs.add_argument("id", type=run_id_arg, metavar="ID", help="the flow run's id, or a unique prefix of it")
    logs.add_argument("--level", type=log_level, default=logging.NOTSET, metavar="LEVEL",
                      help="only lines at this level or above: DEBUG, INFO, WARNING, ERROR, CRITICAL")

    retry = add_command(verbs, "retry", retry_flow_run,
                        help="Run a deployment run again: from the start, or --from-failed at its failed task.")
    retry.add_argument("id", type=run_id_arg, metavar="ID", help="the flow run's id, or a unique prefix of it")
    retry.add_argument("--from-failed", action="store_true",
                       help="start at the failed task, with what it saw restored instead of recomputed")
    retry.add_argument("--watch", action="store_true", help="follow the new run's state until it ends")

    debug = add_command(verbs, "debug", debug_flow_run,
                        help="Write a notebook that restores a failed run's inputs and holds the failing code.")
    debug.add_argument("id", type=run_id_arg, metavar="ID",
                       help="a failed flow run's id (its first failed task run) or a task run's, or a unique prefix")
    debug.add_argument("task_name", nargs="?", metavar="TASK_NAME", help="the failed task run of this name")
    debug.add_argument("-o", "--output", metavar="PATH",
                       help="the notebook to write (default: debug-<task run id prefix>.ipynb here)")


def run_id_arg(raw: str) -> str:
    """An argparse type: a non-empty run id or id prefix."""
    value = raw.strip()
    if not value:
        raise argparse.ArgumentTypeError("the run id is empty; give a flow run's id or a prefix of it")
    return value


def find_flow_run(run_id: str) -> dict[str, Any]:
    """The flow run with this id or unique id prefix; a CommandError that says how to find one if none."""
    try:
        return api.flow_run(run_id)
    except UnknownRunError as exc:
        message = str(exc).strip() or f"No flow run with id {run_id!r}."
        if "flow-run ls" not in message:
            message = f"{message.rstrip('.')}. List runs with `nbflow flow-run ls`."
        if len(run_id) < MIN_PREFIX:
            message += f" An id prefix needs at least {MIN_PREFIX} characters."
        raise CommandError(message) from exc


# -- ls ------------------------------------------------------------------------------------

def list_flow_runs(args: argparse.Namespace) -> int:
    runs = api.runs(flow_name=args.flow_name, state=args.state, limit=args.limit).to_dict("records")
    if not runs:
        print(_no_runs_message(args))
        return 0
    rows = [(fmt.text(r.get("id")), fmt.text(r.get("flow_name")), fmt.text(r.get("state")),
             fmt.local_time(r.get("start_time")), fmt.duration(r.get("duration_s"))) for r in runs]
    print(format_table(["ID", "FLOW", "STATE", "START", "DURATION"], rows, right=[4]))
    return 0


def _no_runs_message(args: argparse.Namespace) -> str:
    filters = []
    if args.flow_name is not None:
        filters.append(f"of flow {args.flow_name!r}")
    if args.state is not None:
        filters.append(f"in state {args.state}")
    if not filters:
        return "No flow runs yet. Call a function decorated with @flow and its runs show up here."
    return f"No flow runs {' '.join(filters)}. See all runs with `nbflow flow-run ls`."


# -- inspect -------------------------------------------------------------------------------

def inspect_flow_run(args: argparse.Namespace) -> int:
    run = find_flow_run(args.id)
    task_runs = list(reversed(api.task_runs(flow_run_id=run["id"]).to_dict("records")))  # oldest first
    if args.json:
        print(json.dumps(fmt.jsonable({**run, "task_runs": task_runs}), indent=2, ensure_ascii=False))
        return 0
    print(format_fields(_run_fields(run)))
    print()
    if not task_runs:
        print("Task runs: none")
        return 0
    print(f"Task runs ({len(task_runs)}):")
    rows = [(fmt.text(t.get("id")), fmt.text(t.get("task_name")), fmt.text(t.get("state")),
             fmt.duration(t.get("duration_s")), "" if fmt.is_missing(t.get("error")) else fmt.text(t["error"]))
            for t in task_runs]
    print(format_table(["ID", "TASK", "STATE", "DURATION", "ERROR"], rows, right=[3],
                       max_widths={4: ERROR_WIDTH}))
    return 0


def _run_fields(run: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's fields as (label, text), the main ones first; empty extra fields left out."""
    keys = [k for k in MAIN_FIELDS if k in run]
    keys += [k for k in run if k not in MAIN_FIELDS and not fmt.is_missing(run[k])]
    return [(key, _field_text(key, run[key])) for key in keys]


def _field_text(key: str, value: Any) -> str:
    if key in TIME_FIELDS:
        return fmt.local_time(value)
    if key == "duration_s":
        return fmt.duration(value)
    return fmt.text(value)


# -- retry ---------------------------------------------------------------------------------

def retry_flow_run(args: argparse.Namespace) -> int:
    from nbflow.cli.deployments import watch_run
    from nbflow.deployments.client import ApiRequestError, LocalClient, connect

    client = connect()
    if args.watch and isinstance(client, LocalClient):
        raise CommandError("--watch needs a running nbflow server, which runs the flow run; none was found. "
                           "Start one with `nbflow server start`, then run this again.")
    try:
        run = client.retry_run(args.id, from_failed=args.from_failed)
    except (ApiRequestError, NbflowError) as exc:
        raise CommandError(str(exc)) from None
    how = " from its failed task" if args.from_failed else ""
    print(f"Created flow run {run['id']}: a retry of {args.id}{how} ({run.get('state') or 'Scheduled'}).", flush=True)
    if isinstance(client, LocalClient):
        print("No nbflow server is running: the run waits in the run store until one starts (`nbflow server start`).")
    return watch_run(client, run) if args.watch else 0


# -- debug ---------------------------------------------------------------------------------

def debug_flow_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbflow.debugging.debug_notebook import notebook_text
    from nbflow.debugging.failed_runs import find_failed_run
    from nbflow.debugging.report import location
    from nbflow.store.debug_files import DebugDataError

    try:
        manifest = find_failed_run(args.id, args.task_name)
    except DebugDataError as exc:
        raise CommandError(str(exc)) from None
    path = Path(args.output or f"debug-{manifest['task_run_id'][:8]}.ipynb")
    if path.suffix != ".ipynb":
        raise CommandError(f"-o names the notebook to write and must end in .ipynb; got {str(path)!r}.")
    try:
        path.write_text(notebook_text(manifest), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"Cannot write {path}: {exc.strerror or exc}. Choose another path with -o.") from None
    print(f"Task run {manifest['task_run_id']} ({manifest['task_name']}) ended {manifest['state']}: {manifest['error']}")
    print(f"  raised at {location(manifest)}")
    for skipped in manifest["skipped"]:
        print(f"  not kept: {skipped['name']} ({skipped['type']}): {skipped['reason']}")
    print(f"Wrote {path}: open it in Jupyter and run it to get the failing moment back.")
    return 0


# -- logs ----------------------------------------------------------------------------------

def show_logs(args: argparse.Namespace) -> int:
    run = find_flow_run(args.id)
    lines = api.logs(run["id"]).to_dict("records")
    shown = 0
    for line in lines:
        if _level(line) < args.level:
            continue
        level_name = fmt.text(line.get("level_name"))
        print(f"{fmt.clock_time(line.get('timestamp'))} | {level_name:<8} | {fmt.text(line.get('message'))}")
        shown += 1
    if not shown:
        at_level = f" at {logging.getLevelName(args.level)} or above" if args.level > logging.NOTSET else ""
        print(f"No log lines{at_level} for flow run {run['id']}.")
    return 0


def _level(line: dict[str, Any]) -> int:
    """A log line's numeric level, from its `level` column or else its level name."""
    level = line.get("level")
    if not fmt.is_missing(level):
        return int(level)
    number = logging.getLevelName(str(line.get("level_name", "")).upper())
    return number if isinstance(number, int) else logging.NOTSET
