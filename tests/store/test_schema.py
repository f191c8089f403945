"""Schema creation, version checks and migrations on real DuckDB files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from nbflow.errors import SchemaVersionError
from nbflow.store import records, schema
from nbflow.store.embedded import DUCKDB_CONFIG, EmbeddedStore


def _columns(path: Path, table: str) -> dict[str, str]:
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        return {name: type_ for name, type_ in con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "ORDER BY column_index", [table]).fetchall()}
    finally:
        con.close()


def _version(path: Path) -> int | None:
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        return schema.read_version(con)
    finally:
        con.close()


def test_fresh_file_gets_current_version_and_every_table(store: EmbeddedStore) -> None:
    store.query("SELECT 1")

    assert _version(store.path) == schema.SCHEMA_VERSION
    for table, columns in records.TABLES.items():
        assert tuple(_columns(store.path, table)) == columns
    types = _columns(store.path, "flow_runs")
    assert types["start_time"] == "TIMESTAMP"
    assert types["duration_s"] == "DOUBLE"
    assert types["pid"] == "INTEGER"
    assert types["parameters"] == "VARCHAR"


def _write_v1_file(path: Path) -> None:
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    schema.create(con, ddl=schema.V1_DDL, version=1)
    con.execute(
        "INSERT INTO flow_runs (id, flow_name, name, state, state_type, parameters, tags, "
        "run_count, start_time, host, pid) VALUES "
        "('run-1', 'etl', 'etl-1', 'Completed', 'COMPLETED', '{\"n\": 3}', '[]', 1, "
        "TIMESTAMP '2024-05-01 10:00:00', 'h', 42)")
    con.execute("INSERT INTO task_runs (id, flow_run_id, task_name, state, state_type) "
                "VALUES ('task-1', 'run-1', 'extract', 'Completed', 'COMPLETED')")
    con.execute("INSERT INTO logs VALUES ('run-1', 1, 'run-1', NULL, 20, 'INFO', 'x', 'kept', "
                "TIMESTAMP '2024-05-01 10:00:01')")
    con.close()


def test_v1_file_is_migrated_with_its_rows_kept(tmp_path: Path, rows) -> None:
    path = tmp_path / "old.duckdb"
    _write_v1_file(path)
    assert _version(path) == 1
    assert "deployment_id" not in _columns(path, "flow_runs")

    store = EmbeddedStore(path, lock_timeout=5)
    old = store.query("SELECT * FROM flow_runs")

    assert _version(path) == schema.SCHEMA_VERSION
    assert old["id"].tolist() == ["run-1"]
    assert old["parameters"].iloc[0] == '{"n": 3}'
    assert old["start_time"].iloc[0] == dt.datetime(2024, 5, 1, 10)
    assert old["deployment_id"].isna().all() and old["output_notebook"].isna().all()
    assert store.query("SELECT message FROM logs")["message"].tolist() == ["kept"]
    assert store.query("SELECT count(*) AS n FROM task_runs")["n"].iloc[0] == 1
    # Same columns and types as a fresh file (order may differ: ALTER appends).
    fresh = EmbeddedStore(tmp_path / "fresh.duckdb", lock_timeout=5)
    fresh.query("SELECT 1")
    for table in records.TABLES:
        assert _columns(path, table) == _columns(fresh.path, table)
    # The writer names its columns, so it works on the migrated column order too.
    store.write(records.Batch(flow_runs=[rows.flow_run("run-2", deployment_id="dep-1",
                                                       output_notebook="out.ipynb")]))
    new = store.query("SELECT deployment_id, output_notebook FROM flow_runs WHERE id = 'run-2'")
    assert new.iloc[0].tolist() == ["dep-1", "out.ipynb"]


def test_file_from_a_newer_nbflow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    EmbeddedStore(path, lock_timeout=5).query("SELECT 1")
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    con.execute("UPDATE nbflow_meta SET value = '7' WHERE key = 'schema_version'")
    con.close()

    with pytest.raises(SchemaVersionError) as info:
        EmbeddedStore(path, lock_timeout=5).query("SELECT 1")

    message = str(info.value)
    assert "version 7" in message and f"version {schema.SCHEMA_VERSION}" in message
    assert "Upgrade nbflow" in message and str(path) in message
    assert _version(path) == 7  # untouched


def test_each_version_has_one_migration_step() -> None:
    assert len(schema.MIGRATIONS) == schema.SCHEMA_VERSION - 1
