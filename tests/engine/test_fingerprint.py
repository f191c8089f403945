"""Value fingerprints: equal content -> equal digest, any difference -> a different one, in every process."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import nbflow
from nbflow.engine.fingerprint import (
    closure_fingerprint, fingerprint, fingerprint_arguments, register_fingerprint,
)
from nbflow.errors import FingerprintError

REPO = str(Path(nbflow.__file__).resolve().parent.parent)


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Config:
    name: str
    size: int = 3


class Plain:
    def __init__(self, value: object) -> None:
        self.value = value


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "b": [1.5, 2.5, 3.5], "s": ["x", "y", "z"]})


EQUAL = [
    ("int", lambda: 1, lambda: 1),
    ("dict order", lambda: {"a": 1, "b": 2}, lambda: {"b": 2, "a": 1}),
    ("nested dict order", lambda: {"k": {"x": [1, 2], "y": None}}, lambda: {"k": {"y": None, "x": [1, 2]}}),
    ("set order", lambda: {"pear", "apple", "fig"}, lambda: {"fig", "pear", "apple"}),
    ("frozenset", lambda: frozenset({(1, "a"), (2, "b")}), lambda: frozenset({(2, "b"), (1, "a")})),
    ("datetime", lambda: dt.datetime(2024, 1, 2, 3, 4, 5), lambda: dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("decimal", lambda: decimal.Decimal("1.50"), lambda: decimal.Decimal("1.50")),
    ("path", lambda: Path("/data/x.csv"), lambda: Path("/data") / "x.csv"),
    ("enum", lambda: Color.RED, lambda: Color(1)),
    ("dataclass", lambda: Config("a"), lambda: Config("a", 3)),
    ("plain object", lambda: Plain([1, 2]), lambda: Plain([1, 2])),
    ("ndarray", lambda: np.arange(6).reshape(2, 3), lambda: np.arange(6).reshape(2, 3).copy()),
    ("non-contiguous ndarray", lambda: np.arange(12).reshape(3, 4)[:, ::2],
     lambda: np.ascontiguousarray(np.arange(12).reshape(3, 4)[:, ::2])),
    ("dataframe", _frame, lambda: _frame().copy()),
    ("series", lambda: pd.Series([1, 2], name="n"), lambda: pd.Series([1, 2], name="n")),
    ("function by name", lambda: os.path.join, lambda: os.path.join),
    ("big int", lambda: 10 ** 5000, lambda: 10 ** 5000),
    ("nan", lambda: float("nan"), lambda: float("nan")),
]


@pytest.mark.parametrize("make_a, make_b", [c[1:] for c in EQUAL], ids=[c[0] for c in EQUAL])
def test_equal_values_have_equal_fingerprints(make_a, make_b) -> None:
    assert fingerprint(make_a()) == fingerprint(make_b())


def _changed(df: pd.DataFrame, how: str) -> pd.DataFrame:
    df = df.copy()
    if how == "cell":
        df.loc[1, "b"] = 2.25
    elif how == "column name":
        df = df.rename(columns={"b": "B"})
    elif how == "dtype":
        df["a"] = df["a"].astype("int32")
    elif how == "index":
        df.index = [10, 11, 12]
    elif how == "index name":
        df.index.name = "row"
    elif how == "column order":
        df = df[["b", "a", "s"]]
    elif how == "string cell":
        df.loc[2, "s"] = "Z"
    elif how == "extra row":
        df = pd.concat([df, df.iloc[:1]])
    return df


DIFFERENT = [
    ("1 / 1.0 / True / '1' / b'1'", [1, 1.0, True, "1", b"1", 1 + 0j, decimal.Decimal(1)]),
    ("0 / False / None / 0.0 / -0.0 / ''", [0, False, None, 0.0, -0.0, "", b"", [], (), {}]),
    ("tuple / list / set / frozenset", [(1,), [1], {1}, frozenset({1})]),
    ("nested containers", [[1, [2]], [[1], 2], [1, 2], [[1, 2]]]),
    ("dict values", [{"a": 1}, {"a": 1.0}, {"a": True}, {"a": "1"}]),
    ("dict keys", [{1: "a"}, {True: "a"}, {"1": "a"}, {1.5: "a"}]),
    ("str concatenation", [("ab", "c"), ("a", "bc"), ("abc",)]),
    ("bytes kinds", [b"x", bytearray(b"x"), "x"]),
    ("tuple subclasses", [(1, 2), Point(1, 2)]),
    ("int subclasses", [1, Level.LOW, Color.RED, np.int64(1), np.int32(1), np.float64(1.0)]),
    ("datetimes", [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
                   dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1), "2024-01-01"]),
    ("timedeltas", [dt.timedelta(seconds=1), dt.timedelta(microseconds=1000000 - 1), 1]),
    ("decimals", [decimal.Decimal("1.0"), decimal.Decimal("1"), decimal.Decimal("1.00")]),
    ("paths", [Path("a"), "a", PurePosixPath("b")]),
    ("dataclasses", [Config("a"), Config("b"), Config("a", 4), Plain("a")]),
    ("objects", [Plain(1), Plain(1.0), Plain([1]), Plain(None)]),
    ("arrays", [np.array([1, 2], dtype=np.int64), np.array([1, 2], dtype=np.int32),
                np.array([1.0, 2.0]), np.array([[1, 2]]), np.array([1, 3]), [1, 2]]),
    ("object arrays", [np.array([1, "1"], dtype=object), np.array(["1", "1"], dtype=object)]),
    ("frames", [_changed(_frame(), how) for how in ("", "cell", "column name", "dtype", "index",
                                                    "index name", "column order", "string cell",
                                                    "extra row")]),
    ("object columns", [pd.DataFrame({"o": pd.Series([1, "1"], dtype=object)}),
                        pd.DataFrame({"o": pd.Series(["1", "1"], dtype=object)}),
                        pd.DataFrame({"o": pd.Series([1, 1], dtype=object)})]),
    ("missing values", [pd.Series([1, None], dtype="Int64"), pd.Series([1, 0], dtype="Int64"),
                        pd.Series(["a", None], dtype=object), pd.Series(["a", "None"], dtype=object),
                        pd.Series(["a", float("nan")], dtype=object), pd.Series(["a", None], dtype="string")]),
    ("categoricals", [pd.Series(pd.Categorical(["a", "b"])), pd.Series(pd.Categorical(["b", "a"])),
                      pd.Series(pd.Categorical(["a", "b"], categories=["b", "a"])), pd.Series(["a", "b"])]),
    ("series", [pd.Series([1, 2]), pd.Series([1, 2], name="n"), pd.Series([1, 2], index=[1, 0]),
                pd.Series([1.0, 2.0]), pd.Index([1, 2])]),
    ("extension dtypes", [pd.Series([2 ** 53, None], dtype="int64[pyarrow]"),
                          pd.Series([2 ** 53 + 1, None], dtype="int64[pyarrow]"),
                          pd.Series(pd.arrays.SparseArray([0, 0, 1])), pd.Series(pd.arrays.SparseArray([0, 1, 0])),
                          pd.Series([[1, 2], [3]], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
                          pd.Series([[1, 2], [4]], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
                          pd.Series(pd.period_range("2024", periods=2, freq="M")),
                          pd.Series(pd.period_range("2024", periods=2, freq="D"))]),
    ("time zones", [pd.Series(pd.date_range("2024", periods=2, tz="UTC")),
                    pd.Series(pd.date_range("2024", periods=2, tz="Europe/Paris")),
                    pd.Series(pd.date_range("2024", periods=2))]),
    ("functions", [lambda x: x + 1, lambda x: x + 2, lambda y: y + 1, os.path.join, os.path.split]),
]


@pytest.mark.parametrize("values", [c[1] for c in DIFFERENT], ids=[c[0] for c in DIFFERENT])
def test_different_values_have_different_fingerprints(values: list) -> None:
    digests = [fingerprint(v) for v in values]
    assert len(set(digests)) == len(values), [(v, d[:8]) for v, d in zip(values, digests)]


def test_fingerprint_is_a_hex_sha256() -> None:
    digest = fingerprint({"a": [1, 2.5, None]})
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_functions_differ_by_closure_values_and_defaults() -> None:
    def make(n, default=1):
        def add(x, y=default):
            return x + n + y
        return add

    assert fingerprint(make(1)) == fingerprint(make(1))
    assert fingerprint(make(1)) != fingerprint(make(2))
    assert fingerprint(make(1)) != fingerprint(make(1, default=5))
    assert closure_fingerprint(make(1)) != closure_fingerprint(make(2))
    assert closure_fingerprint(test_fingerprint_is_a_hex_sha256) is None


def test_self_referencing_objects_are_fingerprinted() -> None:
    a, b = Plain(None), Plain(None)
    a.value, b.value = a, b
    assert fingerprint(a) == fingerprint(b)
    c = Plain(None)
    c.value = Plain(c)
    assert fingerprint(c) != fingerprint(a)


def test_a_self_containing_list_raises_a_clear_error() -> None:
    loop: list = []
    loop.append(loop)
    with pytest.raises(FingerprintError, match="recursion limit"):
        fingerprint(loop, name="loop")


def _generator():
    yield 1


UNFINGERPRINTABLE = [
    ("lock", lambda: threading.Lock(), "_thread.lock"),
    ("rlock", lambda: threading.RLock(), "RLock"),
    ("generator", _generator, "generator"),
    ("open file", lambda: open(__file__), "TextIOWrapper"),
    ("socket", lambda: socket.socket(), "socket"),
    ("event", lambda: threading.Event(), "lock"),
]


@pytest.mark.parametrize("make, type_name", [c[1:] for c in UNFINGERPRINTABLE],
                         ids=[c[0] for c in UNFINGERPRINTABLE])
def test_values_without_content_raise_fingerprint_error(make, type_name: str) -> None:
    value = make()
    try:
        with pytest.raises(FingerprintError) as info:
            fingerprint({"inner": [0, value]}, name="data")
    finally:
        getattr(value, "close", lambda: None)()
    message = str(info.value)
    assert type_name in message
    assert "data['inner'][1]" in message
    assert "cache_key_fn" in message and "INPUTS - 'data'" in message


def test_error_names_the_attribute_path_of_an_object() -> None:
    with pytest.raises(FingerprintError, match=r"job\.value\['conn'\] = .*_thread\.lock"):
        fingerprint(Plain({"conn": threading.Lock()}), name="job")


def test_fingerprint_arguments_ignores_order_and_uses_known_keys() -> None:
    assert fingerprint_arguments({"a": 1, "b": 2}) == fingerprint_arguments({"b": 2, "a": 1})
    assert fingerprint_arguments({"a": 1, "b": 2}) != fingerprint_arguments({"a": 2, "b": 1})
    lock = threading.Lock()
    with pytest.raises(FingerprintError, match="'conn'"):
        fingerprint_arguments({"conn": lock})
    known = fingerprint_arguments({"conn": lock}, known={"conn": "ab" * 32})
    assert known != fingerprint_arguments({"conn": lock}, known={"conn": "cd" * 32})


def test_register_fingerprint_for_a_custom_type() -> None:
    class Handle:
        def __init__(self, name: str) -> None:
            self.name = name
            self.lock = threading.Lock()

    with pytest.raises(FingerprintError):
        fingerprint(Handle("a"))
    register_fingerprint(Handle, lambda h: h.name)
    assert fingerprint(Handle("a")) == fingerprint(Handle("a")) != fingerprint(Handle("b"))
    assert fingerprint(Handle("a")) != fingerprint("a")


_CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    from nbflow.engine.fingerprint import fingerprint

    @dataclasses.dataclass
    class Settings:
        tags: frozenset
        weights: dict

    values = {
        "set of strings": {"alpha", "beta", "gamma", "delta", "epsilon", "zeta"},
        "dict": {"zeta": 1, "alpha": [1, 2], "mid": {"x": {"y", "z"}}},
        "frozenset of tuples": frozenset({("a", 1), ("b", 2), ("c", 3)}),
        "notebook dataclass": Settings(frozenset({"x", "y", "z"}), {"b": 2.0, "a": 1.0}),
    }
    if sys.argv[1] == "pandas":
        import pandas as pd
        values["dataframe"] = pd.DataFrame({"s": ["x", "y"], "n": [1, 2]}, index=["r1", "r2"])
    print(json.dumps({name: fingerprint(v) for name, v in values.items()}))
""")


