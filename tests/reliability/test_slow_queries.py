"""A query that never ends must not freeze the server, lose run records or stop it from stopping."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from live_server import start_server, stop_server

#: runs for hours unless interrupted (10^15 rows).
ENDLESS = "SELECT count(*) FROM range(1000000000000) a, range(1000) b"


def _health_seconds(server) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(f"{server.url}nbflow/api/health", timeout=10) as response:
        assert response.status == 200
    return time.monotonic() - started


def _post_sql_in_background(server, sql: str) -> dict:
    """POST sql from a thread; the dict gets (status, body, seconds) when it answers."""
    answer: dict = {}

    def send() -> None:
        started = time.monotonic()
        try:
            status, body = server.request("POST", "sql", {"sql": sql})
        except OSError as exc:  # the server stopped before answering
            status, body = None, repr(exc)
        answer.update(status=status, body=body, seconds=time.monotonic() - started)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    answer["thread"] = thread
    return answer


@pytest.fixture
def slow_server(tmp_path: Path):
    """A server whose queries may run 600 s: only an interrupt ends ENDLESS."""
    server = start_server(tmp_path / "home", tmp_path / "server.log", secrets.token_hex(16),
                          extra_env={"NBFLOW_QUERY_TIMEOUT": "600"})
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_health_and_run_events_go_on_while_a_query_runs(slow_server, tmp_path: Path):
    query = _post_sql_in_background(slow_server, ENDLESS)
    time.sleep(1.0)  # the query is running
    assert "status" not in query
    assert max(_health_seconds(slow_server) for _ in range(5)) < 1.0

    script = tmp_path / "client_flow.py"
    script.write_text(textwrap.dedent("""
        from nbflow import flow, task

        @task
        def step(i):
            return i

        @flow
        def during_query():
            return [step(i) for i in range(46)]

        during_query()
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], env=slow_server.client_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    assert "could not be saved" not in done.stderr
    status, runs = slow_server.request("GET", "flow_runs?flow_name=during-query")
    assert status == 200 and [r["state"] for r in runs] == ["Completed"]
    status, tasks = slow_server.request("GET", f"flow_runs/{runs[0]['id']}/task_runs")
    assert status == 200 and len(tasks) == 46
    assert "status" not in query  # still running all along


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_server_stops_on_a_signal_while_a_query_runs(slow_server, sig):
    query = _post_sql_in_background(slow_server, ENDLESS)
    time.sleep(1.0)
    slow_server.process.send_signal(sig)
    started = time.monotonic()
    slow_server.process.wait(timeout=15)
    assert time.monotonic() - started < 5, slow_server.log.read_text()[-2000:]
    query["thread"].join(timeout=10)
    assert "Traceback" not in slow_server.log.read_text()
    assert not (slow_server.home / "server.json").exists()


def test_a_query_past_its_limit_is_interrupted_with_408(tmp_path: Path):
    server = start_server(tmp_path / "home", tmp_path / "server.log", secrets.token_hex(16),
                          extra_env={"NBFLOW_QUERY_TIMEOUT": "2"})
    try:
        query = _post_sql_in_background(server, ENDLESS)
        query["thread"].join(timeout=30)
        assert query["status"] == 408, query
        assert query["body"]["field"] == "sql"
        assert "limit of 2 s" in query["body"]["message"] and "NBFLOW_QUERY_TIMEOUT" in query["body"]["message"]
        assert 1.5 < query["seconds"] < 10
        # the server is fine afterwards
        status, rows = server.request("GET", "flow_runs")
        assert status == 200 and rows == []
    finally:
        stop_server(server)


def test_nbflow_sql_from_a_client_is_stopped_at_the_limit(tmp_path: Path):
    server = start_server(tmp_path / "home", tmp_path / "server.log", secrets.token_hex(16),
                          extra_env={"NBFLOW_QUERY_TIMEOUT": "2"})
    try:
        code = textwrap.dedent(f"""
            import time, nbflow
            from nbflow.errors import QueryTimeoutError
            started = time.monotonic()
            try:
                nbflow.sql({ENDLESS!r})
            except QueryTimeoutError as exc:
                print("STOPPED", round(time.monotonic() - started, 1), exc)
        """)
        done = subprocess.run([sys.executable, "-c", code], env=server.client_env(), capture_output=True,
                              text=True, timeout=60)
        assert "STOPPED" in done.stdout, done.stderr
        assert "limit of 2 s" in done.stdout
        assert float(done.stdout.split()[1]) < 10
    finally:
        stop_server(server)


def test_embedded_nbflow_sql_is_stopped_at_the_limit_and_frees_the_store(monkeypatch):
    import nbflow
    from nbflow.errors import QueryTimeoutError

    monkeypatch.setenv("NBFLOW_QUERY_TIMEOUT", "1")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="limit of 1 s"):
        nbflow.sql(ENDLESS)
    assert time.monotonic() - started < 8
    assert nbflow.sql("select 42 as x")["x"].tolist() == [42]  # the store is usable again


#: every way DuckDB reads a file, aimed at files a token holder must not read.
FILE_READERS = [
    "SELECT * FROM read_text('{path}')", "SELECT * FROM read_blob('{path}')",
    "SELECT * FROM read_csv('{path}')", "SELECT * FROM read_csv_auto('{path}')",
    "SELECT * FROM read_json('{path}')", "SELECT * FROM read_json_auto('{path}')",
    "SELECT * FROM read_ndjson('{path}')", "SELECT * FROM read_json_objects('{path}')",
    "SELECT * FROM read_parquet('{path}')", "SELECT * FROM parquet_scan('{path}')",
    "SELECT * FROM parquet_metadata('{path}')", "SELECT * FROM parquet_schema('{path}')",
    "SELECT * FROM sniff_csv('{path}')", "SELECT * FROM glob('{folder}/*')",
    "SELECT * FROM '{path}'", "SELECT * FROM read_text('{results}/../{name}')",
]


def test_sql_reads_no_file_outside_the_store(live_server):
    secret_files = [Path("/etc/passwd"), live_server.home / "server.json"]
    secret = live_server.home / "secret.csv"
    secret.write_text("token\nshould-never-be-read\n")
    secret_files.append(secret)
    results = live_server.home / "results"
    results.mkdir(exist_ok=True)
    for path in secret_files:
        for template in FILE_READERS:
            sql = template.format(path=path, folder=path.parent, results=results, name=path.name)
            status, body = live_server.request("POST", "sql", {"sql": sql})
            assert status == 400, (sql, status, body)
            text = json.dumps(body)
            assert "should-never-be-read" not in text and live_server.token not in text and "root:" not in text
            assert body["field"] == "sql"


def test_sql_reads_parquet_results_of_the_store(live_server):
    import pandas as pd
    import pyarrow as pa

    results = live_server.home / "results"
    results.mkdir(exist_ok=True)
    pd.DataFrame({"x": [1, 2, 3]}).to_parquet(results / "frame.parquet")
    status, raw = live_server.request("POST", "sql", {"sql": f"SELECT sum(x) AS s FROM read_parquet('{results}/frame.parquet')"})
    assert status == 200
    assert pa.ipc.open_stream(raw).read_all().to_pydict() == {"s": [6]}
