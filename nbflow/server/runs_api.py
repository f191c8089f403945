"""What the run routes answer: flows, flow runs, task runs and logs as JSON-ready dicts."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from nbflow.engine.states import STATE_TYPES
from nbflow.server.errors import bad_request
from nbflow.store import queries
from nbflow.store.records import FLOW_RUN_COLUMNS

FLOW_RUN_FIELDS = ("id", "flow_name", "deployment_id", "state", "state_message", "parameters",
                   "scheduled_time", "start_time", "end_time", "output_notebook", "parent_flow_run_id",
                   "duration_s", "run_count", "tags", "work_pool", "worker_id", "triggered_by",
                   "cancel_requested")
TASK_RUN_FIELDS = ("id", "flow_run_id", "task_name", "state", "state_message", "error", "upstream",
                   "dynamic_key", "run_count", "cache_key", "start_time", "end_time", "duration_s")
LOG_FIELDS = ("timestamp", "level", "level_name", "logger", "flow_run_id", "task_run_id", "message")
_STATES = {name.lower(): name for name in STATE_TYPES}
MAX_LIMIT = 1000
#: the largest `offset` (DuckDB's OFFSET takes a BIGINT; no store holds this many rows).
MAX_OFFSET = 1_000_000_000
#: the fields of a flow run in the list route: those flow_runs holds (not the deployment's).
_LISTED_RUN_FIELDS = tuple(f for f in FLOW_RUN_FIELDS if f in FLOW_RUN_COLUMNS)
#: types jsonable() returns unchanged (exactly these: not numpy scalars or subclasses).
_AS_IS = frozenset({str, int, bool, dict, list})


def jsonable(value: Any) -> Any:
    """A value from a DataFrame or a DuckDB row as JSON: times as ISO 8601 UTC, NaN/NaT as null."""
    if value is None or type(value) in _AS_IS:
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "to_pydatetime"):
        if str(value) == "NaT":
            return None
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()  # numpy scalar
    return value


def records(frame: Any, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    present = [f for f in fields if f in frame.columns]
    return [{f: jsonable(row[f]) for f in present} for row in frame[present].to_dict("records")]


def page(arguments: dict[str, str], default_limit: int = 100) -> tuple[int, int]:
    """`limit` (1..1000) and `offset` (0..MAX_OFFSET) from the query string."""
    limit = _int(arguments, "limit", default_limit)
    offset = _int(arguments, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}; got {limit}.", "limit")
    if not 0 <= offset <= MAX_OFFSET:
        raise bad_request(f"offset must be between 0 and {MAX_OFFSET}; got {offset}.", "offset")
    return limit, offset


def _int(arguments: dict[str, str], name: str, default: int) -> int:
    raw = arguments.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number; got {raw!r}.", name) from None


def state_filter(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        return _STATES[raw.lower()]
    except KeyError:
        raise bad_request(f"state must be one of {', '.join(STATE_TYPES)}; got {raw!r}.", "state") from None


def list_flows(store: Any) -> list[dict[str, Any]]:
    return records(queries.flows(store), ("flow_name", "runs", "last_run_start", "last_state"))


def list_flow_runs(store: Any, arguments: dict[str, str]) -> list[dict[str, Any]]:
    limit, offset = page(arguments)
    rows = queries.run_rows(store, _LISTED_RUN_FIELDS, flow_name=arguments.get("flow_name") or None,
                            state=state_filter(arguments.get("state")), limit=limit, offset=offset,
                            deployment_id=arguments.get("deployment_id") or None,
                            since=_time(arguments, "since"), until=_time(arguments, "until"))
    return [{f: jsonable(row[f]) for f in _LISTED_RUN_FIELDS} for row in rows]


_DEPLOYMENT_RUN_FIELDS = ("work_pool", "worker_id", "triggered_by", "cancel_requested")


def get_flow_run(store: Any, run_id: str) -> dict[str, Any]:
    """One flow run by id or unique prefix, with its deployment run's worker fields.

    Read with one query and no DataFrame: `--watch` and the dashboard poll this route.
    """
    transaction = getattr(store, "transaction", None)
    if transaction is not None and len(run_id) >= queries.MIN_PREFIX:
        columns = ", ".join(f'f."{c}"' for c in _LISTED_RUN_FIELDS) + ", " + ", ".join(
            f"d.{c}" for c in _DEPLOYMENT_RUN_FIELDS)
        with transaction("read a flow run from") as con:
            rows = con.execute(f"SELECT {columns} FROM flow_runs f LEFT JOIN deployment_runs d ON d.run_id = f.id "
                               "WHERE f.id = ? OR starts_with(f.id, ?) ORDER BY f.id = ? DESC LIMIT 2",
                               [run_id, run_id, run_id]).fetchall()
        if len(rows) == 1 or (rows and rows[0][0] == run_id):
            run = dict(zip(_LISTED_RUN_FIELDS + _DEPLOYMENT_RUN_FIELDS, rows[0]))
            for name in ("parameters", "tags"):
                run[name] = queries._loads(run[name])
            return {f: jsonable(run.get(f)) for f in FLOW_RUN_FIELDS}
    run = queries.flow_run(store, run_id)  # not found or ambiguous: its error says which
    if run.get("deployment_id"):
        found = store.query("SELECT work_pool, worker_id, triggered_by, cancel_requested FROM deployment_runs "
                            "WHERE run_id = ?", [run["id"]])
        if len(found):
            run.update({k: queries._plain(v) for k, v in found.iloc[0].to_dict().items()})
    return {f: jsonable(run.get(f)) for f in FLOW_RUN_FIELDS}


def list_task_runs(store: Any, run_id: str, arguments: dict[str, str]) -> list[dict[str, Any]]:
    limit, offset = page(arguments, default_limit=MAX_LIMIT)
    full_id = queries.flow_run(store, run_id)["id"]
    frame = queries.task_runs(store, flow_run_id=full_id)
    return records(frame.iloc[offset:offset + limit], TASK_RUN_FIELDS)


def _time(arguments: dict[str, str], name: str) -> str | None:
    """An ISO 8601 time from the query string as naive UTC text (a time without a zone is UTC)."""
    raw = arguments.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace(" ", "T"))
    except ValueError:
        raise bad_request(f"{name} must be an ISO 8601 time such as 2026-11-23T06:00:00Z; got {raw!r}.",
                          name) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(sep=" ")


_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def list_logs(store: Any, run_id: str, arguments: dict[str, str]) -> list[dict[str, Any]]:
    limit, offset = page(arguments, default_limit=MAX_LIMIT)
    full_id = queries.flow_run(store, run_id)["id"]
    frame = queries.logs(store, full_id).iloc[::-1]  # list routes are newest first
    level = arguments.get("level")
    if level:
        number = level.isascii() and level.isdigit()  # not str.isdigit alone: '²' is a digit int() refuses
        minimum = int(level) if number else _LEVELS.get(level.upper())
        if minimum is None:
            raise bad_request(f"level must be a number such as 30 or one of {', '.join(_LEVELS)}; got {level!r}.",
                              "level")
        frame = frame[frame["level"] >= minimum]
    return records(frame.iloc[offset:offset + limit], LOG_FIELDS)
