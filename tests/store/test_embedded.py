"""EmbeddedStore on real DuckDB files: round trips, idempotence, volume, crash detection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from nbflow.errors import StoreBatchError
from nbflow.store import liveness, records
from nbflow.store.embedded import EmbeddedStore


def _count(store: EmbeddedStore, table: str) -> int:
    return int(store.query(f"SELECT count(*) AS n FROM {table}")["n"].iloc[0])


def test_write_then_query_round_trip(store: EmbeddedStore, rows) -> None:
    start = 1_700_000_000.25
    batch = records.Batch(
        flow_runs=[rows.flow_run("f1", start=start, parameters={"n": 3})],
        task_runs=[rows.task_run("t1", "f1", upstream=["t0"])],
        state_history=[rows.state("f1", 1), rows.state("f1", 2, "Completed", "COMPLETED")],
        logs=[rows.log("f1", 1, flow_run_id="f1", message="started")],
        cache_entries=[("key-1", "extract", "t1", "json", "/tmp/r.json", start, None)],
    )
    store.write(batch)

    flow = store.query("SELECT * FROM flow_runs").iloc[0]
    assert flow["id"] == "f1" and flow["state"] == "Completed"
    assert flow["parameters"] == '{"n": 3}'
    assert flow["start_time"].timestamp() == pytest.approx(start, abs=1e-6)  # naive UTC
    assert flow["duration_s"] == 2.0 and flow["pid"] == os.getpid()
    assert store.query("SELECT upstream FROM task_runs")["upstream"].tolist() == ['["t0"]']
    assert _count(store, "state_history") == 2
    assert store.query("SELECT message FROM logs")["message"].tolist() == ["started"]
    cache = store.query("SELECT result_path FROM cache_entries")
    assert cache["result_path"].tolist() == ["/tmp/r.json"]


def test_query_binds_parameters(store: EmbeddedStore, rows) -> None:
    store.write(records.Batch(flow_runs=[rows.flow_run("f1"), rows.flow_run("f2", flow_name="x")]))
    df = store.query("SELECT id FROM flow_runs WHERE flow_name = ?", ["x"])
    assert df["id"].tolist() == ["f2"]
    assert store.query("SELECT id FROM flow_runs WHERE flow_name = ?", ["x' OR '1'='1"]).empty


def test_upsert_keeps_the_last_snapshot(store: EmbeddedStore, rows) -> None:
    running = rows.flow_run("f1", state="Running")
    done = rows.flow_run("f1", state="Completed")
    # Successive snapshots of one run in one batch: the last wins.
    store.write(records.Batch(flow_runs=[running, done],
                              task_runs=[rows.task_run("t1", "f1", state="Running"),
                                         rows.task_run("t1", "f1", state="Failed")]))
    assert store.query("SELECT state FROM flow_runs")["state"].tolist() == ["Completed"]
    assert store.query("SELECT state FROM task_runs")["state"].tolist() == ["Failed"]
    # A later batch replaces the stored snapshot.
    store.write(records.Batch(flow_runs=[rows.flow_run("f1", state="Failed")]))
    assert store.query("SELECT state FROM flow_runs")["state"].tolist() == ["Failed"]


def test_a_batch_written_twice_leaves_no_duplicates(store: EmbeddedStore, rows) -> None:
    batch = records.Batch(
        flow_runs=[rows.flow_run("f1")],
        task_runs=[rows.task_run("t1", "f1")],
        state_history=[rows.state("f1", 1), rows.state("f1", 1)],  # duplicate inside the batch too
        logs=[rows.log("f1", i, flow_run_id="f1") for i in range(5)],
        cache_entries=[("k", "extract", "t1", "json", "/r", time.time(), None)],
    )
    store.write(batch)
    store.write(batch)  # at-least-once: a retry of an already committed batch

    assert [_count(store, t) for t in records.TABLES] == [1, 1, 1, 5, 1]


def test_history_and_logs_are_appended_once_per_run_and_seq(store: EmbeddedStore, rows) -> None:
    store.write(records.Batch(
        state_history=[rows.state("a", 1, "Pending", "PENDING"), rows.state("a", 2)],
        logs=[rows.log("a", 1, flow_run_id="a", message="first")]))
    store.write(records.Batch(
        # (a, 2) is stored: ignored, even with other values; (a, 3) and (b, 2) are new.
        state_history=[rows.state("a", 2, "Failed", "FAILED"), rows.state("a", 3, "Completed", "COMPLETED"),
                       rows.state("b", 2)],
        logs=[rows.log("a", 1, flow_run_id="a", message="retry"), rows.log("b", 1, flow_run_id="b"),
              rows.log("a", 2, flow_run_id="a", message="second"),
              rows.log("a", 2, flow_run_id="a", message="duplicate in the batch")]))

    history = store.query("SELECT run_id, seq, state FROM state_history ORDER BY run_id, seq")
    assert history.values.tolist() == [["a", 1, "Pending"], ["a", 2, "Running"],
                                       ["a", 3, "Completed"], ["b", 2, "Running"]]
    logs = store.query("SELECT run_id, seq, message FROM logs ORDER BY run_id, seq")
    assert logs.values.tolist() == [["a", 1, "first"], ["a", 2, "second"], ["b", 1, "hello"]]


def test_upserts_replace_across_many_batches_without_keys(store: EmbeddedStore, rows) -> None:
    for state in ("Pending", "Running", "Completed"):
        store.write(records.Batch(
            flow_runs=[rows.flow_run(f"f{i}", state=state) for i in range(50)],
            task_runs=[rows.task_run(f"t{i}", f"f{i % 50}",
                                     state="Failed" if state == "Completed" else state)
                       for i in range(200)],
            cache_entries=[(f"k{i}", "extract", f"t{i}", "json", f"/{state}", time.time(), None)
                           for i in range(10)]))
    assert store.query("SELECT DISTINCT state FROM flow_runs")["state"].tolist() == ["Completed"]
    assert store.query("SELECT DISTINCT state FROM task_runs")["state"].tolist() == ["Failed"]
    paths = store.query("SELECT DISTINCT result_path FROM cache_entries")["result_path"]
    assert paths.tolist() == ["/Completed"]
    assert [_count(store, t) for t in ("flow_runs", "task_runs", "cache_entries")] == [50, 200, 10]


def test_threads_of_one_process_take_turns(store: EmbeddedStore, rows) -> None:
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for b in range(5):
                run_id = f"t{t}-b{b}"
                store.write(records.Batch(flow_runs=[rows.flow_run(run_id)],
                                          logs=[rows.log(run_id, i, flow_run_id=run_id)
                                                for i in range(10)]))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert (_count(store, "flow_runs"), _count(store, "logs")) == (30, 300)


def test_empty_batch_does_not_create_the_file(store: EmbeddedStore) -> None:
    store.write(records.Batch())
    assert not store.path.exists()


def test_bad_row_is_refused_before_anything_is_written(store: EmbeddedStore, rows) -> None:
    with pytest.raises(StoreBatchError, match="flow_runs row has 2 values"):
        store.write(records.Batch(flow_runs=[rows.flow_run("ok"), ("short", "row")]))
    with pytest.raises(StoreBatchError, match=r"flow_runs\.start_time .*'yesterday'"):
        store.write(records.Batch(flow_runs=[rows.flow_run("f", start_time="yesterday")]))
    with pytest.raises(StoreBatchError, match=r"logs row has no run_id or seq"):
        store.write(records.Batch(logs=[rows.log("f", None, flow_run_id="f")]))
    with pytest.raises(StoreBatchError, match=r"task_runs row has no id"):
        store.write(records.Batch(task_runs=[rows.task_run(None, "f")]))
    assert not store.path.exists()


def test_a_failing_batch_writes_nothing(store: EmbeddedStore, rows) -> None:
    store.write(records.Batch(flow_runs=[rows.flow_run("kept")]))
    bad = records.Batch(flow_runs=[rows.flow_run("new")],  # inserted first, then rolled back
                        task_runs=[rows.task_run("t1", "new", dynamic_key=2**40)])  # > INTEGER

    with pytest.raises(StoreBatchError, match="Nothing of this transaction was written"):
        store.write(bad)  # DuckDB refuses the value: the batch's fault, not the store's

    assert store.query("SELECT id FROM flow_runs")["id"].tolist() == ["kept"]
    assert _count(store, "task_runs") == 0


def test_100k_row_batch(store: EmbeddedStore, rows) -> None:
    run_ids = [uuid.uuid4().hex for _ in range(1000)]
    now = time.time()
    batch = records.Batch(
        flow_runs=[rows.flow_run(run_ids[0])],
        task_runs=[rows.task_run(uuid.uuid4().hex, run_ids[0]) for _ in range(10_000)],
        state_history=[(r, s, "task", "Running", "RUNNING", None, now)
                       for r in run_ids for s in range(20)],
        logs=[(r, s, run_ids[0], r, 20, "INFO", "nbflow", f"line {s}", now)
              for r in run_ids for s in range(70)],
    )
    assert len(batch) > 100_000

    started = time.perf_counter()
    store.write(batch)
    elapsed = time.perf_counter() - started

    counts = [_count(store, t) for t in ("task_runs", "state_history", "logs")]
    assert counts == [10_000, 20_000, 70_000]
    assert elapsed < 15, f"{len(batch)} rows took {elapsed:.1f} s"


# -- crash detection ------------------------------------------------------------------------

def _exited_process() -> tuple[int, float]:
    """The pid and start time of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        started = liveness.process_start_time(proc.pid)
    finally:
        proc.communicate(timeout=30)
    assert not liveness.is_process_alive(proc.pid, started)
    return proc.pid, started


