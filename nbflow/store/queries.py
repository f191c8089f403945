"""Read run records as pandas DataFrames: runs, task runs, logs, flows, state history.

Every function takes the store first and binds user values as SQL parameters. Lists are
newest first; JSON columns (parameters, tags, upstream) come back parsed.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable

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
         offset: int = 0, **filters: Any) -> "pandas.DataFrame":
    """Flow runs, newest first, optionally of one flow and in some states (names, any case);
    `filters`: deployment_id, since, until (see _run_filters)."""
    where, params = _run_filters(flow_name, state, **filters)
    columns = _columns(_RUN_FIRST, records.FLOW_RUN_COLUMNS)
    if limit is None or int(limit) <= 0:
        sql = _limit(_runs_sql(columns, where), params, limit, offset)
        return _parse_json(store.query(sql, params))

    def last_time(frame: "pandas.DataFrame") -> Any:  # the last run's _RUN_ORDER time
        for column in ("start_time", "scheduled_time", "created"):
            value = _plain(frame[column].iloc[-1])
            if value is not None:
                return value
        return None

    frame = _page_of_runs(store, store.query, columns, where, params, int(limit), int(offset), last_time)
    return _parse_json(frame)


def run_rows(store: "EmbeddedStore", fields: Iterable[str], flow_name: str | None = None,
             state: str | Iterable[str] | None = None, limit: int = 100,
             offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
    """The runs of runs() as dicts of `fields` (flow_runs columns) holding plain Python values
    (times as naive UTC datetimes, JSON parsed), for the server's list route: a DataFrame and
    its conversion to JSON took about half of a request's time (~5 of ~11 ms for 100 runs).
    `store` is an EmbeddedStore (the server's).
    """
    names = tuple(fields)
    where, params = _run_filters(flow_name, state, **filters)
    # The time each run sorts by comes last: the page's last one is what _page_of_runs remembers.
    columns = f"{_columns(names, ())}, {_RUN_ORDER} AS run_time"
    with store.transaction("read flow runs from") as con:
        # What store.query() does before each read (EmbeddedStore has no public hook for it).
        store._mark_crashed(con)
        rows = _page_of_runs(store, lambda sql, values: con.execute(sql, values).fetchall(), columns,
                             where, params, int(limit), int(offset), lambda rows: rows[-1][-1])
    found = [dict(zip(names, row)) for row in rows]  # zip drops run_time
    for name in JSON_COLUMNS.intersection(names):
        for run in found:
            run[name] = _loads(run[name])
    return found


#: flow runs sort newest first by this; a run not started yet by when it is scheduled to start,
#: else by when it was created.
_RUN_ORDER = "coalesce(start_time, scheduled_time, created)"
_NEVER = "'-infinity'::TIMESTAMP"
#: (store, filters, offset + limit) -> the time of that page's last run when it was last read in
#: this process, as text (see _page_of_runs). Only a hint: a wrong one costs a second statement.
_page_starts: dict[tuple, Any] = {}
_MAX_PAGE_STARTS = 256


def _page_of_runs(store: Any, execute: Callable[[str, list], Any], columns: str, where: list[str],
                  params: list, limit: int, offset: int, last_time: Callable[[Any], Any]) -> Any:
    """One page of runs as `execute(sql, values)` returns it, read by looking only at the runs at
    least as new as the page's last one: the same answer for less work, as a plain ORDER BY ...
    LIMIT makes DuckDB read every column of every run into its top-N (~20 ms of CPU for 100k
    runs; this, ~2 ms).

    That time is the one the page's last run had when this page was last read in this process,
    a constant DuckDB applies while it scans. Should fewer than offset + limit runs be that new
    any more (runs were deleted, or moved back), the page comes back short and is read again
    with the exact time, which DuckDB finds with a max(x, n) aggregate over one column, as on a
    first read. `last_time(result)` tells the time of a full page's last run, to remember.
    """
    page_end = limit + offset
    page = (repr(store), repr(params), page_end)
    since = _page_starts.get(page)
    result = None
    if since is not None:
        values = [*params, since, *params, since, *params, since]  # text: an ApiStore sends JSON
        result = execute(_limit(_runs_since_sql(columns, where), values, limit, offset), values)
    if result is None or len(result) < limit:
        values = [*params, page_end, page_end, *params]
        sql = _runs_sql(columns, [*where, _page_start_condition(where)])
        result = execute(_limit(sql, values, limit, offset), values)
    last = last_time(result) if len(result) == limit else None
    if last is None:
        _page_starts.pop(page, None)
    else:
        if len(_page_starts) >= _MAX_PAGE_STARTS:
            _page_starts.clear()
        _page_starts[page] = last.isoformat(sep=" ")
    return result


def _run_filters(flow_name: str | None, state: str | Iterable[str] | None, deployment_id: str | None = None,
                 since: Any = None, until: Any = None) -> tuple[list[str], list]:
    """WHERE conditions and their parameters; since/until bound a run's start time, or its
    scheduled or created time when it has not started (naive UTC datetimes or their text)."""
    where, params = [], []
    if deployment_id is not None:
        where.append("deployment_id = ?")
        params.append(deployment_id)
    for bound, op in ((since, ">="), (until, "<=")):
        if bound is not None:
            where.append(f"coalesce(start_time, scheduled_time, created) {op} CAST(? AS TIMESTAMP)")
            params.append(str(bound))
    if flow_name is not None:
        where.append("flow_name = ?")
        params.append(flow_name)
    if state is not None:
        states = [state] if isinstance(state, str) else list(state)
        where.append("list_contains(?, lower(state))")
        params.append([str(s).lower() for s in states])
    return where, params


def _runs_sql(columns: str, where: list[str]) -> str:
    conditions = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {columns} FROM flow_runs{conditions} ORDER BY {_RUN_ORDER} DESC NULLS LAST, id"


def _runs_since_sql(columns: str, where: list[str]) -> str:
    """_runs_sql of the runs at least as new as a time: the started ones (start_time >= it), those
    scheduled (scheduled_time >= it) and the others not started (created >= it), as three scans
    that DuckDB filters on one time column each while reading it, skipping whole row groups by
    their min/max, before it reads the others (an `OR` or a coalesce() would make it read them
    all). Parameters: those of `where` and the time (text), three times."""
    def part(conditions: list[str]) -> str:
        return (f"SELECT {columns}, {_RUN_ORDER} AS sort_time, id AS sort_id FROM flow_runs "
                f"WHERE {' AND '.join(conditions)}")

    started = part([*where, "start_time >= CAST(? AS TIMESTAMP)"])
    scheduled = part([*where, "scheduled_time >= CAST(? AS TIMESTAMP)", "start_time IS NULL"])
    waiting = part([*where, "created >= CAST(? AS TIMESTAMP)", "start_time IS NULL", "scheduled_time IS NULL"])
    return (f"SELECT * EXCLUDE (sort_time, sort_id) FROM ({started} UNION ALL {scheduled} UNION ALL {waiting}) "
            f"ORDER BY sort_time DESC NULLS LAST, sort_id")


def _page_start_condition(where: list[str]) -> str:
    """Keep the runs at least as new as the (offset + limit)-th newest of those `where` keeps, or
    all when fewer match. Parameters: offset + limit twice, then those of `where`."""
    conditions = f" WHERE {' AND '.join(where)}" if where else ""
    newest = f"SELECT max({_RUN_ORDER}, ?)[?] FROM flow_runs{conditions}"
    return f"coalesce({_RUN_ORDER}, {_NEVER}) >= coalesce(({newest}), {_NEVER})"


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
        # the last run that started (not a slot scheduled ahead), else the newest one
        "SELECT flow_name, count(*) AS runs, max(start_time) AS last_run_start, "
        "coalesce(arg_max(state, start_time), arg_max(state, created)) AS last_state FROM flow_runs "
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
