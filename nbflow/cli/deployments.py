"""`nbflow deployment ...`: list deployments, run one (and watch the run), pause, resume, delete."""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager
from typing import Any, Iterator

from nbflow.cli import formatting as fmt
from nbflow.cli.base import Commands, CommandError, add_command, add_group
from nbflow.cli.deploy import add_param_option, parameters_of, schedule_text
from nbflow.cli.tables import format_fields, format_table
from nbflow.deployments.client import ApiRequestError, Client, LocalClient, connect

#: states a flow run does not leave; `run --watch` stops at them.
FINAL_STATES = ("Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled")
#: final states that make `run --watch` exit 0.
SUCCESS_STATES = ("Completed", "Cached")
#: seconds between two looks at a watched run.
WATCH_POLL_SECONDS = 0.5
#: deployments fetched per request by `ls` (the API's largest page).
PAGE_SIZE = 1000
#: the most columns a target takes in the `ls` table.
TARGET_WIDTH = 60
EXIT_INTERRUPTED = 130


def register(commands: Commands) -> None:
    verbs = add_group(commands, "deployment", help="Deployments: list them, run one, pause, resume, delete.")
    add_command(verbs, "ls", list_deployments, help="List deployments with their schedules and next runs.")

    run = add_command(verbs, "run", run_deployment, help="Start a run of a deployment now.",
                      description="Create a flow run of deployment NAME (or FLOW/NAME, as Prefect writes it), "
                                  "scheduled now; a worker runs it. --param values override the deployment's "
                                  "default parameters.")
    run.add_argument("name", type=deployment_ref, metavar="NAME",
                     help="the deployment's name, FLOW_NAME/DEPLOYMENT_NAME, or its id")
    add_param_option(run, "parameter of this run")
    run.add_argument("--watch", action="store_true",
                     help="follow the run's state until it ends; exit 0 if it completed, 1 if not")

    for verb, handler, summary in (
            ("pause", pause_deployment, "Pause a deployment: its schedule makes no runs until resumed."),
            ("resume", resume_deployment, "Resume a paused deployment's schedule."),
            ("delete", delete_deployment, "Delete a deployment; its scheduled runs are cancelled.")):
        parser = add_command(verbs, verb, handler, help=summary)
        parser.add_argument("name", type=deployment_ref, metavar="NAME",
                            help="the deployment's name, FLOW_NAME/DEPLOYMENT_NAME, or its id")


def deployment_ref(raw: str) -> str:
    """An argparse type: a non-empty deployment name or id."""
    value = raw.strip()
    if not value:
        raise argparse.ArgumentTypeError("the deployment name is empty; give a name from `nbflow deployment ls`")
    return value


@contextmanager
def deployment_lookup() -> Iterator[None]:
    """Point at `nbflow deployment ls` when the named deployment does not exist."""
    try:
        yield
    except ApiRequestError as exc:
        if exc.status != 404 or "deployment ls" in str(exc):
            raise
        raise CommandError(f"{str(exc).rstrip('.')}. List deployments with `nbflow deployment ls`.") from None


# -- ls ------------------------------------------------------------------------------------

def list_deployments(args: argparse.Namespace) -> int:
    client = connect()
    deployments: list[dict[str, Any]] = []
    while True:
        page = client.list_deployments(limit=PAGE_SIZE, offset=len(deployments))
        deployments.extend(page)
        if len(page) < PAGE_SIZE:
            break
    if not deployments:
        print("No deployments yet. Create one with `nbflow deploy NOTEBOOK.ipynb --name NAME`.")
        return 0
    rows = [(fmt.text(d.get("name")), fmt.text(d.get("kind")), _target(d), schedule_text(d),
             "yes" if d.get("paused") else "no", fmt.text(d.get("work_pool")),
             fmt.local_time(d.get("next_run_time"))) for d in deployments]
    print(format_table(["NAME", "KIND", "TARGET", "SCHEDULE", "PAUSED", "WORK POOL", "NEXT RUN"], rows))
    return 0


def _target(deployment: dict[str, Any]) -> str:
    """The notebook or entrypoint, cut on the left when long: its file name is the telling end."""
    text = fmt.text(deployment.get("notebook") or deployment.get("entrypoint"))
    return text if len(text) <= TARGET_WIDTH else "..." + text[-(TARGET_WIDTH - 3):]


# -- run -----------------------------------------------------------------------------------

def run_deployment(args: argparse.Namespace) -> int:
    parameters = parameters_of(args)
    client = connect()
    if args.watch and isinstance(client, LocalClient):
        raise CommandError("--watch needs a running nbflow server, which runs the flow run; none was found. "
                           "Start one with `nbflow server start`, then run this again.")
    with deployment_lookup():
        run = client.create_run(args.name, parameters or None)
    print(f"Created flow run {run['id']} of deployment {args.name!r} ({run.get('state') or 'Scheduled'}).",
          flush=True)
    if isinstance(client, LocalClient):
        print("No nbflow server is running: the run waits in the run store until one starts "
              "(`nbflow server start`).")
    if not args.watch:
        return 0
    return watch_run(client, run)


def watch_run(client: Client, run: dict[str, Any]) -> int:
    """Print the run's state changes until it ends; 0 for Completed/Cached, else a CommandError."""
    run_id, last = run["id"], None
    try:
        while True:
            state = run.get("state")
            if state != last:
                print(f"{time.strftime('%H:%M:%S')}  {state}", flush=True)
                last = state
            if state in FINAL_STATES:
                break
            time.sleep(WATCH_POLL_SECONDS)
            run = client.get_flow_run(run_id)
    except KeyboardInterrupt:
        print(f"Stopped watching; flow run {run_id} continues. See it with `nbflow flow-run inspect {run_id}`.")
        return EXIT_INTERRUPTED
    fields = [("flow run", run_id), ("state", fmt.text(state))]
    if run.get("state_message"):
        fields.append(("message", str(run["state_message"])))
    if run.get("output_notebook"):
        fields.append(("output notebook", str(run["output_notebook"])))
    print(format_fields(fields))
    if state in SUCCESS_STATES:
        return 0
    first_line = next(iter(str(run.get("state_message") or "").strip().splitlines()), "")
    raise CommandError(f"Flow run {run_id} ended {state}{': ' + first_line if first_line else '.'}")


# -- pause, resume, delete -----------------------------------------------------------------

def pause_deployment(args: argparse.Namespace) -> int:
    with deployment_lookup():
        deployment = connect().update_deployment(args.name, {"paused": True})
    print(f"Paused deployment {deployment.get('name')!r}: its schedule makes no runs until "
          f"`nbflow deployment resume {deployment.get('name')}`.")
    return 0


def resume_deployment(args: argparse.Namespace) -> int:
    with deployment_lookup():
        deployment = connect().update_deployment(args.name, {"paused": False})
    next_run = fmt.local_time(deployment.get("next_run_time"))
    print(f"Resumed deployment {deployment.get('name')!r}; next run: {next_run}.")
    return 0


def delete_deployment(args: argparse.Namespace) -> int:
    with deployment_lookup():
        answer = connect().delete_deployment(args.name)
    deleted = (answer or {}).get("deleted") or args.name
    print(f"Deleted deployment {args.name!r} (id {deleted}); its scheduled runs were cancelled.")
    return 0
