"""`nbflow server ...`: the server and the run store it owns (`server start` comes here too)."""

from __future__ import annotations

import argparse
import sys

from nbflow import settings
from nbflow.cli.base import Commands, CommandError, add_command, add_group
from nbflow.store.backend import current_store


def register(commands: Commands) -> None:
    server = add_group(commands, "server", help="The nbflow server and its run store.")
    start = add_command(server, "start", start_server,
                        help="Start the nbflow server (REST run API) that owns the run store.",
                        description="Start the nbflow server standalone. It owns the run store while it "
                                    "runs; other processes send their run events to it. The token comes "
                                    "from NBFLOW_API_TOKEN, else a new one is made and printed.")
    start.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    start.add_argument("--port", type=port_number, default=4200, help="port to listen on (default 4200)")
    start.add_argument("--no-worker", action="store_true",
                       help="do not run deployment runs in the server (leave them to `nbflow worker start`)")
    database = add_group(server, "database", help="The run store: a DuckDB file under NBFLOW_HOME.")
    reset = add_command(database, "reset", reset_database,
                        help="Delete the run store: every flow run, task run and log line.")
    reset.add_argument("--yes", "-y", action="store_true", help="delete without asking for confirmation")


def port_number(raw: str) -> int:
    """An argparse type: a TCP port (0 picks a free one)."""
    try:
        port = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number; give 0-65535, e.g. 4200") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number; give 0-65535, e.g. 4200")
    return port


def start_server(args: argparse.Namespace) -> int:
    import os
    import secrets
    import socket

    from nbflow.server.standalone import run_standalone

    if args.port:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
            try:
                probe.bind((args.host, args.port))
            except OSError as exc:
                raise CommandError(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}. Stop what "
                                   "uses that port or pass --port.") from None
    token = os.environ.get("NBFLOW_API_TOKEN") or secrets.token_hex(24)
    return run_standalone(args.host, args.port, token, worker=not args.no_worker)


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
