"""What every command module builds on: the parser, argument types, and command errors.

A command module (one per noun: `flow_runs.py` for `nbflow flow-run ...`) exposes
`register(commands)`, adds its parsers with `add_command`/`add_group`, and gives each
verb a handler `(args) -> int` that prints its output and returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, NoReturn

from nbflow.engine.states import STATE_TYPES

#: exit code of a usage error (a bad option or argument), as argparse uses.
USAGE_EXIT = 2

Handler = Callable[[argparse.Namespace], int]
Commands = Any  # argparse's _SubParsersAction, which is private


class CommandError(Exception):
    """A command could not do what was asked; the message says why and what to do instead."""

    exit_code = 1


class UsageError(CommandError):
    """The command line itself is wrong; the message names the problem and the help to read."""

    exit_code = USAGE_EXIT

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(f"{message} (see `{prog} --help`)")
        self.prog = prog


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the command's --help, not usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        # argparse reports unknown options on the top-level parser; report them on the
        # command they were given to, so the hint points at that command's --help.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = getattr(parsed, "parser", self)
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def add_command(commands: Commands, name: str, handler: Handler, help: str,
                description: str | None = None) -> CliParser:
    """A verb: a parser whose handler runs when the command line names it."""
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.set_defaults(handler=handler, parser=parser)
    return parser


def add_group(commands: Commands, name: str, help: str, description: str | None = None) -> Commands:
    """A noun (`flow-run`) whose verbs are added to the returned subcommands.

    Given without a verb, the noun prints its help and exits 0, like bare `nbflow`.
    """
    parser = commands.add_parser(name, help=help, description=description or help)
    parser.set_defaults(handler=print_help(parser), parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def print_help(parser: argparse.ArgumentParser) -> Handler:
    """A handler that prints `parser`'s help to stdout and succeeds."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stdout)
        return 0

    return handler


# -- argument types ----------------------------------------------------------------------

def positive_int(raw: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number; give a positive integer, e.g. 20") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive; give a positive integer, e.g. 20")
    return value


#: lower-cased state name -> the name as stored (`timedout` -> `TimedOut`).
STATE_NAMES = {name.lower(): name for name in STATE_TYPES}


def state_name(raw: str) -> str:
    """An argparse type: a run state name, any case, returned as stored (`failed` -> `Failed`)."""
    try:
        return STATE_NAMES[raw.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a state; use one of {', '.join(STATE_TYPES)}") from None


#: log level names, lowest first.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(raw: str) -> int:
    """An argparse type: a log level name (any case) or number, returned as a number."""
    name = raw.strip().upper()
    if name.isdigit():
        return int(name)
    if name == "WARN":
        name = "WARNING"
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
    return logging.getLevelName(name)