def _child_fingerprints(seed: str, extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable, "-c", _CHILD, extra], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_fingerprints_are_stable_across_processes_and_hash_seeds() -> None:
    first = _child_fingerprints("1", "pandas")
    second = _child_fingerprints("987654", "pandas")
    assert first == second
    assert fingerprint({"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}) == first["set of strings"]
    assert fingerprint(pd.DataFrame({"s": ["x", "y"], "n": [1, 2]}, index=["r1", "r2"])) == first["dataframe"]


MODULES = ["engine/fingerprint.py", "engine/fingerprint_arrays.py", "engine/source_fingerprint.py",
           "engine/cache_policies.py", "store/results.py", "store/parquet.py", "store/cache_index.py",
           "store/files.py"]
HEAVY = ("numpy", "pandas", "pyarrow", "cloudpickle", "duckdb")


def test_caching_modules_do_not_import_heavy_libraries_at_import_time() -> None:
    for module in MODULES:
        for line in (Path(REPO) / "nbflow" / module).read_text().splitlines():
            assert not line.startswith(tuple(f"{kw} {lib}" for kw in ("import", "from") for lib in HEAVY)), \
                f"{module}: {line}"
    code = ("import sys; import nbflow.engine.fingerprint, nbflow.engine.cache_policies, "
            "nbflow.store.results, nbflow.store.cache_index; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": REPO},
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_pandas_halfway_imported_by_another_thread_is_not_touched() -> None:
    # The store's writer thread may be importing pandas while a task computes a cache key.
    code = textwrap.dedent("""
        import sys, types, importlib.machinery
        half = types.ModuleType("pandas")
        half.__spec__ = importlib.machinery.ModuleSpec("pandas", None)
        half.__spec__._initializing = True
        sys.modules["pandas"] = half
        from nbflow.engine.fingerprint import fingerprint
        from nbflow.store.results import _is_dataframe
        class Row:
            def __init__(self, x):
                self.x = x
        print(len(fingerprint(Row(1))), _is_dataframe(Row(1)))
    """)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": REPO},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["64", "False"], out.stderr


def test_a_million_row_frame_is_fingerprinted_fast() -> None:
    n = 1_000_000
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": np.arange(n), "b": rng.random(n), "c": rng.integers(0, 100, n)})
    fingerprint(df)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fingerprint(df)
        best = min(best, time.perf_counter() - start)
    assert best < 0.1, f"fingerprint of a 1M-row frame took {best * 1e3:.0f} ms (target < 50 ms)"
