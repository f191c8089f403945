"""Processes taking turns on one store file lose no acknowledged write.

This is the test that guards the duckdb pin: duckdb 2.0.0 lost acknowledged writes
when processes took turns opening a file (shared/research/FINDINGS.md). Run it
against any new duckdb version before lifting the pin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbflow.store.embedded import EmbeddedStore

pytestmark = pytest.mark.slow

#: argv: path, process number, batches, rows per batch. Waits for "go" on stdin so that
#: all writers start together, writes its batches, reads now and then, prints "done".
_WRITER = """
import sys, time
from pathlib import Path
from nbflow.store import records
from nbflow.store.embedded import EmbeddedStore

path, proc, batches, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = EmbeddedStore(path, lock_timeout=60)
print("ready", flush=True)
sys.stdin.readline()
for b in range(batches):
    run_id = f"p{proc}-b{b}"
    now = time.time()
    flow_run = dict.fromkeys(records.FLOW_RUN_COLUMNS)
    flow_run.update(id=run_id, flow_name=f"writer-{proc}", state="Completed",
                    state_type="COMPLETED", start_time=now, created=now, updated=now)
    store.write(records.Batch(
        flow_runs=[tuple(flow_run[c] for c in records.FLOW_RUN_COLUMNS)],
        logs=[(run_id, i, run_id, None, 20, "INFO", "w", f"{run_id} line {i}", now)
              for i in range(size)],
    ))
    if b % 10 == 9:
        store.query("SELECT count(*) FROM logs")
print("done", flush=True)
"""


def _run_writers(path: Path, env: dict, processes: int, batches: int, size: int) -> None:
    procs = [subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(p), str(batches), str(size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) for p in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0 and out.strip() == "done", err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if not stream.closed:
                    stream.close()


def _assert_every_row(store: EmbeddedStore, processes: int, batches: int, size: int) -> None:
    runs = store.query("SELECT id FROM flow_runs")["id"]
    expected_runs = {f"p{p}-b{b}" for p in range(processes) for b in range(batches)}
    assert set(runs) == expected_runs and len(runs) == len(expected_runs)
    logs = store.query("SELECT run_id, count(*) AS n, count(DISTINCT seq) AS seqs FROM logs "
                       "GROUP BY run_id")
    assert set(logs["run_id"]) == expected_runs
    assert (logs["n"] == size).all() and (logs["seqs"] == size).all()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path, child_env: dict) -> None:
    store = EmbeddedStore(tmp_path / "nbflow.duckdb", lock_timeout=30)
    _run_writers(store.path, child_env, processes=2, batches=20, size=50)
    _assert_every_row(store, processes=2, batches=20, size=50)


def test_four_processes_taking_turns_count_every_row(tmp_path: Path, child_env: dict) -> None:
    store = EmbeddedStore(tmp_path / "nbflow.duckdb", lock_timeout=30)
    _run_writers(store.path, child_env, processes=4, batches=50, size=20)
    _assert_every_row(store, processes=4, batches=50, size=20)
    assert int(store.query("SELECT count(*) AS n FROM logs")["n"].iloc[0]) == 4 * 50 * 20
