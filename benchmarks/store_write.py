"""Write and read latency of the embedded DuckDB run store, on an empty and on a big store.

Measures, through EmbeddedStore (each call opens the file, does one transaction, closes it):
  * a small batch (1 flow run + 20 task runs + 60 state-history rows + 10 logs): open + write +
    close latency, median and p90, on an empty store and on a store with --runs flow runs and
    10x as many task runs, history rows and logs (100k / 1M / 1M / 1M by default);
  * a 100k-row mixed batch (1 flow run, 10k task runs, 20k history rows, 70k logs): rows/s,
    into an empty store and into the big one;
  * the big store's file size;
  * `SELECT <runs columns> FROM flow_runs ORDER BY coalesce(start_time, created) DESC LIMIT 100`:
    open + query + close latency (median, p90, p99) on the big store.

Prints one summary line (and, with --json, the figures as JSON): wall-clock percentiles and,
in brackets, the median CPU time of the process (all DuckDB threads), which is the figure to
compare when other work shares the machine. It measures whichever nbflow is imported, so the
same script compares two versions:

    python benchmarks/store_write.py                               # this checkout
    PYTHONPATH=/tmp/nbflow-old python benchmarks/store_write.py    # e.g. `git archive` of HEAD

--keep DIR leaves the big store in DIR (to time a migration of it, say). Timings on a shared
machine are noisy: the small batches are timed --reps times each, and medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the nbflow of this checkout, unless
    root = str(Path(__file__).resolve().parent.parent)  # PYTHONPATH already names one
    if not os.environ.get("PYTHONPATH"):
        sys.path.insert(0, root)

import duckdb  # noqa: E402

from nbflow.store import embedded, records, schema  # noqa: E402
from nbflow.store.embedded import EmbeddedStore  # noqa: E402

RUNS_SQL = ("SELECT id, flow_name, state, start_time, end_time, duration_s, parameters, tags, "
            "run_count, state_type, host, pid FROM flow_runs "
            "ORDER BY coalesce(start_time, created) DESC NULLS LAST, id LIMIT 100")
T0 = 1_780_000_000.0  # run times start here and grow by a second per flow run


#: --ordered-ids: ids that sort in creation order (a time-like prefix), as UUIDv7 would be.
ORDERED_IDS = False


def _rid(flow: int, task: int | None = None) -> str:
    """32 hex digits like the engine's run ids: random-looking, unique per (flow, task); with
    ORDERED_IDS a prefix that grows with creation order, then random digits."""
    import hashlib

    digest = hashlib.md5(f"{flow}-{task}".encode()).hexdigest()
    if not ORDERED_IDS:
        return digest
    return f"{flow * 1000 + (0 if task is None else task + 1):012x}{digest[:20]}"


def flow_row(n: int, state: str = "Completed") -> tuple:
    start = T0 + n
    v = dict.fromkeys(records.FLOW_RUN_COLUMNS)
    v.update(id=_rid(n), flow_name=f"flow-{n % 20}", name=f"flow-{n % 20}-{n}",
             flow_version="1", state=state, state_type=state.upper(), parameters='{"n": %d}' % n,
             tags='["nightly"]', run_count=1, start_time=start, end_time=start + 2,
             duration_s=2.0, host="bench-host", pid=12345, process_start=T0 - 100,
             created=start - 0.01, updated=start + 2)
    return tuple(v[c] for c in records.FLOW_RUN_COLUMNS)


def task_row(flow: int, t: int) -> tuple:
    start = T0 + flow + t * 0.01
    v = dict.fromkeys(records.TASK_RUN_COLUMNS)
    v.update(id=_rid(flow, t), flow_run_id=_rid(flow), task_name=f"task-{t % 7}",
             task_key=f"task-{t % 7}-key", dynamic_key=t, state="Completed",
             state_type="COMPLETED", upstream="[]", tags="[]", run_count=1, start_time=start,
             end_time=start + 0.005, duration_s=0.005, created=start, updated=start + 0.005)
    return tuple(v[c] for c in records.TASK_RUN_COLUMNS)


def history_row(run_id: str, seq: int, ts: float, kind: str = "task") -> tuple:
    state, type_ = (("Pending", "PENDING"), ("Running", "RUNNING"), ("Completed", "COMPLETED"))[seq % 3]
    return (run_id, seq, kind, state, type_, None, ts)


def log_row(run_id: str, flow_id: str, seq: int, ts: float) -> tuple:
    return (run_id, seq, flow_id, run_id, 20, "INFO", "nbflow.task",
            f"processed chunk {seq} of {run_id[:8]}", ts)


def small_batch(n: int) -> records.Batch:
    """Flow run n: 1 flow run, 20 task runs, 60 history rows (3 per task), 10 logs."""
    fid = _rid(n)
    tasks = [task_row(n, t) for t in range(20)]
    return records.Batch(
        flow_runs=[flow_row(n)],
        task_runs=tasks,
        state_history=[history_row(t[0], s, T0 + n, "task") for t in tasks for s in (1, 2, 3)],
        logs=[log_row(fid, fid, s, T0 + n + s * 0.001) for s in range(1, 11)],
    )


def fill_batch(first: int, runs: int, per_run: int) -> records.Batch:
    """Flow runs first .. first+runs-1, each with per_run task runs, history rows and logs."""
    batch = records.Batch()
    for n in range(first, first + runs):
        fid = _rid(n)
        batch.flow_runs.append(flow_row(n))
        for t in range(per_run):
            row = task_row(n, t)
            batch.task_runs.append(row)
            batch.state_history.append(history_row(row[0], 1, row[16] or 0.0))
            batch.logs.append(log_row(row[0], fid, 1, row[16] or 0.0))
    return batch


def big_mixed_batch(n: int) -> records.Batch:
    """~100k rows: 1 flow run, 10k task runs, 20k history rows, 70k logs (as tests/store)."""
    fid = _rid(n)
    tasks = [task_row(n, t) for t in range(10_000)]
    return records.Batch(
        flow_runs=[flow_row(n)],
        task_runs=tasks,
        state_history=[history_row(tasks[i % 1000][0], 1 + i // 1000, T0 + n) for i in range(20_000)],
        logs=[log_row(tasks[i % 1000][0], fid, 1 + i // 1000, T0 + n) for i in range(70_000)],
    )


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _ms(timings: list[tuple[float, float]]) -> dict[str, float]:
    """Wall-clock percentiles, and the median CPU time of this process (all its threads): CPU
    time is what to compare when other work shares the machine."""
    values = [wall for wall, _ in timings]
    return {"p50_ms": round(statistics.median(values) * 1e3, 1),
            "p90_ms": round(_pct(values, 0.9) * 1e3, 1),
            "p99_ms": round(_pct(values, 0.99) * 1e3, 1),
            "max_ms": round(max(values) * 1e3, 1),
            "cpu_p50_ms": round(statistics.median(cpu for _, cpu in timings) * 1e3, 1)}


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of fn()."""
    cpu = time.process_time()
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started, time.process_time() - cpu