def test_runs_of_an_exited_process_are_marked_crashed(store: EmbeddedStore, rows) -> None:
    dead_pid, dead_start = _exited_process()
    me = liveness.process_start_time(os.getpid())
    store.write(records.Batch(
        flow_runs=[
            rows.flow_run("dead-run", state="Running", pid=dead_pid, process_start=dead_start),
            rows.flow_run("dead-pending", state="Pending", pid=dead_pid, process_start=dead_start),
            rows.flow_run("live-run", state="Running", pid=os.getpid(), process_start=me),
            rows.flow_run("other-host", state="Running", pid=dead_pid, host="elsewhere"),
            rows.flow_run("done", state="Completed", pid=dead_pid, process_start=dead_start),
        ],
        task_runs=[rows.task_run("t-running", "dead-run", state="Running"),
                   rows.task_run("t-done", "dead-run", state="Completed"),
                   rows.task_run("t-live", "live-run", state="Running")],
        state_history=[rows.state("dead-run", 1, "Pending", "PENDING"), rows.state("dead-run", 2)],
    ))
    # That write's own open ran before its rows existed; the next open finds them.
    states = store.query("SELECT id, state, state_type, state_message, end_time, duration_s "
                         "FROM flow_runs ORDER BY id").set_index("id")

    assert states.loc["dead-run", "state"] == "Crashed"
    assert states.loc["dead-run", "state_type"] == "CRASHED"
    assert states.loc["dead-run", "state_message"] == (
        f"Process {dead_pid} on {socket.gethostname()} exited before the run finished")
    assert states.loc["dead-run", "end_time"] is not None
    assert states.loc["dead-run", "duration_s"] == pytest.approx(10, abs=5)
    assert states.loc["dead-pending", "state"] == "Crashed"
    assert states.loc["live-run", "state"] == "Running"
    assert states.loc["other-host", "state"] == "Running"  # cannot judge another host's pids
    assert states.loc["done", "state"] == "Completed"

    tasks = store.query("SELECT id, state FROM task_runs").set_index("id")["state"].to_dict()
    assert tasks == {"t-running": "Crashed", "t-done": "Completed", "t-live": "Running"}

    history = store.query("SELECT run_id, seq, run_kind, state FROM state_history "
                          "WHERE state = 'Crashed' ORDER BY run_id")
    assert history.values.tolist() == [["dead-pending", 1, "flow", "Crashed"],
                                       ["dead-run", 3, "flow", "Crashed"],
                                       ["t-running", 1, "task", "Crashed"]]
    # Marking is done once: a further open finds nothing more to do.
    store.query("SELECT 1")
    assert _count(store, "state_history") == 5


