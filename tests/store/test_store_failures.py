"""How the store fails: corrupt files, a lock held forever, a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from nbflow.errors import StoreBatchError, StoreCorruptedError, StoreError, StoreLockedError
from nbflow.store import records
from nbflow.store.embedded import DUCKDB_CONFIG, EmbeddedStore


def test_random_bytes_are_not_a_store(tmp_path: Path, rows) -> None:
    path = tmp_path / "nbflow.duckdb"
    original = os.urandom(300_000)
    path.write_bytes(original)
    store = EmbeddedStore(path, lock_timeout=2)

    with pytest.raises(StoreCorruptedError) as info:
        store.write(records.Batch(flow_runs=[rows.flow_run("f1")]))

    assert info.value.path == str(path)
    message = str(info.value)
    assert str(path) in message and "not a DuckDB database" in message
    assert "nbflow server database repair" in message and "nbflow server database reset --yes" in message
    assert path.read_bytes() == original  # nothing written into it
    with pytest.raises(StoreCorruptedError):
        store.query("SELECT 1")


def _data_extents(path: Path, table: str) -> tuple[dict[int, tuple[int, int]], int]:
    """block id -> (first, last) segment offset of `table`'s column data, and the block size."""
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        extents = {r[0]: (r[1], r[2]) for r in con.execute(
            "SELECT block_id, min(block_offset), max(block_offset) FROM pragma_storage_info(?) "
            "WHERE block_id >= 0 GROUP BY block_id", [table]).fetchall()}
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        return extents, block_size
    finally:
        con.close()


def test_flipped_bytes_in_a_real_store_are_reported(tmp_path: Path, rows) -> None:
    path = tmp_path / "nbflow.duckdb"
    store = EmbeddedStore(path, lock_timeout=2)
    store.write(records.Batch(flow_runs=[rows.flow_run(uuid.uuid4().hex) for _ in range(3000)]))
    assert not path.with_name(path.name + ".wal").exists()  # all of it is in the file
    extents, block_size = _data_extents(path, "flow_runs")
    assert extents
    # Flip 4 KiB in the middle of the flow_runs data (after the 12 KiB file header and each
    # block's 8-byte checksum). DuckDB checks checksums of the data it reads; flips in
    # unused space go unnoticed, and some flips in metadata crash DuckDB 1.5.6, so aim.
    with open(path, "r+b") as f:
        for block, (first, last) in extents.items():
            offset = 3 * 4096 + block * block_size + 8 + (first + last) // 2
            f.seek(offset)
            chunk = f.read(4096)
            f.seek(offset)
            f.write(bytes(b ^ 0xFF for b in chunk))

    with pytest.raises(StoreCorruptedError) as info:
        store.query("SELECT * FROM flow_runs")

    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "nbflow server database repair" in str(info.value)
    with pytest.raises(StoreCorruptedError):
        store.write(records.Batch(flow_runs=[rows.flow_run(uuid.uuid4().hex) for _ in range(10)]))


_HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def test_lock_held_forever_gives_up_after_the_timeout(tmp_path: Path, rows) -> None:
    path = tmp_path / "nbflow.duckdb"
    store = EmbeddedStore(path, lock_timeout=1.0)
    store.write(records.Batch(flow_runs=[rows.flow_run("before")]))
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as info:
            store.write(records.Batch(flow_runs=[rows.flow_run("during")]))
        waited = time.monotonic() - started

        assert 1.0 <= waited < 1.0 + 2.0
        assert not isinstance(info.value, StoreBatchError)
        assert info.value.pid == holder.pid
        message = str(info.value)
        assert f"PID {holder.pid}" in message and str(path) in message
        assert "nbflow server start" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    # Once the holder is gone the store works and lost nothing.
    store.write(records.Batch(flow_runs=[rows.flow_run("after")]))
    ids = store.query("SELECT id FROM flow_runs ORDER BY id")["id"].tolist()
    assert ids == ["after", "before"]


def test_a_short_lock_is_waited_out(tmp_path: Path, rows) -> None:
    path = tmp_path / "nbflow.duckdb"
    store = EmbeddedStore(path, lock_timeout=20.0)
    store.write(records.Batch(flow_runs=[rows.flow_run("before")]))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK.replace("time.sleep(600)", "time.sleep(0.5)"), str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        store.write(records.Batch(flow_runs=[rows.flow_run("during")]))
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()
    assert len(store.query("SELECT id FROM flow_runs")) == 2


def test_full_disk_rolls_back_and_keeps_what_was_committed(small_disk: Path) -> None:
    store = EmbeddedStore(small_disk / "nbflow.duckdb", lock_timeout=2)
    committed = 0
    error = None
    for batch_no in range(200):
        run_id = f"run-{batch_no}"
        batch = records.Batch(logs=[
            (run_id, i, run_id, None, 20, "INFO", "x", os.urandom(100).hex(), time.time())
            for i in range(2000)])
        try:
            store.write(batch)
        except StoreError as exc:
            error = exc
            break
        committed += 2000
    assert error is not None, "the 6 MiB disk never filled up"
    assert committed > 0

    message = str(error)
    assert "disk" in message and "full" in message and str(small_disk) in message
    assert not isinstance(error, (StoreCorruptedError, StoreLockedError, StoreBatchError))  # retry it
    # Everything acknowledged before the disk filled up is still there, nothing of the failed batch.
    counts = store.query("SELECT count(*) AS n, count(DISTINCT run_id) AS runs FROM logs")
    assert counts["n"].iloc[0] == committed
    assert counts["runs"].iloc[0] == committed // 2000
