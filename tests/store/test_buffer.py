"""The recorder's flush: store trouble keeps rows for a retry, a refused batch is quarantined."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import pytest

from nbflow.errors import StoreBatchError, StoreError, StoreLockedError
from nbflow.store import records
from nbflow.store.buffer import Recorder, load_quarantined
from nbflow.store.embedded import EmbeddedStore


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture):
    """Records of nbflow.store ("nbflow" does not propagate to the root logger)."""
    logger = logging.getLogger("nbflow.store")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="nbflow.store")
    yield caplog
    logger.removeHandler(caplog.handler)


def _entry(rec: Recorder, key: str, created: object = None) -> None:
    """Buffer one cache entry (the one kind of row that needs no run object)."""
    rec.cache_entry(key, "extract", f"run-{key}", "json", f"/results/{key}.json",
                    time.time() if created is None else created, None)


def _keys(store: EmbeddedStore) -> list[str]:
    return store.query("SELECT cache_key FROM cache_entries ORDER BY cache_key")["cache_key"].tolist()


def _quarantined(home: Path) -> list[Path]:
    folder = home / "quarantine"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_refused_batch_is_quarantined_and_later_batches_go_through(
        store: EmbeddedStore, nbflow_home: Path, errors_logged) -> None:
    rec = Recorder(write=store.write)
    _entry(rec, "good-1")
    _entry(rec, "bad", created="yesterday")  # not an epoch: the store refuses the batch

    assert rec.flush() == 0  # no exception: the batch is set aside, not retried forever

    [path] = _quarantined(nbflow_home)
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-{os.getpid()}\.json", path.name)
    saved = json.loads(path.read_text())
    assert saved["error"].startswith("StoreBatchError: ") and "'yesterday'" in saved["error"]
    assert saved["pid"] == os.getpid()
    assert saved["tables"]["cache_entries"]["columns"] == list(records.CACHE_COLUMNS)
    assert [r[0] for r in saved["tables"]["cache_entries"]["rows"]] == ["good-1", "bad"]
    batch = load_quarantined(path)  # rows come back in records order, ready to fix and write
    assert [r[0] for r in batch.cache_entries] == ["good-1", "bad"] and len(batch) == 2

    errors = {r.getMessage() for r in errors_logged.records if r.levelno == logging.ERROR}
    assert len(errors) == 1  # one message (caplog may see the record through two handlers)
    [error] = errors
    assert str(path) in error and "'yesterday'" in error
    assert len(rec._pending) == 0

    _entry(rec, "good-2")
    assert rec.flush() == 1
    assert _keys(store) == ["good-2"]
    assert len(_quarantined(nbflow_home)) == 1


def test_a_locked_store_keeps_the_batch_for_the_next_try(store: EmbeddedStore, nbflow_home: Path) -> None:
    calls: list[int] = []

    def locked_once(batch: records.Batch) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise StoreLockedError("held by PID 1", pid=1)
        store.write(batch)

    rec = Recorder(write=locked_once)
    _entry(rec, "a")
    with pytest.raises(StoreLockedError):
        rec.flush()
    assert len(rec._pending) == 1

    _entry(rec, "b")
    assert rec.flush() == 2
    assert _keys(store) == ["a", "b"] and calls == [1, 2]
    assert _quarantined(nbflow_home) == []


@pytest.mark.parametrize("error", [
    StoreError("The disk holding the run store is full"),
    OSError(28, "No space left on device"),
    MemoryError(),
], ids=["store error", "OSError", "MemoryError"])
def test_errors_of_the_store_or_machine_are_retried_not_quarantined(error: BaseException,
                                                                    nbflow_home: Path) -> None:
    def fail(batch: records.Batch) -> None:
        raise error

    rec = Recorder(write=fail)
    _entry(rec, "a")
    with pytest.raises(type(error)):
        rec.flush()
    assert len(rec._pending) == 1 and _quarantined(nbflow_home) == []


def test_an_error_caused_by_an_os_error_is_retried(nbflow_home: Path) -> None:
    def fail(batch: records.Batch) -> None:
        try:
            raise OSError(5, "Input/output error")
        except OSError as exc:
            raise RuntimeError("could not write") from exc

    rec = Recorder(write=fail)
    _entry(rec, "a")
    with pytest.raises(RuntimeError):
        rec.flush()
    assert len(rec._pending) == 1 and _quarantined(nbflow_home) == []


def test_a_bug_on_the_way_to_the_store_is_quarantined(nbflow_home: Path, errors_logged) -> None:
    def buggy(batch: records.Batch) -> None:
        raise TypeError("unsupported operand type(s)")

    rec = Recorder(write=buggy)
    _entry(rec, "a")
    assert rec.flush() == 0
    [path] = _quarantined(nbflow_home)
    assert "TypeError: unsupported operand" in json.loads(path.read_text())["error"]
    assert len(rec._pending) == 0


def test_only_the_refused_part_is_quarantined_when_kept_rows_are_retried(
        store: EmbeddedStore, nbflow_home: Path) -> None:
    attempts: list[list[str]] = []

    def write(batch: records.Batch) -> None:
        attempts.append([r[0] for r in batch.cache_entries])
        if len(attempts) == 1:
            raise StoreLockedError("held", pid=1)
        store.write(batch)

    rec = Recorder(write=write)
    _entry(rec, "kept")
    with pytest.raises(StoreLockedError):
        rec.flush()
    _entry(rec, "fresh-good")
    _entry(rec, "fresh-bad", created="soon")

    assert rec.flush() == 1  # the kept row is written on its own
    assert _keys(store) == ["kept"]
    [path] = _quarantined(nbflow_home)
    assert [r[0] for r in load_quarantined(path).cache_entries] == ["fresh-good", "fresh-bad"]
    assert attempts == [["kept"], ["kept", "fresh-good", "fresh-bad"], ["kept"],
                        ["fresh-good", "fresh-bad"]]
    assert len(rec._pending) == 0


def test_a_batch_that_cannot_be_quarantined_stays_pending(nbflow_home: Path, errors_logged) -> None:
    (nbflow_home / "quarantine").write_text("a file where the folder should be")

    def refuse(batch: records.Batch) -> None:
        raise StoreBatchError("bad row")

    rec = Recorder(write=refuse)
    _entry(rec, "a")
    with pytest.raises(StoreBatchError):
        rec.flush()
    assert len(rec._pending) == 1
    assert any("could not quarantine" in r.getMessage() for r in errors_logged.records)
