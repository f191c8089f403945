"""`%nbflow run`: re-run the task cells whose code or inputs changed, and those downstream.

The kernel remembers every %%task cell it ran (its source, options, inputs and outputs,
and the cache key of its last run). A cell is stale when its last run did not complete,
when its key now differs (its code, a user function it calls or an input value
changed), or when it reads a variable that a stale cell writes. Stale cells run again
in dependency order, in the notebook's open flow run (see session.py).
"""

from __future__ import annotations

from typing import Any

from nbflow.notebook.cell_runner import CellRecord, prepare_cell, run_cell
from nbflow.notebook.session import current_session


def dependency_order(records: list[CellRecord]) -> list[CellRecord]:
    """Cells ordered so each comes after the cells whose outputs it reads (stable otherwise)."""
    position = {id(r): i for i, r in enumerate(records)}
    producers: dict[str, CellRecord] = {}
    for record in records:
        for name in record.outputs:
            producers.setdefault(name, record)
    ordered: list[CellRecord] = []
    visiting: set[int] = set()
    done: set[int] = set()

    def visit(record: CellRecord) -> None:
        if id(record) in done or id(record) in visiting:
            return  # a cycle (two cells feeding each other) keeps notebook order
        visiting.add(id(record))
        upstream = {producers[n] for n in record.inputs if n in producers and producers[n] is not record}
        for dep in sorted(upstream, key=lambda r: position[id(r)]):
            visit(dep)
        visiting.discard(id(record))
        done.add(id(record))
        ordered.append(record)

    for record in records:
        visit(record)
    return ordered


def stale_cells(shell: Any, records: list[CellRecord]) -> list[CellRecord]:
    """The cells to run again, in dependency order."""
    dirty: set[str] = set()
    stale = []
    for record in dependency_order(records):
        changed = (record.last_state not in ("Completed", "Cached") or record.last_key is None
                   or bool(record.inputs & dirty))
        if not changed:
            changed = prepare_cell(shell, record.source, record.options).policy.key_or_none() != record.last_key
        if changed:
            stale.append(record)
            dirty |= record.outputs
    return stale


def rerun_stale_cells(shell: Any) -> str | None:
    """Run the stale task cells in the notebook's open flow run; return its id (None when all
    are up to date). A cell that fails stops the re-run and raises, as in a plain cell."""
    session = current_session()
    stale = stale_cells(shell, list(session.cells.values()))
    if not stale:
        print("All task cells are up to date.")
        return None
    print(f"Re-running {len(stale)} stale cell(s): {', '.join(r.name for r in stale)}")
    context = session.begin_cell()
    for record in stale:
        run_cell(shell, record.source, record.options, context)
    return context.flow_run.id
