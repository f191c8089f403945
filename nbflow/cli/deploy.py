"""`nbflow deploy TARGET --name NAME ...`: create a deployment, or update the one of that name."""

from __future__ import annotations

import argparse
from typing import Any

from nbflow.cli import formatting as fmt
from nbflow.cli.base import Commands, UsageError, add_command, positive_int
from nbflow.cli.tables import format_fields
from nbflow.deployments.client import (API_PATH, ApiClient, Client, DeploymentSpecError, LocalClient,
                                      apply_deployment, connect, deploy_body)


def register(commands: Commands) -> None:
    parser = add_command(
        commands, "deploy", deploy_command,
        help="Deploy a notebook or a flow: run it on a schedule or on demand.",
        description="Deploy NOTEBOOK.ipynb, or the flow FLOW of FILE.py, as deployment NAME. Deploying a "
                    "NAME that exists updates that deployment. Without a running server the deployment is "
                    "stored in the run store and runs once `nbflow server start` runs.")
    parser.add_argument("target", metavar="PATH.ipynb|PATH.py:FLOW",
                        help="the notebook, or the Python file and the name of its @flow function")
    parser.add_argument("--name", required=True, help="the deployment's name, e.g. nightly-report")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--cron", metavar="EXPR", help="run on this cron schedule, e.g. '0 2 * * *'")
    when.add_argument("--interval", type=positive_int, metavar="SECONDS", help="run every SECONDS seconds")
    parser.add_argument("--timezone", metavar="TZ",
                        help="time zone of --cron, e.g. Europe/Paris (default UTC)")
    add_param_option(parser, "default parameter of every run")
    parser.add_argument("--timeout", type=positive_seconds, metavar="S", help="stop a run after S seconds")
    parser.add_argument("--work-pool", metavar="NAME", help="the work pool whose workers run it (default: default)")
    parser.add_argument("--paused", action="store_true", help="create it paused: no scheduled runs until resumed")


def add_param_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--param KEY=VALUE`, repeatable; the server converts the text to the parameter's type."""
    parser.add_argument("--param", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help=f"a {what} (repeatable); text, converted to the parameter's type")


def key_value(raw: str) -> tuple[str, str]:
    """An argparse type: `KEY=VALUE` split at the first '='."""
    key, equals, value = raw.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{raw!r} has no '='; give KEY=VALUE, e.g. --param n_rows=100")
    if not key.strip():
        raise argparse.ArgumentTypeError(f"{raw!r} has no parameter name before '='; give KEY=VALUE")
    return key.strip(), value


def parameters_of(args: argparse.Namespace) -> dict[str, str]:
    """The `--param` pairs as a dict; a key given twice is a usage error."""
    parameters: dict[str, str] = {}
    for key, value in args.param:
        if key in parameters:
            raise UsageError(f"argument --param: {key!r} is given twice; give each parameter once",
                             args.parser.prog)
        parameters[key] = value
    return parameters


def positive_seconds(raw: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds; give e.g. 600") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a positive number of seconds; give e.g. 600")
    return value


def deploy_command(args: argparse.Namespace) -> int:
    if args.timezone is not None and args.cron is None:
        raise UsageError("argument --timezone: applies to --cron only; give --cron as well", args.parser.prog)
    try:
        body = deploy_body(args.target, args.name, cron=args.cron, interval=args.interval,
                           timezone=args.timezone, parameters=parameters_of(args), timeout_seconds=args.timeout,
                           work_pool=args.work_pool, paused=True if args.paused else None)
    except DeploymentSpecError as exc:  # the command line names no notebook or flow
        raise UsageError(str(exc), args.parser.prog) from None
    client = connect()
    deployment, created = apply_deployment(client, body)
    print(f"{'Created' if created else 'Updated'} deployment {deployment.get('name')!r}.")
    print(format_fields(deployment_fields(deployment, client)))
    if isinstance(client, LocalClient):
        print("\nNo nbflow server is running, so it was stored in the run store; its runs start once one "
              "does: `nbflow server start`.")
    return 0


def deployment_fields(deployment: dict[str, Any], client: Client) -> list[tuple[str, str]]:
    """A deployment as (label, text) lines: what it runs, when, where, and how to trigger it."""
    kind = deployment.get("kind")
    target = deployment.get("notebook") if kind == "notebook" else deployment.get("entrypoint")
    fields = [("name", fmt.text(deployment.get("name"))), ("id", fmt.text(deployment.get("id"))),
              (fmt.text(kind), fmt.text(target))]
    if deployment.get("parameters"):
        fields.append(("parameters", fmt.text(deployment["parameters"])))
    fields.append(("schedule", schedule_text(deployment)))
    if deployment.get("timeout_seconds") is not None:
        fields.append(("timeout", fmt.duration(deployment["timeout_seconds"])))
    fields.append(("work pool", fmt.text(deployment.get("work_pool"))))
    fields.append(("paused", "yes" if deployment.get("paused") else "no"))
    fields.append(("next run", fmt.local_time(deployment.get("next_run_time"))))
    webhook = deployment.get("webhook")
    if webhook:
        where = f"{client.url}{API_PATH}" if isinstance(client, ApiClient) else "<server url>nbflow/api/"
        fields.append(("webhook", f"POST {where}webhooks/{webhook.get('slug')}"))
        if webhook.get("secret"):
            fields.append(("webhook secret", webhook["secret"]))
    return fields


def schedule_text(deployment: dict[str, Any]) -> str:
    """The schedule in words ("every day at 02:00 (UTC)"), else as given, else "none"."""
    if deployment.get("schedule_description"):
        return str(deployment["schedule_description"])
    schedule = deployment.get("schedule")
    if not schedule:
        return "none (runs when triggered)"
    if "cron" in schedule:
        return f"cron {schedule['cron']} ({schedule.get('timezone') or 'UTC'})"
    return f"every {schedule.get('interval')} s"
