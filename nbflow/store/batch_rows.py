"""Run records as Arrow tables, and their idempotent insert into the store's tables.

The tables have no keys or indexes (see schema.KEYS): the statements here keep them unique.
Snapshot tables (runs, cache entries) are upserted by id; history and logs keep the first
row of one (run_id, seq). A stored final snapshot is never replaced by an older unfinished one
(a late spool file or a retried request may bring it).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from nbflow.errors import StoreBatchError
from nbflow.store import records, schema

#: tables upserted by key (the latest snapshot wins); the others are append-only.
_UPSERT = {"flow_runs", "task_runs", "cache_entries"}
#: snapshot tables of runs: an older unfinished snapshot never replaces a finished one.
_RUN_TABLES = {"flow_runs", "task_runs"}
_FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def batch_to_arrow(batch: records.Batch) -> dict[str, Any]:
    """The batch's non-empty tables as Arrow tables, deduplicated by key, validated.

    Raises StoreBatchError for a row that cannot be stored.
    """
    tables = {}
    for name, columns in records.TABLES.items():
        rows = getattr(batch, name)
        if not rows:
            continue
        try:
            widths = set(map(len, rows))
        except TypeError:
            widths = {None}
        if name == "task_runs" and len(columns) - len(records.TASK_RUN_COLUMNS_ADDED) in widths:
            rows = _padded(rows, len(columns))  # from a client (or spool file) of schema version 4
            widths = set(map(len, rows))
        if widths != {len(columns)}:
            bad = next(r for r in rows if not isinstance(r, (tuple, list)) or len(r) != len(columns))
            size = len(bad) if isinstance(bad, (tuple, list)) else "no"
            raise StoreBatchError(
                f"A {name} row has {size} values but records.{name} has {len(columns)} "
                f"columns {columns}: {bad!r}. Build rows in records column order."
            )
        key = schema.KEYS[name]
        if any(r[0] is None for r in rows) or (len(key) == 2 and any(r[1] is None for r in rows)):
            bad = next(r for r in rows if r[0] is None or (len(key) == 2 and r[1] is None))
            raise StoreBatchError(f"A {name} row has no {' or '.join(key)} (its key): {bad!r}.")
        # The tables have no keys (schema.KEYS), so duplicates are removed here: snapshots of
        # a run keep the last, append-only rows (history, logs) the first of one (run_id, seq).
        if name in _UPSERT:
            if len({r[0] for r in rows}) != len(rows):
                rows = list({r[0]: r for r in rows}.values())
        elif len({(r[0], r[1]) for r in rows}) != len(rows):
            first: dict[tuple, tuple] = {}
            for r in rows:
                first.setdefault((r[0], r[1]), r)
            rows = list(first.values())
        tables[name] = rows_to_table(name, columns, rows)
    return tables


def _padded(rows: list, width: int) -> list:
    """Rows of an older layout, with the columns added since then as None at the end."""
    return [tuple(r) + (None,) * (width - len(r)) if isinstance(r, (tuple, list)) and len(r) < width else r
            for r in rows]


def rows_to_table(name: str, columns: tuple[str, ...], rows: list[tuple]) -> Any:
    import pyarrow as pa

    arrays = [_column(name, column, list(map(itemgetter(i), rows)))
              for i, column in enumerate(columns)]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _column(table: str, column: str, values: list) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = schema.column_type(column)
    try:
        if kind == "VARCHAR":
            return pa.array(values, pa.string())
        if kind == "INTEGER":
            return pa.array(values, pa.int64())
        seconds = pa.array(values, pa.float64())
        if kind == "DOUBLE":
            return seconds
        micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
        return micros.cast(pa.timestamp("us"))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        expected = {"VARCHAR": str, "INTEGER": int}.get(kind, (int, float))
        bad = next((v for v in values if v is not None and not isinstance(v, expected)), None)
        what = {"VARCHAR": "text", "INTEGER": "integers",
                "DOUBLE": "numbers", "TIMESTAMP": "float epoch seconds"}[kind]
        raise StoreBatchError(
            f"Column {table}.{column} holds {what} or None, but a row has {bad!r} "
            f"({type(bad).__name__}): {exc}. Convert it where the row is built."
        ) from exc


def _kept_snapshots(stored: list[tuple], table: Any) -> set[str]:
    """Ids of stored run snapshots (rowid, id, state_type, updated) that stay: final ones that a
    batch row would replace with an unfinished snapshot that is not newer."""
    import pyarrow as pa
    import pyarrow.compute as pc

    finals = {r[1]: r[3] for r in stored if r[2] in _FINAL_TYPES}
    if not finals:
        return set()
    unfinished = table.filter(pc.invert(pc.is_in(table["state_type"], pa.array(sorted(_FINAL_TYPES)))))
    kept = set()
    for run_id, updated in zip(unfinished["id"].to_pylist(), unfinished["updated"].to_pylist()):
        stored_updated = finals.get(run_id)
        if updated is not None and stored_updated is not None and updated <= stored_updated:
            kept.add(run_id)
    return kept


def insert(con: Any, name: str, table: Any) -> None:
    """Add a deduplicated batch table idempotently, without relying on a key or index.

    Snapshot tables: delete the stored rows with the batch's keys, then insert (an upsert). A
    run's stored final snapshot stays when the batch brings an unfinished one that is not newer:
    batches can arrive late or out of order (a spool file sent later, a request that a stopped
    server answers after the client gave up and spooled it).
    Append-only tables: insert the rows whose (run_id, seq) is not stored yet; only the stored
    rows of the batch's run_ids are compared (a semi-join, then an anti-join).
    """
    view = f"nbflow_batch_{name}"
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    key = schema.KEYS[name]
    con.register(view, table)
    try:
        if name in _RUN_TABLES:
            # One scan finds the stored snapshots; which of them stay is decided here, and the
            # others are deleted by rowid (two joins on the table cost twice the CPU).
            stored = con.execute(
                f"SELECT rowid, id, state_type, updated FROM {name} WHERE id IN (SELECT id FROM {view})"
            ).fetchall()
            if stored:
                kept = _kept_snapshots(stored, table)
                replaced = [r[0] for r in stored if r[1] not in kept]
                if replaced:
                    con.execute(f"DELETE FROM {name} WHERE rowid IN (SELECT unnest(?))", [replaced])
                if kept:
                    import pyarrow as pa
                    import pyarrow.compute as pc

                    con.unregister(view)
                    con.register(view, table.filter(pc.invert(pc.is_in(table["id"], pa.array(sorted(kept))))))
            con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {view}")
        elif name in _UPSERT:
            (k,) = key
            con.execute(f'DELETE FROM {name} WHERE "{k}" IN (SELECT "{k}" FROM {view})')
            con.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {view}")
        else:
            run_id, seq = key
            # The batch holds seq as BIGINT; cast it, not the stored INTEGER column, so the
            # join compares the stored column as it is.
            b_cols = ", ".join(f'b."{c}"' for c in table.column_names)
            con.execute(
                f"INSERT INTO {name} ({cols}) SELECT {b_cols} FROM {view} b ANTI JOIN "
                f"(SELECT {run_id}, {seq} FROM {name} "
                f" WHERE {run_id} IN (SELECT {run_id} FROM {view})) s "
                f"ON s.{run_id} = b.{run_id} AND s.{seq} = CAST(b.{seq} AS INTEGER)"
            )
    finally:
        con.unregister(view)
