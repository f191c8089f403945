"""`%%task` and `%nbflow`: the IPython magics of `%load_ext nbflow`."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbflow import api
from nbflow.engine.caching import cache_index
from nbflow.errors import NbflowError
from nbflow.notebook.cell_analysis import CellSyntaxError
from nbflow.notebook.cell_runner import CellOptions, cell_output, run_cell
from nbflow.notebook.rerun import rerun_stale_cells
from nbflow.notebook.run_list import newest_run_id, run_table
from nbflow.notebook.session import notebook_flow_name

_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TASK_USAGE = ("usage: %%task [NAME] [--retries N] [--retry-delay S] [--timeout S] [--cache [EXPIRY]] "
              "[--inputs a,b] [--outputs c] [--no-keep]")
NBFLOW_USAGE = """usage: %nbflow runs [--all] [--flow-name NAME] [--state STATE] [--limit N]
       %nbflow graph [RUN_ID]
       %nbflow cache clear
       %nbflow sql QUERY
       %nbflow run
       %nbflow debug RUN_ID [TASK_NAME] [--pdb]"""


def parse_duration(text: str) -> dt.timedelta | None:
    """'90', '90s', '15m', '2h', '7d', '1w' -> timedelta; None if it is not a duration."""
    match = _DURATION.match(text.strip())
    if not match:
        return None
    return dt.timedelta(seconds=float(match["amount"]) * _UNITS[match["unit"]])


def _names(option: str, value: str | None, usage: str) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset(n.strip() for n in value.split(",") if n.strip())
    bad = sorted(n for n in names if not _IDENTIFIER.match(n))
    if bad:
        raise UsageError(f"{option} takes comma-separated variable names; {', '.join(bad)} is not one.\n{usage}")
    return names


@magics_class
class NbflowMagics(Magics):
    """The magics nbflow adds to IPython."""

    @magic_arguments()
    @argument("name", nargs="?", default=None, help="the task's name (default: from what the cell defines)")
    @argument("--retries", type=int, default=0, help="retry the cell this many times when it raises")
    @argument("--retry-delay", type=float, default=0.0, metavar="S", help="seconds between retries")
    @argument("--timeout", type=float, default=None, metavar="S", help="stop the cell after S seconds")
    @argument("--cache", nargs="?", const="", default=None, metavar="EXPIRY",
              help="cache the cell's outputs, optionally for EXPIRY (e.g. 90s, 15m, 2h, 7d)")
    @argument("--inputs", default=None, help="comma-separated input variables (instead of the detected ones)")
    @argument("--outputs", default=None, help="comma-separated output variables (instead of the detected ones)")
    @argument("--no-keep", action="store_true",
              help="if the cell fails, keep none of its variables for %%nbflow debug (sensitive data)")
    @cell_magic
    def task(self, line: str, cell: str) -> Any:
        """Run the cell as a tracked nbflow task run, with retries, a timeout and caching."""
        usage = TASK_USAGE
        try:
            args = parse_argstring(self.task, line)
        except UsageError as exc:
            raise UsageError(f"{str(exc).strip()}\n{usage}") from None
        options = self._cell_options(args, usage)
        options.line = line.strip()
        try:
            return cell_output(run_cell(self.shell, cell, options))
        except CellSyntaxError as exc:
            raise SyntaxError(str(exc)) from None

    def _cell_options(self, args: Any, usage: str) -> CellOptions:
        name, cache, expiration = args.name, args.cache is not None, None
        if args.cache:
            expiration = parse_duration(args.cache)
            if expiration is None:
                if name is not None:
                    raise UsageError(f"--cache takes a duration such as 90s, 15m, 2h or 7d; got {args.cache!r}.\n{usage}")
                name = args.cache  # `%%task --cache load`: the word was the task's name
        if args.retries < 0:
            raise UsageError(f"--retries must be 0 or more; got {args.retries}.\n{usage}")
        if args.retry_delay < 0:
            raise UsageError(f"--retry-delay must be 0 or more seconds; got {args.retry_delay:g}.\n{usage}")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError(f"--timeout must be more than 0 seconds; got {args.timeout:g}.\n{usage}")
        return CellOptions(name=name, retries=args.retries, retry_delay=args.retry_delay,
                           timeout=args.timeout, cache=cache, cache_expiration=expiration,
                           inputs=_names("--inputs", args.inputs, usage),
                           outputs=_names("--outputs", args.outputs, usage),
                           keep_failed_inputs=not args.no_keep)

    @line_magic
    def nbflow(self, line: str) -> Any:
        """%nbflow runs | graph [RUN_ID] | cache clear | sql QUERY | run | debug RUN_ID [TASK_NAME] [--pdb]"""
        words = line.strip().split(None, 1)
        if not words:
            raise UsageError(f"%nbflow needs a command.\n{NBFLOW_USAGE}")
        command, rest = words[0], (words[1] if len(words) > 1 else "")
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(f"Unknown %nbflow command {command!r}.\n{NBFLOW_USAGE}")
        try:
            return handler(rest)
        except NbflowError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_runs(self, rest: str) -> Any:
        parser = argparse.ArgumentParser(prog="%nbflow runs", add_help=False, exit_on_error=False)
        parser.add_argument("--all", action="store_true")
        parser.add_argument("--flow-name")
        parser.add_argument("--state")
        parser.add_argument("--limit", type=int, default=20)
        try:
            args = parser.parse_args(shlex.split(rest))
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"{exc}\n{NBFLOW_USAGE}") from None
        if args.limit <= 0:
            raise UsageError(f"--limit must be 1 or more; got {args.limit}.\n{NBFLOW_USAGE}")
        mine = not (args.all or args.flow_name)
        table = run_table(flow_name=args.flow_name, state=args.state, limit=args.limit,
                          notebook=notebook_flow_name() if mine else None)
        if table.empty:
            where = "of this notebook" if mine else "in the store"
            print(f"No flow runs {where} yet{' in that state' if args.state else ''}"
                  f"{' (%nbflow runs --all lists every run in the store)' if mine else ''}.")
            return None
        return table

    def _cmd_graph(self, rest: str) -> Any:
        from nbflow.notebook.widgets import view  # plotly: loaded when a graph is shown

        run_id = rest.strip() or None
        if run_id is not None and len(run_id.split()) > 1:
            raise UsageError(f"%nbflow graph takes one run id.\n{NBFLOW_USAGE}")
        return view(run_id or newest_run_id(notebook_flow_name()))

    def _cmd_cache(self, rest: str) -> Any:
        if rest.strip() != "clear":
            raise UsageError(f"%nbflow cache takes 'clear'.\n{NBFLOW_USAGE}")
        removed = cache_index().clear()
        print(f"Removed {removed} cache entr{'y' if removed == 1 else 'ies'}.")

    def _cmd_sql(self, rest: str) -> Any:
        if not rest.strip():
            raise UsageError(f"%nbflow sql needs a query, e.g. %nbflow sql select * from flow_runs\n{NBFLOW_USAGE}")
        try:
            return api.sql(rest)
        except NbflowError:
            raise
        except Exception as exc:  # a SQL error is the user's input: say what DuckDB said
            raise UsageError(f"The query failed: {exc}") from None

    def _cmd_run(self, rest: str) -> Any:
        if rest.strip():
            raise UsageError(f"%nbflow run takes no arguments.\n{NBFLOW_USAGE}")
        return rerun_stale_cells(self.shell)


    def _cmd_debug(self, rest: str) -> Any:
        from nbflow.notebook.debug_magic import debug_in_kernel

        parser = argparse.ArgumentParser(prog="%nbflow debug", add_help=False, exit_on_error=False)
        parser.add_argument("run_id")
        parser.add_argument("task_name", nargs="?")
        parser.add_argument("--pdb", action="store_true")
        try:
            args = parser.parse_args(shlex.split(rest))
        except (argparse.ArgumentError, SystemExit, ValueError) as exc:
            raise UsageError(f"%nbflow debug takes a flow run's or task run's id (or a prefix), optionally a "
                             f"task name, and --pdb. {exc}\n{NBFLOW_USAGE}") from None
        debug_in_kernel(self.shell, args.run_id, args.task_name, pdb=args.pdb)


def load_ipython_extension(shell: Any) -> None:
    """`%load_ext nbflow`: register the magics."""
    shell.register_magics(NbflowMagics)
