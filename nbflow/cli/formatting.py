"""How run values print in the terminal: local times, durations, missing values, JSON.

The store keeps times as naive UTC (`nbflow.store.schema.TIME_COLUMNS`); the CLI shows
them in the local time zone. Values may come from pandas (Timestamp, NaT, NaN, numpy
scalars) or plain Python; pandas is never imported here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

#: what an absent value (None, NaN, NaT) prints as.
MISSING = "-"


def is_missing(value: Any) -> bool:
    """True for None, NaN and NaT (the values that are not equal to themselves)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False


def to_datetime(value: Any) -> dt.datetime | None:
    """An aware datetime for a stored time: naive values are UTC, numbers are epoch seconds."""
    if is_missing(value):
        return None
    if isinstance(value, dt.datetime):
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    if isinstance(value, str):
        return to_datetime(dt.datetime.fromisoformat(value))
    raise TypeError(f"Cannot read {value!r} ({type(value).__name__}) as a time")


def local_time(value: Any) -> str:
    """`YYYY-MM-DD HH:MM:SS` in the local time zone, or "-"."""
    when = to_datetime(value)
    return MISSING if when is None else when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def clock_time(value: Any) -> str:
    """`HH:MM:SS.mmm` in the local time zone (for log lines), or "-"."""
    when = to_datetime(value)
    if when is None:
        return MISSING
    local = when.astimezone()
    return local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def duration(seconds: Any) -> str:
    """A duration for people: `0.42s`, `12.3s`, `4m 05s`, `2h 03m`, or "-"."""
    if is_missing(seconds):
        return MISSING
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def text(value: Any) -> str:
    """Any stored value as one cell or field: "-" when absent, JSON for dicts and lists."""
    if is_missing(value):
        return MISSING
    if isinstance(value, dt.datetime):
        return local_time(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(jsonable(value), ensure_ascii=False)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types: times as ISO 8601 in UTC, NaN/NaT as null."""
    if is_missing(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return to_datetime(value).isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return jsonable(value.tolist())
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
