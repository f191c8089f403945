"""Schema creation, version checks and migrations on real DuckDB files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from nbflow.errors import SchemaVersionError
from nbflow.store import records, schema
from nbflow.store.embedded import DUCKDB_CONFIG, EmbeddedStore

#: how nbflow before schema v3 created files: DuckDB's default storage format and block size.
OLD_FORMAT = {k: v for k, v in DUCKDB_CONFIG.items() if "extensions" in k}


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


def _constraints_and_indexes(path: Path) -> tuple[list, list]:
    """(constraints other than NOT NULL, indexes) on the records tables."""
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        tables = list(records.TABLES)
        constraints = con.execute(
            "SELECT table_name, constraint_type FROM duckdb_constraints() "
            "WHERE list_contains(?, table_name) AND constraint_type <> 'NOT NULL'", [tables]).fetchall()
        indexes = con.execute("SELECT table_name, index_name FROM duckdb_indexes() "
                              "WHERE list_contains(?, table_name)", [tables]).fetchall()
        return constraints, indexes
    finally:
        con.close()


def test_fresh_file_has_no_keys_or_indexes(store: EmbeddedStore) -> None:
    store.query("SELECT 1")
    assert _constraints_and_indexes(store.path) == ([], [])
    con = duckdb.connect(str(store.path), config=DUCKDB_CONFIG)
    try:
        not_null = con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
            "WHERE constraint_type = 'NOT NULL' AND list_contains(?, table_name) ORDER BY ALL",
            [list(records.TABLES)]).fetchall()
        # A new file gets the faster storage format and small blocks (see DUCKDB_CONFIG).
        tags = con.execute("SELECT tags FROM duckdb_databases() WHERE path = ?",
                           [str(store.path)]).fetchone()[0]
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    finally:
        con.close()
    assert sorted((t, tuple(c)) for t, c in not_null) == sorted(
        (t, (c,)) for t, key in schema.KEYS.items() for c in key)
    assert tags["storage_version"].startswith("v1.4") and block_size == 65536


def _write_v1_file(path: Path) -> None:
    con = duckdb.connect(str(path), config=OLD_FORMAT)
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
    assert _constraints_and_indexes(path) == ([], [])
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
    # Without keys the writer still replaces a migrated run rather than adding a second one.
    store.write(records.Batch(flow_runs=[rows.flow_run("run-1", state="Failed")]))
    assert store.query("SELECT state FROM flow_runs WHERE id = 'run-1'")["state"].tolist() == ["Failed"]


def _write_v2_file(path: Path) -> dict[str, int]:
    """A file as nbflow with schema version 2 wrote it (primary keys), with rows in every table."""
    con = duckdb.connect(str(path), config=OLD_FORMAT)
    schema.create(con, ddl=schema.V2_DDL, version=2)
    con.execute(
        "INSERT INTO flow_runs (id, flow_name, name, state, state_type, parameters, tags, run_count, "
        "start_time, host, pid, deployment_id, output_notebook) SELECT 'run-' || i, 'etl', "
        "'etl-' || i, 'Completed', 'COMPLETED', '{\"n\": ' || i || '}', '[]', 1, "
        "TIMESTAMP '2024-05-01 10:00:00' + to_seconds(i), 'h', 42, 'dep-1', 'out-' || i || '.ipynb' "
        "FROM range(300) r(i)")
    con.execute("INSERT INTO task_runs (id, flow_run_id, task_name, state, state_type, dynamic_key) "
                "SELECT 'task-' || i, 'run-' || (i // 3), 'extract', 'Completed', 'COMPLETED', i "
                "FROM range(900) r(i)")
    con.execute("INSERT INTO state_history SELECT 'task-' || (i // 2), i % 2 + 1, 'task', 'Running', "
                "'RUNNING', NULL, TIMESTAMP '2024-05-01 10:00:00' FROM range(1800) r(i)")
    con.execute("INSERT INTO logs SELECT 'run-' || (i // 4), i % 4 + 1, 'run-' || (i // 4), NULL, 20, "
                "'INFO', 'x', 'line ' || i, TIMESTAMP '2024-05-01 10:00:01' FROM range(1200) r(i)")
    con.execute("INSERT INTO cache_entries VALUES ('key-1', 'extract', 'task-1', 'json', '/r.json', "
                "TIMESTAMP '2024-05-01 10:00:00', NULL)")
    con.close()
    return {"flow_runs": 300, "task_runs": 900, "state_history": 1800, "logs": 1200, "cache_entries": 1}


def _dump(path: Path, table: str) -> list[tuple]:
    """The table's rows over the columns every schema version has (not those added since v4)."""
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    try:
        added = records.TASK_RUN_COLUMNS_ADDED if table == "task_runs" else ()
        cols = ", ".join(f'"{c}"' for c in records.TABLES[table] if c not in added)
        return con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_v2_file_is_migrated_without_keys_and_with_every_row(tmp_path: Path, rows) -> None:
    path = tmp_path / "v2.duckdb"
    counts = _write_v2_file(path)
    before = {table: _dump(path, table) for table in records.TABLES}
    assert _constraints_and_indexes(path)[0]  # v2 had primary keys

    store = EmbeddedStore(path, lock_timeout=5)
    store.query("SELECT 1")

    assert _version(path) == schema.SCHEMA_VERSION
    assert _constraints_and_indexes(path) == ([], [])
    for table in records.TABLES:
        assert _dump(path, table) == before[table], table
        assert len(before[table]) == counts[table]
    assert tuple(_columns(path, "flow_runs")) == records.FLOW_RUN_COLUMNS
    # Writes stay idempotent on the migrated file: a run, a history row and a log that were
    # there before the migration are replaced or kept once, not duplicated.
    batch = records.Batch(flow_runs=[rows.flow_run("run-7", state="Failed")],
                          state_history=[rows.state("task-3", 1), rows.state("task-3", 3)],
                          logs=[rows.log("run-5", 4, flow_run_id="run-5", message="again")])
    store.write(batch)
    store.write(batch)
    runs = store.query("SELECT state, count(*) AS n FROM flow_runs WHERE id = 'run-7' GROUP BY state")
    assert runs.values.tolist() == [["Failed", 1]]
    history = store.query("SELECT seq FROM state_history WHERE run_id = 'task-3' ORDER BY seq")
    assert history["seq"].tolist() == [1, 2, 3]
    logs = store.query("SELECT message FROM logs WHERE run_id = 'run-5' AND seq = 4")
    assert logs["message"].tolist() == ["line 23"]  # the stored row wins; no second row
    assert int(store.query("SELECT count(*) AS n FROM flow_runs")["n"].iloc[0]) == 300