def _size_mb(path: Path) -> float:
    wal = path.with_name(path.name + ".wal")
    return round((path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="flow runs in the big store")
    parser.add_argument("--per-run", type=int, default=10,
                        help="task runs, history rows and logs per flow run in the big store")
    parser.add_argument("--reps", type=int, default=40, help="small batches timed per store")
    parser.add_argument("--query-reps", type=int, default=100, help="queries timed")
    parser.add_argument("--chunk", type=int, default=10_000, help="flow runs per fill batch")
    parser.add_argument("--keep", type=Path, help="keep the big store in this directory")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--ordered-ids", action="store_true",
                        help="run ids that sort in creation order (what-if; the engine's are random)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a DuckDB setting of the store's connections (experiments)")
    args = parser.parse_args()
    global ORDERED_IDS
    ORDERED_IDS = args.ordered_ids
    for item in args.set:
        key, _, value = item.partition("=")
        embedded.DUCKDB_CONFIG[key] = value

    work = Path(tempfile.mkdtemp(prefix="nbflow-store-bench-"))
    out: dict = {"schema": schema.SCHEMA_VERSION, "duckdb": duckdb.__version__,
                 "ordered_ids": ORDERED_IDS,
                 "config": {k: v for k, v in embedded.DUCKDB_CONFIG.items() if "extensions" not in k}}
    try:
        # 1. small batches into an empty store
        empty = EmbeddedStore(work / "empty.duckdb", lock_timeout=60)
        base = 10 * args.runs  # small-batch run numbers never clash with the fill's
        empty.write(small_batch(base))  # creates the file and schema: not timed
        out["small_empty"] = _ms([_timed(lambda i=i: empty.write(small_batch(base + 1 + i)))
                                  for i in range(args.reps)])

        # 2. a 100k-row batch into an empty store
        mixed = big_mixed_batch(base + 5000)
        fresh = EmbeddedStore(work / "mixed.duckdb", lock_timeout=60)
        fresh.query("SELECT 1")
        seconds = _timed(lambda: fresh.write(mixed))[0]
        out["batch_100k_empty_rows_s"] = round(len(mixed) / seconds)

        # 3. fill the big store
        big = EmbeddedStore(work / "big.duckdb", lock_timeout=600)
        rows = 0
        started = time.perf_counter()
        for first in range(0, args.runs, args.chunk):
            batch = fill_batch(first, min(args.chunk, args.runs - first), args.per_run)
            rows += len(batch)
            big.write(batch)
        out["fill_s"] = round(time.perf_counter() - started, 1)
        out["fill_rows"] = rows
        out["file_mb"] = _size_mb(big.path)

        # 4. small batches into the big store
        out["small_big"] = _ms([_timed(lambda i=i: big.write(small_batch(base + 100 + i)))
                                for i in range(args.reps)])
        # the same batch again (at-least-once retry: every row already stored)
        again = small_batch(base + 100)
        out["small_big_rewrite"] = _ms([_timed(lambda: big.write(again)) for _ in range(args.reps // 2)])

        # 5. latest 100 runs from the big store
        big.query(RUNS_SQL)
        out["runs_query"] = _ms([_timed(lambda: big.query(RUNS_SQL)) for _ in range(args.query_reps)])

        # 6. a 100k-row batch into the big store
        seconds = _timed(lambda: big.write(big_mixed_batch(base + 6000)))[0]
        out["batch_100k_big_rows_s"] = round(len(mixed) / seconds)
        out["file_mb_end"] = _size_mb(big.path)
        counts = big.query("SELECT (SELECT count(*) FROM flow_runs) f, (SELECT count(*) FROM task_runs) t, "
                           "(SELECT count(*) FROM state_history) h, (SELECT count(*) FROM logs) l")
        out["rows_end"] = [int(x) for x in counts.iloc[0].tolist()]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(big.path, args.keep / big.path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    s, b, r, q = out["small_empty"], out["small_big"], out["small_big_rewrite"], out["runs_query"]
    settings = " ".join(f"{k}={v}" for k, v in out["config"].items())
    ids = " ordered-ids" if ORDERED_IDS else ""
    print(f"store_write schema=v{out['schema']} duckdb={out['duckdb']} {settings}{ids}: "
          f"small batch empty p50 {s['p50_ms']} / p90 {s['p90_ms']} ms (cpu {s['cpu_p50_ms']}); "
          f"at {args.runs:,} runs p50 {b['p50_ms']} / p90 {b['p90_ms']} ms (cpu {b['cpu_p50_ms']}; "
          f"rewrite p50 {r['p50_ms']} ms); 100k-row batch {out['batch_100k_empty_rows_s']:,} rows/s "
          f"empty, {out['batch_100k_big_rows_s']:,} at {args.runs:,} runs; file {out['file_mb']} MB "
          f"({rows:,} rows, filled in {out['fill_s']} s); runs LIMIT 100 p50 {q['p50_ms']} / "
          f"p90 {q['p90_ms']} / p99 {q['p99_ms']} ms (cpu {q['cpu_p50_ms']})")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
