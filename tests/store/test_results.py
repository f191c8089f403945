"""Result storage: the right format for each value, exact round trips, and nothing unverified loaded."""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from nbflow.errors import ResultIntegrityError, SerializationError
from nbflow.store.results import INLINE_LIMIT, ResultRef, ResultStore, load_or_create_key


@pytest.fixture
def store(tmp_path: Path, nbflow_home: Path) -> ResultStore:
    """A store under tmp_path whose HMAC key lives in the test's NBFLOW_HOME."""
    return ResultStore(tmp_path / "results")


class Marker:
    """Unpickling this creates a directory: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


JSON_VALUES = [
    ("none", None), ("bool", True), ("int", -7), ("big int", 10 ** 40), ("float", 0.1),
    ("negative zero", -0.0), ("str", "héllo \ud800 \x00"), ("empty list", []),
    ("nested", {"a": [1, 2.5, None, {"b": [True, "x"]}], "": {}}),
]


@pytest.mark.parametrize("value", [c[1] for c in JSON_VALUES], ids=[c[0] for c in JSON_VALUES])
def test_plain_values_are_exact_json(store: ResultStore, value: Any) -> None:
    ref = store.write(value)
    assert ref.format == "json" and ref.path.endswith(".json")
    back = store.read(ref)
    assert back == value and type(back) is type(value)
    assert repr(back) == repr(value)  # -0.0 stays -0.0
    assert store.read(ResultRef(ref.format, ref.path, ref.digest)) == value  # from the file, too


PICKLED = [
    ("tuple", (1, 2)), ("list of tuples", [(1, "a")]), ("set", {1, "a"}), ("nan", float("nan")),
    ("inf in a list", [float("inf")]), ("int keys", {1: "a"}), ("bytes", b"\x00\x01"),
    ("numpy", np.arange(5)), ("series", pd.Series([1, 2], name="n")),
    ("int subclass", np.int64(3)), ("huge int", 10 ** 5000),
]


@pytest.mark.parametrize("value", [c[1] for c in PICKLED], ids=[c[0] for c in PICKLED])
def test_values_json_cannot_hold_exactly_are_signed_pickles(store: ResultStore, value: Any) -> None:
    ref = store.write(value)
    assert ref.format == "pickle" and ref.path.endswith(".pkl") and ref.inline is None
    back = store.read(ref)
    assert type(back) is type(value)
    if isinstance(value, (np.ndarray, pd.Series)):
        assert (back == value).all()
    elif value == value:  # not nan
        assert back == value


def test_small_json_travels_inline_and_large_json_does_not(store: ResultStore) -> None:
    small = store.write({"n": 1})
    assert small.inline == '{"n":1}'
    os.unlink(small.path)
    assert store.read(small) == {"n": 1}  # no file read needed
    large = store.write(list(range(INLINE_LIMIT)))
    assert large.format == "json" and large.inline is None
    assert store.read(large) == list(range(INLINE_LIMIT))


def test_files_are_content_addressed_or_named_and_written_atomically(store: ResultStore) -> None:
    a, b = store.write({"x": 1}), store.write({"x": 1})
    assert a == b and Path(a.path) == store.root / a.digest[:2] / f"{a.digest}.json"
    named = store.write({"x": 1}, name="run-123")
    assert named.path == str(store.root / "run-123.json")
    for bad in ("../escape", "a/b", ".hidden", "", "x" * 200):
        with pytest.raises(ValueError, match="plain file name"):
            store.write(1, name=bad)
    assert not [p for p in store.root.rglob("*") if p.name.endswith(".tmp")]


def test_result_ref_round_trips_through_a_dict() -> None:
    for ref in (ResultRef("json", "/r/a.json", "ab", "1"), ResultRef("pickle", "/r/b.pkl", "cd")):
        assert ResultRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    with pytest.raises(ValueError):
        ResultRef.from_dict({"format": "exe", "path": "/x", "digest": "00"})


# -- DataFrames ----------------------------------------------------------------------------

FRAMES = [
    ("basic", lambda: pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5], "s": ["x", "y"]})),
    ("named string index", lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index(["r1", "r2"], name="k"))),
    ("datetime index with freq", lambda: pd.DataFrame({"a": [1, 2, 3]}, index=pd.date_range("2024", periods=3))),
    ("timedelta and period indexes", lambda: pd.DataFrame(
        {"a": [1, 2]}, index=pd.timedelta_range("1s", periods=2, freq="s")).join(
        pd.DataFrame({"p": pd.period_range("2024", periods=2, freq="M")},
                     index=pd.timedelta_range("1s", periods=2, freq="s")))),
    ("period index", lambda: pd.DataFrame({"a": [1, 2]}, index=pd.period_range("2024", periods=2, freq="M"))),
    ("multiindex", lambda: pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)]))),
    ("time zones and nullables", lambda: pd.DataFrame({
        "t": pd.date_range("2024", periods=2, tz="Europe/Paris"), "i": pd.array([1, None], dtype="Int64"),
        "c": pd.Categorical(["lo", "hi"]), "d": pd.to_timedelta([1, 2], unit="s")})),
    ("empty columns", lambda: pd.DataFrame({"a": pd.Series([], dtype="int64")})),
]


@pytest.mark.parametrize("make", [c[1] for c in FRAMES], ids=[c[0] for c in FRAMES])
def test_dataframes_are_exact_parquet(store: ResultStore, make) -> None:
    frame = make()
    ref = store.write(frame)
    assert ref.format == "parquet" and ref.path.endswith(".parquet")
    back = store.read(ref)
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_freq=True)


def test_a_parquet_result_is_queryable_with_duckdb(store: ResultStore) -> None:
    frame = pd.DataFrame({"city": ["Oslo", "Lima", "Oslo"], "sales": [3, 4, 5]})
    ref = store.write(frame)
    rows = duckdb.sql(f"select city, sum(sales) as s from read_parquet('{ref.path}') group by city order by city")
    assert rows.fetchall() == [("Lima", 4), ("Oslo", 8)]
    assert duckdb.sql(f"select * from read_parquet('{ref.path}')").df()["sales"].tolist() == [3, 4, 5]


NOT_PARQUET = [
    ("integer column labels", lambda: pd.DataFrame(np.arange(4).reshape(2, 2))),
    ("lists in a column", lambda: pd.DataFrame({"o": [[1, 2], [3]]})),
    ("mixed objects", lambda: pd.DataFrame({"o": pd.Series([1, "a"], dtype=object)})),
    ("duplicate columns", lambda: pd.DataFrame([[1, 2]], columns=["a", "a"])),
    ("None in an object column", lambda: pd.DataFrame({"o": pd.Series(["a", None], dtype=object)})),
]


@pytest.mark.parametrize("make", [c[1] for c in NOT_PARQUET], ids=[c[0] for c in NOT_PARQUET])
def test_frames_parquet_cannot_hold_exactly_are_pickled(store: ResultStore, make, caplog) -> None:
    frame = make()
    logger = logging.getLogger("nbflow.store.results")  # "nbflow" does not propagate to the root
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("DEBUG", logger=logger.name):
            ref = store.write(frame)
    finally:
        logger.removeHandler(caplog.handler)
    assert ref.format == "pickle"
    assert "instead of writing Parquet" in caplog.text
    pd.testing.assert_frame_equal(store.read(ref), frame, check_exact=True)


# -- integrity -----------------------------------------------------------------------------

def _flip_byte(path: str, offset: int = -3) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


def test_the_hmac_key_is_32_private_bytes_made_once(store: ResultStore, nbflow_home: Path) -> None:
    store.write({1, 2})
    key_file = nbflow_home / "hmac.key"
    assert len(key_file.read_bytes()) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = key_file.read_bytes()
    ResultStore(store.root).write({3})
    assert key_file.read_bytes() == before


def test_concurrent_key_creation_agrees_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(tmp_path / "hmac.key")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["hmac.key"]


def test_a_damaged_key_is_reported(tmp_path: Path) -> None:
    (tmp_path / "hmac.key").write_bytes(b"short")
    with pytest.raises(ResultIntegrityError, match="5 bytes long.*Delete it"):
        ResultStore(tmp_path / "results", key_path=tmp_path / "hmac.key").write({1})


def test_a_tampered_pickle_is_refused_before_it_is_unpickled(store: ResultStore, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    planted = pickle.dumps(Marker(marker))
    pickle.loads(planted)  # the payload is live: loading it runs code
    assert marker.exists()
    marker.rmdir()

    ref = store.write({"a set", "is pickled"})
    Path(ref.path).write_bytes(planted)  # someone replaces a signed result with their own pickle
    with pytest.raises(ResultIntegrityError) as info:
        store.read(ref)
    assert not marker.exists()
    message = str(info.value)
    assert ref.path in message and "modified after it was written" in message
    assert "will not be loaded" in message and "recomputed" in message and "HMAC" in message

    signed = store.write(Marker(marker))  # a signed pickle loads (and runs) as written...
    _flip_byte(signed.path)  # ...but not once a byte changed
    with pytest.raises(ResultIntegrityError, match="HMAC"):
        store.read(signed)
    assert not marker.exists()


def test_a_pickle_signed_with_another_key_is_refused(store: ResultStore, tmp_path: Path) -> None:
    other = ResultStore(tmp_path / "results", key_path=tmp_path / "other.key")
    ref = other.write({1, 2})
    with pytest.raises(ResultIntegrityError, match="modified after it was written"):
        store.read(ref)


@pytest.mark.parametrize("value", [list(range(INLINE_LIMIT)), pd.DataFrame({"a": range(100)})],
                         ids=["json", "parquet"])
def test_tampered_json_and_parquet_files_are_refused(store: ResultStore, value: Any) -> None:
    ref = store.write(value)
    _flip_byte(ref.path, offset=len(Path(ref.path).read_bytes()) // 2)
    with pytest.raises(ResultIntegrityError, match="modified after it was written: the sha256"):
        store.read(ref)


def test_a_forged_digest_that_is_not_hex_is_refused(store: ResultStore) -> None:
    ref = store.write({1, 2})
    with pytest.raises(ResultIntegrityError, match="modified after it was written"):
        store.read(ResultRef(ref.format, ref.path, "é" * 64))


def test_a_tampered_inline_value_is_refused(store: ResultStore) -> None:
    ref = store.write({"n": 1})
    forged = ResultRef(ref.format, ref.path, ref.digest, '{"n":2}')
    with pytest.raises(ResultIntegrityError, match="inline JSON"):
        store.read(forged)


@pytest.mark.parametrize("value", [{"n": 1}, {1, 2}, pd.DataFrame({"a": [1]})], ids=["json", "pickle", "parquet"])
def test_a_missing_result_file_is_reported(store: ResultStore, value: Any) -> None:
    ref = store.write(value)
    os.unlink(ref.path)
    ref = ResultRef(ref.format, ref.path, ref.digest)  # without its inline copy
    with pytest.raises(ResultIntegrityError, match="is missing"):
        store.read(ref)


def test_unpicklable_results_raise_serialization_error(store: ResultStore) -> None:
    with pytest.raises(SerializationError) as info:
        store.write({"lock": threading.Lock()} | {"x": {1}})
    message = str(info.value)
    assert "builtins.dict" in message and "lock" in message
    assert "persist_result=False" in message
    with pytest.raises(SerializationError, match="_thread.lock"):
        store.write(threading.Lock())
