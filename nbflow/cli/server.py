"""`nbflow server ...`: the server and the run store it owns (`server start` comes here too)."""

from __future__ import annotations

import argparse
import sys

from nbflow import settings
from nbflow.cli.base import Commands, CommandError, add_command, add_group
from nbflow.store.backend import current_store


def register(commands: Commands) -> None:
    server = add_group(commands, "server", help="The nbflow server and its run store.")
    database = add_group(server, "database", help="The run store: a DuckDB file under NBFLOW_HOME.")
    reset = add_command(database, "reset", reset_database,
                        help="Delete the run store: every flow run, task run and log line.")
    reset.add_argument("--yes", "-y", action="store_true", help="delete without asking for confirmation")


def reset_database(args: argparse.Namespace) -> int:
    path = settings.db_path()
    if not path.exists():
        print(f"There is no run store at {path}; nothing to delete.")
        return 0
    if not args.yes and not confirm(f"Delete all runs in {path}? [y/N] ", path=str(path)):
        print("Aborted; nothing was deleted.")
        return 1
    current_store().reset()
    print(f"Deleted the run store {path}. The next flow run starts a new, empty one.")
    return 0


def confirm(question: str, *, path: str) -> bool:
    """Ask `question` on the terminal; True only for yes. Refuses when nobody can answer."""
    stdin = sys.stdin
    if stdin is None or stdin.closed or not stdin.isatty():
        raise CommandError(f"Not deleting {path}: stdin is not a terminal, so nobody can confirm. "
                           f"Pass --yes to delete it without asking.")
    print(question, end="", flush=True)
    answer = stdin.readline()
    if not answer:  # end of input (Ctrl-D)
        print()
        raise CommandError(f"No answer, so {path} was not deleted. Pass --yes to delete it without asking.")
    return answer.strip().lower() in ("y", "yes")
