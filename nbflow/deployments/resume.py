"""A retry from the failed task: which task run it resumes at, and the notebook that does it.

The retried run's `triggered_by` says "Retry of flow run X from its failed task run Y". A notebook
run then executes a copy of the notebook that starts with a cell restoring what Y's cell saw (the
kernel's variables at the failure, kept by nbflow) and continues at Y's cell: the cells before it
are not run again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_FROM_FAILED = re.compile(r"from its failed task run ([0-9a-f]{32})")


def resume_task_run(triggered_by: str | None) -> str | None:
    """The failed task run a retry resumes at, from the new run's `triggered_by`."""
    match = _FROM_FAILED.search(triggered_by or "")
    return match.group(1) if match else None


class ResumeError(Exception):
    """The failed cell cannot be found in the notebook (it was edited since)."""


def resumed_notebook(source: Path, manifest: dict[str, Any]) -> Any:
    """The notebook from the failed cell on, after a cell that restores what the failed cell saw."""
    import nbformat

    nb = nbformat.read(str(source), as_version=4)
    index = failed_cell_index(nb.cells, manifest)
    if index is None:
        raise ResumeError(f"The failed cell {manifest['task_name']!r} is no longer in {source} (no cell has its "
                          f"source or its line {manifest.get('header')!r}); retry the run from the start.")
    restore = nbformat.v4.new_code_cell(
        "%load_ext nbflow\n"
        f"from nbflow.debugging.failed_runs import restore_namespace as _nbflow_restore\n"
        f"_nbflow_restore(globals(), {manifest['task_run_id']!r})",
        metadata={"tags": ["nbflow-restore"]})
    nb.cells = [restore, *nb.cells[index:]]
    return nb


def failed_cell_index(cells: list[Any], manifest: dict[str, Any]) -> int | None:
    """The failed cell in the notebook as it is now: the cell with the same source, else (it was fixed
    since) the one with the same `%%task NAME ...` line."""
    code = [(i, cell.source.strip()) for i, cell in enumerate(cells) if cell.cell_type == "code"]
    header = (manifest.get("header") or "").strip()
    failed = f"{header}\n{manifest.get('source') or ''}".strip()
    for i, text in code:
        if text == failed:
            return i
    if header and len(header.split()) > 1:  # a named cell: `%%task check`, not a bare `%%task`
        same_line = [i for i, text in code if text.split("\n", 1)[0].strip() == header]
        if len(same_line) == 1:
            return same_line[0]
    return None
