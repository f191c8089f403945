"""`nbflow version`: what is installed and where runs are stored, for bug reports."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

from nbflow import settings
from nbflow._version import __version__
from nbflow.cli.base import Commands, add_command
from nbflow.cli.tables import format_fields


def register(commands: Commands) -> None:
    add_command(commands, "version", show_version,
                help="Show the versions of nbflow, Python and DuckDB, and where runs are stored.")


def _installed(distribution: str) -> str:
    # The distribution's metadata, not `import duckdb`: keeps this command fast.
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def show_version(args: argparse.Namespace) -> int:
    print(format_fields([
        ("Version", __version__),
        ("Python version", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("DuckDB version", _installed("duckdb")),
        ("Store", str(settings.db_path())),
    ]))
    return 0
