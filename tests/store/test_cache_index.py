"""The cache index: entries as files, safe keys, expiry, damage tolerated, fast hits."""

from __future__ import annotations

import json
import logging
import threading
import time
import timeit
from pathlib import Path

import pytest

from nbflow.store import records
from nbflow.store.cache_index import CacheEntry, CacheIndex
from nbflow.store.results import ResultRef, ResultStore

KEY = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4


@pytest.fixture
def index(tmp_path: Path) -> CacheIndex:
    return CacheIndex(tmp_path / "cache")


@pytest.fixture
def ref(tmp_path: Path) -> ResultRef:
    return ResultStore(tmp_path / "results").write({"answer": 42})


@pytest.fixture
def warnings_logged(caplog: pytest.LogCaptureFixture):
    """Records of nbflow.store.cache_index ("nbflow" does not propagate to the root logger)."""
    logger = logging.getLogger("nbflow.store.cache_index")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_put_then_get_returns_the_entry(index: CacheIndex, ref: ResultRef) -> None:
    put = index.put(KEY, ref, task_name="answer", task_run_id="run-1", expires=None)
    got = index.get(KEY)
    assert got == put
    assert (got.key, got.ref, got.task_name, got.task_run_id, got.expires) == (KEY, ref, "answer", "run-1", None)
    assert abs(got.created - time.time()) < 5
    assert index.path(KEY) == index.root / KEY[:2] / f"{KEY}.json"
    assert json.loads(index.path(KEY).read_text())["ref"]["inline"] == '{"answer":42}'
    assert index.get(OTHER) is None


def test_put_replaces_an_older_entry(index: CacheIndex, ref: ResultRef) -> None:
    index.put(KEY, ref, task_name="a", task_run_id="run-1", expires=None)
    index.put(KEY, ref, task_name="a", task_run_id="run-2", expires=None)
    assert index.get(KEY).task_run_id == "run-2"
    assert [p.name for p in index.path(KEY).parent.iterdir()] == [f"{KEY}.json"]  # no temporary files left


BAD_KEYS = ["../../etc/passwd", "../" + KEY, KEY.upper(), KEY + "/x", "ab", "", "g" * 64, KEY[:10] + "\x00" + KEY,
            " " + KEY, KEY + "\n", "a" * 200, None, 123]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=[repr(k)[:20] for k in BAD_KEYS])
def test_keys_that_are_not_hex_digests_are_rejected(index: CacheIndex, ref: ResultRef, bad) -> None:
    for call in (lambda: index.get(bad), lambda: index.delete(bad), lambda: index.path(bad),
                 lambda: index.put(bad, ref, task_name="t", task_run_id="r", expires=None)):
        with pytest.raises(ValueError, match="not a lowercase hex digest"):
            call()
    assert not index.root.exists() or not any(index.root.rglob("*.json"))


def test_expired_entries_are_misses_and_are_removed(index: CacheIndex, ref: ResultRef) -> None:
    index.put(KEY, ref, task_name="t", task_run_id="r", expires=time.time() - 1)
    assert index.get(KEY) is None
    assert not index.path(KEY).exists()
    index.put(OTHER, ref, task_name="t", task_run_id="r", expires=time.time() + 3600)
    assert index.get(OTHER) is not None
    entry = index.get(OTHER)
    assert not entry.is_expired() and entry.is_expired(now=entry.expires)


DAMAGED = [
    ("truncated", lambda text: text[: len(text) // 2]),
    ("not json", lambda text: "\x00\x01garbage"),
    ("empty", lambda text: ""),
    ("a list", lambda text: "[1, 2]"),
    ("missing field", lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "ref"})),
    ("bad ref", lambda text: json.dumps({**json.loads(text), "ref": {"format": "exe", "path": "/x", "digest": "0"}})),
    ("another key", lambda text: json.dumps({**json.loads(text), "key": OTHER})),
]


@pytest.mark.parametrize("damage", [c[1] for c in DAMAGED], ids=[c[0] for c in DAMAGED])
def test_a_damaged_entry_is_a_miss_with_a_warning(index: CacheIndex, ref: ResultRef, damage,
                                                   warnings_logged) -> None:
    index.put(KEY, ref, task_name="t", task_run_id="r", expires=None)
    path = index.path(KEY)
    path.write_text(damage(path.read_text()))
    assert index.get(KEY) is None
    assert "damaged cache entry" in warnings_logged.text and str(path) in warnings_logged.text
    index.put(KEY, ref, task_name="t", task_run_id="r", expires=None)  # the next run repairs it
    assert index.get(KEY) is not None


def test_an_entry_from_a_newer_nbflow_is_a_quiet_miss_and_kept(index: CacheIndex, ref: ResultRef,
                                                                  warnings_logged) -> None:
    entry = index.put(KEY, ref, task_name="t", task_run_id="r", expires=None)
    index.path(KEY).write_text(json.dumps({**entry.to_dict(), "v": 99, "new_field": 1}))
    assert index.get(KEY) is None
    assert index.path(KEY).exists() and warnings_logged.text == ""


def test_delete_clear_and_entries(index: CacheIndex, ref: ResultRef) -> None:
    assert index.clear() == 0
    index.put(KEY, ref, task_name="a", task_run_id="r1", expires=None)
    index.put(OTHER, ref, task_name="b", task_run_id="r2", expires=None)
    assert sorted(e.task_name for e in index.entries()) == ["a", "b"]
    assert index.delete(KEY) is True and index.delete(KEY) is False
    assert index.get(KEY) is None and index.get(OTHER) is not None
    assert index.clear() == 1
    assert list(index.entries()) == []
    assert Path(ref.path).exists()  # results are not the index's to delete


def test_an_entry_round_trips_and_maps_to_a_store_row(ref: ResultRef) -> None:
    entry = CacheEntry(KEY, ref, "t", "r", 1.5, 2.5)
    assert CacheEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    row = entry.as_row()
    assert len(row) == len(records.CACHE_COLUMNS)
    assert dict(zip(records.CACHE_COLUMNS, row)) == {
        "cache_key": KEY, "task_name": "t", "task_run_id": "r", "result_format": "json",
        "result_path": ref.path, "created": 1.5, "expires": 2.5}


def test_readers_never_see_half_an_entry_while_writers_replace_it(index: CacheIndex, ref: ResultRef,
                                                                   warnings_logged) -> None:
    big = ResultRef(ref.format, ref.path, ref.digest, json.dumps("x" * 20000))  # entries of ~20 kB
    index.put(KEY, big, task_name="t", task_run_id="r0", expires=None)
    stop = threading.Event()
    seen: list[str | None] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            index.put(KEY, big, task_name="t", task_run_id=f"r{i}", expires=None)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for w in writers:
        w.start()
    deadline = time.time() + 1.0
    while time.time() < deadline:
        entry = index.get(KEY)
        seen.append(entry.task_run_id if entry else None)
    stop.set()
    for w in writers:
        w.join()
    assert None not in seen and len(seen) > 100
    assert warnings_logged.text == ""


def test_a_hit_is_read_in_microseconds(index: CacheIndex, ref: ResultRef, tmp_path: Path) -> None:
    index.put(KEY, ref, task_name="answer", task_run_id="run-1", expires=time.time() + 3600)
    store = ResultStore(tmp_path / "results")
    assert store.read(index.get(KEY).ref) == {"answer": 42}
    n = 2000
    best = min(timeit.repeat(lambda: index.get(KEY), number=n, repeat=5)) / n
    assert best < 60e-6, f"a cache hit took {best * 1e6:.1f} us (target < 30 us)"