def test_a_failed_migration_leaves_the_old_file_as_it_was(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "v2.duckdb"
    _write_v2_file(path)
    before = {table: _dump(path, table) for table in records.TABLES}

    def half_done(con) -> None:
        migrate(con)  # every table rebuilt ... then the disk fills up, say
        raise duckdb.IOException("IO Error: No space left on device")

    migrate = schema.MIGRATIONS[1]
    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], half_done, *schema.MIGRATIONS[2:]])
    with pytest.raises(Exception, match="No space left"):
        EmbeddedStore(path, lock_timeout=5).query("SELECT 1")
    monkeypatch.undo()

    assert _version(path) == 2
    assert _constraints_and_indexes(path)[0]  # still the v2 tables, keys and all
    for table in records.TABLES:
        assert _dump(path, table) == before[table]
    EmbeddedStore(path, lock_timeout=5).query("SELECT 1")  # and a later open migrates it
    assert _version(path) == schema.SCHEMA_VERSION


def test_v3_file_gains_the_deployment_tables_and_keeps_its_runs(tmp_path: Path, rows) -> None:
    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    schema.create(con, _v4_tables(), version=3)
    con.close()
    store = EmbeddedStore(path, lock_timeout=5)
    store.write(records.Batch(flow_runs=[rows.flow_run("run-1")]))  # migrates, then writes
    assert _version(path) == schema.SCHEMA_VERSION
    tables = set(store.query("SELECT table_name FROM duckdb_tables()")["table_name"])
    assert {"deployments", "deployment_runs", "work_pools", "workers"} <= tables
    assert store.query("SELECT id FROM flow_runs")["id"].tolist() == ["run-1"]


def _v4_tables() -> list[str]:
    """The run tables as schema versions 3 and 4 had them (task_runs without `name`)."""
    v4 = {**records.TABLES, "task_runs": records.TASK_RUN_COLUMNS[:-len(records.TASK_RUN_COLUMNS_ADDED)]}
    return [schema.table_ddl(t, cols) for t, cols in v4.items()]


def test_v4_file_gains_task_run_names_and_takes_rows_of_old_clients(tmp_path: Path, rows) -> None:
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path), config=DUCKDB_CONFIG)
    schema.create(con, _v4_tables() + schema.V4_DEPLOYMENT_DDL, version=4)
    con.close()
    store = EmbeddedStore(path, lock_timeout=5)
    old_row = rows.task_run("task-1", "run-1")[:-1]  # what a version-4 client sends
    store.write(records.Batch(flow_runs=[rows.flow_run("run-1")], task_runs=[old_row]))
    assert _version(path) == schema.SCHEMA_VERSION
    frame = store.query("SELECT id, name FROM task_runs")
    assert frame["id"].tolist() == ["task-1"] and frame["name"].isna().all()


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