def test_a_reused_pid_is_not_mistaken_for_the_run_owner(store: EmbeddedStore, rows) -> None:
    me = liveness.process_start_time(os.getpid())
    if me is None:
        pytest.skip("process start times are only known on Linux")
    store.write(records.Batch(flow_runs=[
        rows.flow_run("old-owner", state="Running", pid=os.getpid(), process_start=me - 3600)]))
    assert store.query("SELECT state FROM flow_runs")["state"].tolist() == ["Crashed"]


def test_liveness_of_this_process() -> None:
    me = liveness.process_start_time(os.getpid())
    assert liveness.is_process_alive(os.getpid(), me)
    assert liveness.is_process_alive(os.getpid(), None)
    assert liveness.is_process_alive(os.getpid(), 0.0)  # unknown start time: pid check only
    if me is not None:
        assert abs(me - time.time()) < 24 * 3600 * 365
        assert not liveness.is_process_alive(os.getpid(), me + 60)


def test_reset_deletes_the_file(store: EmbeddedStore, rows) -> None:
    store.write(records.Batch(flow_runs=[rows.flow_run("f1")]))
    assert store.path.exists()
    store.reset()
    assert not store.path.exists()
    assert not store.path.with_name(store.path.name + ".wal").exists()
    assert _count(store, "flow_runs") == 0  # a fresh store afterwards
