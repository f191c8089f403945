"""Read run records as pandas DataFrames: runs, task runs, logs, flows, state history.

Every function takes the store first and binds user values as SQL parameters. Lists are
newest first; JSON columns (parameters, tags, upstream) come back parsed.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable

from nbflow.errors import UnknownRunError
from nbflow.store import records
from nbflow.store.schema import JSON_COLUMNS

if TYPE_CHECKING:
    import pandas

    from nbflow.store.embedded import EmbeddedStore

#: shortest id prefix flow_run() resolves; shorter ones must match a whole id.
MIN_PREFIX = 4

_RUN_FIRST = ("id", "flow_name", "state", "start_time", "end_time", "duration_s", "parameters")
_TASK_FIRST = ("id", "flow_run_id", "task_name", "state", "start_time", "end_time", "duration_s",
               "error")
_LOG_FIRST = ("timestamp", "level_name", "logger", "task_run_id", "message")


def _columns(first: tuple[str, ...], all_columns: tuple[str, ...]) -> str:
    ordered = list(first) + [c for c in all_columns if c not in first]
    return ", ".join(f'"{c}"' for c in ordered)


def _parse_json(df: "pandas.DataFrame") -> "pandas.DataFrame":
    for column in JSON_COLUMNS.intersection(df.columns):
        df[column] = df[column].astype(object).map(_loads)
    return df


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else None


def _limit(sql: str, params: list, limit: int | None, offset: int = 0) -> str:
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    if offset:
        sql += " OFFSET ?"
        params.append(int(offset))
    return sql


def runs(store: "EmbeddedStore", flow_name: str | None = None,
         state: str | Iterable[str] | None = None, limit: int | None = 100,
         offset: int = 0) -> "pandas.DataFrame":
    """Flow runs, newest first, optionally of one flow and in some states (names, any case)."""
    where, params = [], []
    if flow_name is not None:
        where.append("flow_name = ?")
        params.append(flow_name)
    if state is not None:
        states = [state] if isinstance(state, str) else list(state)
        where.append("list_contains(?, lower(state))")
        params.append([str(s).lower() for s in states])
    sql = f"SELECT {_columns(_RUN_FIRST, records.FLOW_RUN_COLUMNS)} FROM flow_runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY coalesce(start_time, created) DESC NULLS LAST, id"
    return _parse_json(store.query(_limit(sql, params, limit, offset), params))


def task_runs(store: "EmbeddedStore", flow_run_id: str | None = None,
              limit: int | None = None) -> "pandas.DataFrame":
    """Task runs, newest first, optionally of one flow run."""
    params: list = []
    sql = f"SELECT {_columns(_TASK_FIRST, records.TASK_RUN_COLUMNS)} FROM task_runs"
    if flow_run_id is not None:
        sql += " WHERE flow_run_id = ?"
        params.append(flow_run_id)
    sql += " ORDER BY coalesce(start_time, created) DESC NULLS LAST, id"
    return _parse_json(store.query(_limit(sql, params, limit), params))


def logs(store: "EmbeddedStore", run_id: str) -> "pandas.DataFrame":
    """The logs of a flow run and all its task runs, or of one task run, oldest first."""
    sql = (f"SELECT {_columns(_LOG_FIRST, records.LOG_COLUMNS)} FROM logs "
           "WHERE flow_run_id = ? OR run_id = ? OR task_run_id = ? ORDER BY timestamp, seq")
    return store.query(sql, [run_id, run_id, run_id])


def flows(store: "EmbeddedStore") -> "pandas.DataFrame":
    """One row per flow: its name, how many runs, when the last one started and how it ended."""
    sql = (
        "SELECT flow_name, count(*) AS runs, max(start_time) AS last_run_start, "
        "arg_max(state, coalesce(start_time, created)) AS last_state FROM flow_runs "
        "GROUP BY flow_name ORDER BY max(coalesce(start_time, created)) DESC NULLS LAST, flow_name"
    )
    return store.query(sql)


def state_history(store: "EmbeddedStore", run_id: str) -> "pandas.DataFrame":
    """Every state a flow run or task run went through, in order."""
    sql = (f"SELECT {_columns((), records.STATE_COLUMNS)} FROM state_history "
           "WHERE run_id = ? ORDER BY seq")
    return store.query(sql, [run_id])


def flow_run(store: "EmbeddedStore", run_id: str) -> dict[str, Any]:
    """One flow run as a dict, by its id or a unique prefix of at least 4 characters."""
    sql = f"SELECT {_columns(_RUN_FIRST, records.FLOW_RUN_COLUMNS)} FROM flow_runs WHERE id = ?"
    params: list = [run_id]
    if len(run_id) >= MIN_PREFIX:
        sql += " OR starts_with(id, ?)"
        params.append(run_id)
    sql += " ORDER BY id = ? DESC, coalesce(start_time, created) DESC NULLS LAST LIMIT 11"
    params.append(run_id)
    df = _parse_json(store.query(sql, params))
    if df.empty:
        raise UnknownRunError(f"No flow run with id '{run_id}'. List runs with `nbflow flow-run ls`.")
    if df["id"].iloc[0] != run_id and len(df) > 1:
        shown = ", ".join(f"{r.id} ({r.flow_name}, {r.state})" for r in df.head(10).itertuples())
        more = " and more" if len(df) > 10 else ""
        raise UnknownRunError(
            f"Flow run id prefix '{run_id}' matches {len(df) if len(df) <= 10 else 'over 10'} runs: "
            f"{shown}{more}. Give more characters of the id."
        )
    return {k: _plain(v) for k, v in df.iloc[0].to_dict().items()}


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value: None for missing, datetime for timestamps."""
    if value is None or isinstance(value, (dict, list, str, bool)):
        return value
    if hasattr(value, "to_pydatetime"):
        return None if value != value else value.to_pydatetime()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    try:
        import pandas

        if pandas.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value
