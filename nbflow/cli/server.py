"""`nbflow server ...`: the server and the run store it owns (`server start` comes here too)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nbflow import settings
from nbflow.cli.base import Commands, CommandError, add_command, add_group
from nbflow.cli.tables import format_table
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
    add_command(database, "check", check_database,
                help="Read every row of the run store and say what is damaged; changes nothing.",
                description="Read every row of every table of the run store (read-only) and print the "
                            "tables with their row counts, or what cannot be read. Exit code 0: healthy; "
                            "1: damaged (or held by another process).")
    repair = add_command(database, "repair", repair_database,
                         help="Copy every readable row of a damaged run store into a new file, keeping the old one.",
                         description="Copy every table and row that can be read into a new file, keep the old "
                                     "file (and its WAL) beside it as nbflow.duckdb.damaged-<UTC time>, and put "
                                     "the new file in its place. When only the WAL is damaged, the store file "
                                     "stays in place and only the WAL is set aside. Refuses while a server holds "
                                     "the store; leaves a healthy store untouched unless --force.")
    repair.add_argument("--force", action="store_true",
                        help="copy the store into a new file even when it reads back whole")


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
    # A store that cannot be opened (damaged, newer) would only fail the server's extension as it
    # loads, leaving a Jupyter server without the run API: say so here, in one line, and stop.
    from nbflow.errors import StoreLockedError
    from nbflow.store.embedded import EmbeddedStore

    try:
        EmbeddedStore(settings.db_path(), lock_timeout=0).query("SELECT 1")
    except StoreLockedError:
        pass  # held by another process: the server waits for it as before
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


# -- check and repair -----------------------------------------------------------------------

def check_database(args: argparse.Namespace) -> int:
    from nbflow.store import repair

    path = settings.db_path()
    report = repair.check(path)
    if not report.exists:
        print(f"There is no run store at {path}; nothing to check.")
        return 0
    if report.locked:
        raise CommandError(f"Cannot check the run store {path}: another process holds it "
                           f"({report.locked}). Stop that process (or the nbflow server), then check again.")
    if report.failure:
        raise CommandError(f"Checking the run store {path} failed: {report.failure}")
    print(_describe(report))
    if report.tables:
        print(_tables(report.tables, copied=False))
    if report.healthy and report.note is None:
        print("Healthy: every row of every table reads back.")
        return 0
    raise CommandError(_damage_summary(report))


def repair_database(args: argparse.Namespace) -> int:
    from nbflow.store import repair

    path = settings.db_path()
    done = repair.repair(path, force=args.force)
    found = done.check
    if not found.exists:
        print(f"There is no run store at {path}; nothing to repair.")
    elif done.action == "untouched":
        print(f"The run store {path} is healthy: every row of every table reads back. Left it untouched "
              f"(pass --force to copy it into a new file anyway).")
    elif done.action == "note cleared":
        print(f"Every row of the run store {path} reads back. Removed nbflow's note that it was damaged "
              f"({found.note.get('detail', '') if found.note else ''}), so nbflow opens it again; the file "
              f"is untouched.")
    elif done.action == "wal set aside":
        print(f"Kept the run store {path} in place: its {_rows(found.tables)} rows all read back. Set its "
              f"damaged write-ahead log aside as {done.wal_backup} ({found.wal_error}). Lost: what that "
              f"log held since the last checkpoint.")
    else:
        copy = done.copy
        assert copy is not None
        print(_tables(copy.tables, copied=True))
        for note in copy.notes:
            print(f"Note: {note}.")
        if copy.skipped_objects:
            print(f"Not copied (not tables): {', '.join(copy.skipped_objects)}; the old file still has them.")
        if copy.open_error:
            print(f"Nothing could be read from the old file: {copy.open_error.rstrip('.!')}.")
        if copy.wal_error:
            print(f"Its write-ahead log could not be replayed ({copy.wal_error}): what it held since the "
                  f"last checkpoint is lost.")
        kept = f"{done.backup}" + (f" (and its log as {done.wal_backup})" if done.wal_backup else "")
        total = sum(t.rows or 0 for t in copy.tables)
        got = sum(t.read + t.partial for t in copy.tables)
        print(f"Repaired the run store {path}: copied {got} of {total} rows into a new file, which is now "
              f"the store. The old file is kept as {kept}.")
    return 0


def _describe(report: Any) -> str:
    parts = [_size(report.size)]
    if report.schema_version is not None:
        parts.append(f"schema version {report.schema_version}")
    if report.wal_size is not None:
        parts.append(f"write-ahead log {_size(report.wal_size)}")
    return f"Run store {report.path} ({', '.join(parts)})"


def _tables(tables: list[Any], copied: bool) -> str:
    verb = "COPIED" if copied else "READABLE"
    rows = []
    for t in tables:
        problem = ""
        if t.partial:
            problem = f"{t.partial} rows without {', '.join(t.lost_columns)}; "
        if t.error or t.crashed:
            lost = t.lost
            if lost:
                problem += f"{lost} rows {'not copied' if copied else 'cannot be read'}: "
            problem += t.error or ""
        rows.append((t.name, "?" if t.rows is None else str(t.rows), str(t.read + t.partial), problem.strip("; ")))
    return format_table(["TABLE", "ROWS", verb, "PROBLEM"], rows, right=[1, 2], max_widths={3: 100})


def _damage_summary(report: Any) -> str:
    from nbflow.store import damage

    path = report.path
    backup = f"{path.name}{damage.BACKUP_INFIX}<UTC time>"
    if report.open_error:
        if report.size == 0:
            return (f"The run store {path} is empty (0 bytes): it holds no runs. `nbflow server database "
                    f"repair` sets it aside and starts a new store (or delete it: rm {path}).")
        return (f"The run store {path} cannot be opened, so none of its rows can be read: "
                f"{report.open_error.rstrip('.!')}. `nbflow server database repair` keeps it beside the store as "
                f"{backup} and starts a new, empty store.")
    unreadable = [t for t in report.tables if not t.intact]
    if report.wal_error and not unreadable:
        wal = damage.wal_path(path)
        return (f"The run store's write-ahead log {wal} is damaged ({report.wal_error}); the store file "
                f"{path} itself is intact ({_rows(report.tables)} rows read back without the log): keep it. "
                f"`nbflow server database repair` sets only the log aside (as {backup}.wal) and leaves the "
                f"store file in place, or do it yourself: mv {wal} {wal}.damaged. What the log held since "
                f"the last checkpoint is lost either way.")
    if unreadable:
        wal = f" Its write-ahead log cannot be replayed either ({report.wal_error})." if report.wal_error else ""
        return (f"The run store {path} is damaged: {_losses(unreadable)}.{wal} `nbflow server database "
                f"repair` copies every row that can be read into a new file and keeps this one beside it "
                f"as {backup}.")
    note = report.note or {}
    return (f"nbflow found the run store {path} damaged at {note.get('found', '?')} "
            f"({note.get('detail', '')}) and no longer opens it, but every row reads back now (the "
            f"damage may lie in space no table uses). `nbflow server database repair` removes that note "
            f"and leaves the file as it is.")


def _losses(tables: list[Any]) -> str:
    """What cannot be read, per table: "in task_runs, 435 of 435 rows cannot be read; in ..."."""
    parts = []
    for t in tables:
        lost = t.lost
        what = []
        if lost is None:
            what.append("its rows cannot be counted")
        elif lost:
            what.append(f"{lost} of {t.rows} rows cannot be read")
        if t.partial:
            what.append(f"{t.partial} rows only without {', '.join(t.lost_columns)}")
        parts.append(f"in {t.name}, {' and '.join(what) or t.error}")
    return "; ".join(parts)


def _rows(tables: list[Any]) -> int:
    return sum(t.rows or 0 for t in tables)


def _size(n: float) -> str:
    """A file size for people: 640.0 KiB."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"
