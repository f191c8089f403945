"""Fill a store that no server holds yet, in SQL (about 2 s): `python dashboard_fill.py BIG_RUN_ID`.

100,000 flow runs of 20 flows, 10 s apart in May 2026 (older than anything a test runs), 10% Failed;
and BIG_RUN_ID: one flow run of 5,000 task runs (extract -> process x 4,998 -> total; 5 of the
4,998 failed), with a log line for each. NBFLOW_HOME says which store.
"""

from __future__ import annotations

import sys

from nbflow.store.backend import embedded_store

RUNS = 100_000
MAPPED = 4_998


def at(seconds: str) -> str:
    return f"TIMESTAMP '2026-05-01 00:00:00' + to_seconds({seconds})"


def fill(big: str) -> None:
    store = embedded_store()
    state = "CASE WHEN i % 10 = 7 THEN 'Failed' WHEN i % 50 = 3 THEN 'Cancelled' ELSE 'Completed' END"
    start = at("1000000")
    with store.transaction("fill the dashboard test's store") as con:
        con.execute(f"""
            INSERT INTO flow_runs (id, flow_name, name, flow_version, state, state_type, state_message, parameters,
                tags, run_count, start_time, end_time, duration_s, host, pid, process_start, created, updated)
            SELECT md5('flow-' || i), 'flow-' || (i % 20), 'flow-' || i, '1', {state}, upper({state}),
                CASE WHEN i % 10 = 7 THEN 'ValueError: bad row ' || i END, '{{"n": ' || i || '}}', '[]', 1,
                {at('i * 10.0')}, {at('i * 10.0 + 2.5')}, 2.5, 'elsewhere', 1, 1.7e9, {at('i * 10.0')},
                {at('i * 10.0 + 2.5')}
            FROM range({RUNS}) t(i)""")
        con.execute(f"""
            INSERT INTO flow_runs (id, flow_name, name, flow_version, state, state_type, state_message, parameters,
                tags, run_count, start_time, end_time, duration_s, host, pid, process_start, created, updated)
            VALUES (?, 'big-flow', 'big-flow-1', '1', 'Failed', 'FAILED', 'Task run total failed', '{{"n": {MAPPED}}}',
                '[]', 1, {start}, {start} + INTERVAL 60 SECOND, 60, 'elsewhere', 1, 1.7e9, {start}, {start})""", [big])
        con.execute(f"""
            INSERT INTO task_runs (id, flow_run_id, task_name, task_key, state, state_type, upstream, tags,
                run_count, start_time, end_time, duration_s, created, updated)
            VALUES (md5('big-extract'), ?, 'extract', 'extract', 'Completed', 'COMPLETED', '[]', '[]', 1,
                {start}, {start} + to_seconds(1), 1, {start}, {start})""", [big])
        con.execute(f"""
            INSERT INTO task_runs (id, flow_run_id, task_name, task_key, dynamic_key, state, state_type, error,
                upstream, tags, run_count, start_time, end_time, duration_s, created, updated)
            SELECT md5('big-' || k), ?, 'process', 'process', k,
                CASE WHEN k % 997 = 5 THEN 'Failed' ELSE 'Completed' END,
                CASE WHEN k % 997 = 5 THEN 'FAILED' ELSE 'COMPLETED' END,
                CASE WHEN k % 997 = 5 THEN 'ValueError: row ' || k || ' is bad' END,
                '["' || md5('big-extract') || '"]', '[]', 1, {at('1000001 + k * 0.01')},
                {at('1000001.5 + k * 0.01')}, 0.5, {at('1000001 + k * 0.01')}, {at('1000001.5 + k * 0.01')}
            FROM range({MAPPED}) t(k)""", [big])
        con.execute(f"""
            INSERT INTO task_runs (id, flow_run_id, task_name, task_key, state, state_type, error, upstream, tags,
                run_count, start_time, end_time, duration_s, created, updated)
            SELECT md5('big-total'), ?, 'total', 'total', 'Failed', 'FAILED', 'ValueError: 5 rows are bad',
                '[' || string_agg('"' || md5('big-' || k) || '"', ',') || ']', '[]', 1, {at('1000052')},
                {at('1000053')}, 1, {at('1000052')}, {at('1000053')}
            FROM range({MAPPED}) t(k)""", [big])
        con.execute(f"""
            INSERT INTO logs (run_id, seq, flow_run_id, task_run_id, level, level_name, logger, message, timestamp)
            SELECT md5('big-' || k), 1, ?, md5('big-' || k), 20, 'INFO', 'nbflow.task_runs',
                'processed row ' || k, {at('1000001.5 + k * 0.01')}
            FROM range({MAPPED}) t(k)""", [big])


if __name__ == "__main__":
    fill(sys.argv[1])
