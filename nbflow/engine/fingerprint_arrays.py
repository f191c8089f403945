"""numpy and pandas handlers for ``fingerprint``, registered the first time such a value is met.

Numeric columns and arrays are hashed as raw memory: exact, and about twice as fast as
``pd.util.hash_pandas_object``, which serves the other columns (strings, extension
types). Object columns holding anything but strings are encoded value by value, since
``hash_pandas_object`` hashes them through ``str()`` and would make ``1`` and ``"1"`` (or
two objects whose str shows an address) collide. numpy and pandas are imported inside the
register functions, which run only once those libraries are already imported.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace
from typing import Any

#: numpy kinds whose memory is their value: bool, ints, floats, complex, datetimes.
_RAW_KINDS = frozenset("biufcmM")


def _type_tag(cls: type, base: str) -> bytes:
    name = base if cls.__module__.startswith(("numpy", "pandas")) else f"{cls.__module__}.{cls.__qualname__}"
    return name.encode() + b"\0"


def register_numpy(kit: SimpleNamespace) -> None:
    """Register ndarray and numpy scalar handlers on ``kit.dispatch``."""
    import numpy as np

    def raw_digest(arr: Any) -> bytes:
        return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8)).digest()

    def dtype_tag(dtype: Any) -> bytes:
        return (str(dtype.descr) if dtype.fields else dtype.str).encode() + b"\0"

    def encode_ndarray(arr: Any, buf: bytearray) -> None:
        if type(arr) is not np.ndarray:  # np.matrix, masked arrays: their pickled state says more
            return kit.encode_object(arr, buf)
        buf += b"ndarray\0" + dtype_tag(arr.dtype) + repr(arr.shape).encode() + b"\0"
        if arr.dtype.hasobject:  # memory holds pointers, not values
            kit.encode(arr.tolist(), buf)
        else:
            buf += raw_digest(arr)

    def encode_scalar(value: Any, buf: bytearray) -> None:
        if value.dtype.hasobject:
            return kit.encode_object(value, buf)
        kit.put(buf, b"npscalar\0" + dtype_tag(value.dtype), value.tobytes())

    kit.dispatch.register(np.ndarray, encode_ndarray)
    kit.dispatch.register(np.generic, encode_scalar)
    kit.raw_digest = raw_digest


def register_pandas(kit: SimpleNamespace) -> None:
    """Register DataFrame, Series and Index handlers on ``kit.dispatch``."""
    import numpy as np
    import pandas as pd
    from pandas.api.types import infer_dtype

    def values_digest(values: pd.Series | pd.Index) -> bytes:
        """32 bytes that identify the values (not the labels) of a column or an index."""
        dtype = values.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in _RAW_KINDS:
            return b"raw" + kit.raw_digest(values.to_numpy())
        if isinstance(dtype, pd.CategoricalDtype):
            buf = bytearray(b"categorical\0%d\0" % dtype.ordered)
            encode_index(dtype.categories, buf)
            buf += kit.raw_digest(np.asarray(values.array.codes))
            return b"cat" + hashlib.sha256(buf).digest()
        if dtype == object and infer_dtype(values, skipna=False) not in ("string", "empty") \
                or isinstance(dtype, pd.ArrowDtype) and dtype.kind not in _RAW_KINDS \
                and str(dtype.pyarrow_dtype) not in ("string", "large_string"):
            return b"obj" + by_element(values)
        mask = np.asarray(values.isna())
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if isinstance(numpy_dtype, np.dtype) and numpy_dtype.kind in "iufb":  # nullable and Arrow numbers
            data = values.to_numpy(dtype=numpy_dtype, na_value=False if numpy_dtype.kind == "b" else 0)
            return b"ext" + hashlib.sha256(kit.raw_digest(data) + kit.raw_digest(mask)).digest()
        try:
            hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
        except (TypeError, ValueError):  # values pandas cannot hash (lists, dicts, ...)
            return b"obj" + by_element(values)
        return b"hpo" + hashlib.sha256(kit.raw_digest(hashed) + kit.raw_digest(mask)).digest()

    def by_element(values: pd.Series | pd.Index) -> bytes:
        """Slow but exact: each value through the fingerprint handlers."""
        buf = bytearray()
        kit.encode(values.tolist(), buf)
        return hashlib.sha256(buf).digest()

    def encode_index(index: pd.Index, buf: bytearray) -> None:
        buf += b"index\0" + _type_tag(type(index), type(index).__name__) + str(index.dtype).encode() + b"\0"
        kit.encode(list(index.names), buf)
        if isinstance(index, pd.RangeIndex):
            buf += b"%d:%d:%d\0" % (index.start, index.stop, index.step)
        elif isinstance(index, pd.MultiIndex):
            buf += b"%d\0" % index.nlevels
            for level in range(index.nlevels):
                values = index.get_level_values(level)
                buf += str(values.dtype).encode() + b"\0" + values_digest(values)
        else:
            buf += b"%d\0" % len(index) + values_digest(index)

    def encode_series(series: pd.Series, buf: bytearray) -> None:
        buf += b"series\0" + _type_tag(type(series), "Series") + str(series.dtype).encode() + b"\0"
        kit.encode(series.name, buf)
        encode_index(series.index, buf)
        buf += values_digest(series)

    def encode_frame(frame: pd.DataFrame, buf: bytearray) -> None:
        buf += b"dataframe\0" + _type_tag(type(frame), "DataFrame") + b"%d:%d\0" % frame.shape
        encode_index(frame.columns, buf)
        encode_index(frame.index, buf)
        for i in range(frame.shape[1]):
            column = frame.iloc[:, i]
            buf += str(column.dtype).encode() + b"\0"
            try:
                buf += values_digest(column)
            except kit.Unfingerprintable as exc:
                exc.path.append(f"[{frame.columns[i]!r}]")
                raise

    kit.dispatch.register(pd.Index, encode_index)
    kit.dispatch.register(pd.Series, encode_series)
    kit.dispatch.register(pd.DataFrame, encode_frame)
