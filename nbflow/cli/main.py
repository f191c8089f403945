"""`nbflow`: build the parser from the command modules, run the command, map errors to exit codes.

Exit codes: 0 success (bare `nbflow`, or a noun without a verb such as `nbflow flow`,
prints its help and succeeds); 1 the command failed (unknown run, locked or damaged
store, declined confirmation); 2 usage error (bad option or argument); 130 interrupted
(Ctrl-C); 141 stdout closed early (`nbflow flow-run ls | head`). Every failure is one
line on stderr, `nbflow: error: ...`, never a traceback.
"""

from __future__ import annotations

import os
import sys

from nbflow._version import __version__
from nbflow.cli import deploy, deployments, flow_runs, flows, notebook_run, server, version, workers
from nbflow.cli.base import CliParser, CommandError, print_help
from nbflow.errors import NbflowError

#: the modules that add commands, in the order `nbflow --help` lists them.
COMMAND_MODULES = (version, flows, flow_runs, notebook_run, deploy, deployments, workers, server)

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def build_parser() -> CliParser:
    """The `nbflow` parser with every command module's nouns and verbs."""
    parser = CliParser(
        prog="nbflow",
        description="Workflow orchestration for Jupyter: inspect flow runs, their logs and the run store.",
        epilog="Run `nbflow COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"nbflow {__version__}")
    parser.set_defaults(handler=print_help(parser), parser=parser)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return its exit code."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except CommandError as exc:  # includes usage errors
        return _fail(str(exc), exc.exit_code)
    except NbflowError as exc:  # store locked or damaged, unknown run, ...: the message says what to do
        return _fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # e.g. NBFLOW_HOME not writable
        return _fail(str(exc), EXIT_FAILURE)
    except Exception as exc:
        if not _from_duckdb(exc):
            raise  # a bug in nbflow: its traceback is what a report needs
        return _fail(f"The run store failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)
    except SystemExit as exc:  # --help and --version exit through argparse
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        return _fail(str(exc.code), EXIT_FAILURE)


def _from_duckdb(exc: BaseException) -> bool:
    """Whether `exc` is a DuckDB error that reached the command unexplained (without importing duckdb)."""
    return any(cls.__module__.split(".")[0] in ("duckdb", "_duckdb") for cls in type(exc).__mro__)


def _fail(message: str, exit_code: int) -> int:
    """Print `message` as one line on stderr and return `exit_code`."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    print(f"nbflow: error: {' '.join(message.split())}", file=sys.stderr)
    return exit_code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so flushing it at exit does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
