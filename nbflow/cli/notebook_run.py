"""`nbflow run NOTEBOOK.ipynb [-p KEY VALUE ...]`: run a notebook as one flow run with papermill."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbflow.cli.base import CommandError, Commands, add_command
from nbflow.cli.tables import format_fields


def register(commands: Commands) -> None:
    parser = add_command(
        commands, "run", run_notebook_command,
        help="Run a notebook as one flow run (papermill), writing a new output notebook.",
        description="Run every cell of NOTEBOOK in a fresh kernel as one flow run. Parameters go "
                    "into the notebook's 'parameters' cell; the source notebook is never modified.")
    parser.add_argument("notebook", metavar="NOTEBOOK.ipynb", help="the notebook to run")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="set a parameter (repeatable); text is converted to the default's type")
    parser.add_argument("-k", "--kernel", metavar="NAME", dest="kernel_name",
                        help="the kernel to run it with (default: the one the notebook names, as papermill)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="where to write the executed notebook (default: under $NBFLOW_HOME/runs/)")


def run_notebook_command(args: argparse.Namespace) -> int:
    from nbflow.deployments.notebook_runs import kernel_problem, run_notebook

    notebook = Path(args.notebook)
    if notebook.suffix != ".ipynb":
        raise CommandError(f"{notebook} is not a notebook; give a .ipynb file.")
    parameters = {}
    for key, value in args.param:
        if key in parameters:
            raise CommandError(f"Parameter '{key}' is given twice; give each -p KEY VALUE once.")
        parameters[key] = value
    problem = kernel_problem(notebook, args.kernel_name) if notebook.is_file() else None
    if problem:
        raise CommandError(problem)
    result = run_notebook(notebook, parameters, output=args.output, kernel_name=args.kernel_name)
    print(format_fields([
        ("Flow run", result.flow_run_id),
        ("State", result.state.name),
        ("Output notebook", str(result.output_notebook)),
    ]))
    if not result.state.is_completed():
        raise CommandError(f"The notebook run ended {result.state.name}: {result.state.message}")
    return 0
