"""DataFrames as Parquet files that DuckDB can query, written only when they round-trip exactly.

A frame goes through ``pyarrow.Table.from_pandas``; its conversion back is compared with
the original (dtypes, values, index and column labels and their types) before any byte
is written. What Parquet cannot hold exactly (integer column labels, lists in object
columns, duplicate column names, ...) is reported as a reason, and the caller pickles
the frame instead. A DatetimeIndex's ``freq``, which Parquet drops, is kept in nbflow's
own schema metadata and restored on read.
"""

from __future__ import annotations

import json
from typing import Any

_META_KEY = b"nbflow"
#: Indexes whose ``freq`` Parquet drops (a PeriodIndex keeps it in its dtype).
_FREQ_INDEXES = ("DatetimeIndex", "TimedeltaIndex")

#: infer_dtype kinds of object columns whose values come back as the same Python objects.
_EXACT_OBJECT_KINDS = frozenset({"string", "bytes", "decimal", "date", "empty"})


def frame_to_parquet(frame: Any) -> tuple[Any, str | None]:
    """Parquet bytes of ``frame`` (a buffer), or (None, why it cannot round-trip exactly)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pandas.api.types import infer_dtype

    for i, dtype in enumerate(frame.dtypes):
        if dtype == object:
            kind = infer_dtype(frame.iloc[:, i], skipna=False)
            if kind not in _EXACT_OBJECT_KINDS:
                return None, f"column {frame.columns[i]!r} holds Python objects ({kind}) that Parquet does not keep"
    try:
        table = pa.Table.from_pandas(frame)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        return None, f"pyarrow cannot convert it ({exc})"
    reason = _difference(frame, table.to_pandas())
    if reason is not None:
        return None, reason
    freq = frame.index.freqstr if type(frame.index).__name__ in _FREQ_INDEXES else None
    if freq is not None:
        metadata = dict(table.schema.metadata or {})
        metadata[_META_KEY] = json.dumps({"index_freq": freq}).encode()
        table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table, sink)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        return None, f"Parquet cannot store it ({exc})"
    return sink.getvalue(), None


def parquet_to_frame(data: bytes) -> Any:
    """The DataFrame stored in Parquet ``data`` (written by ``frame_to_parquet``)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    frame = table.to_pandas()
    extra = (table.schema.metadata or {}).get(_META_KEY)
    if extra is not None:
        freq = json.loads(extra).get("index_freq")
        index_type = type(frame.index).__name__
        if freq is not None and index_type in _FREQ_INDEXES:
            frame.index = getattr(pd, index_type)(frame.index, freq=freq)
    return frame


def _difference(frame: Any, back: Any) -> str | None:
    """What differs between a frame and its Parquet round trip, or None if nothing does."""
    for axis in ("columns", "index"):
        ours, theirs = getattr(frame, axis), getattr(back, axis)
        if type(ours) is not type(theirs) or not ours.equals(theirs) or ours.dtype != theirs.dtype \
                or list(ours.names) != list(theirs.names):
            return f"its {axis} ({type(ours).__name__}, dtype {ours.dtype}) come back as {type(theirs).__name__}" \
                   f" with dtype {theirs.dtype}"
    if not frame.dtypes.equals(back.dtypes):
        return f"its dtypes {dict(frame.dtypes.astype(str))} come back as {dict(back.dtypes.astype(str))}"
    if not frame.equals(back):
        return "its values change in the conversion"
    return None
