"""The run store's tables, their version, and the migrations that upgrade older files.

A store file records its schema version in ``nbflow_meta``. Opening a file creates the
schema when it is new and migrates it when it is older; an older file is upgraded,
never dropped. To change the schema: bump SCHEMA_VERSION, append a step to MIGRATIONS.
"""

from __future__ import annotations

from typing import Any, Callable

from nbflow.errors import SchemaVersionError, StoreError
from nbflow.store import records

SCHEMA_VERSION = 5

#: columns holding times: TIMESTAMP (naive UTC); rows carry float epoch seconds.
TIME_COLUMNS = frozenset({"scheduled_time", "start_time", "end_time", "created", "updated",
                          "cache_expiration", "timestamp", "expires"})
INTEGER_COLUMNS = frozenset({"run_count", "dynamic_key", "seq", "level", "pid"})
DOUBLE_COLUMNS = frozenset({"duration_s", "process_start"})
#: columns holding JSON text (VARCHAR); the query layer parses them.
JSON_COLUMNS = frozenset({"parameters", "tags", "upstream"})

#: What identifies a row of each table. Since schema version 3 these are NOT declared to DuckDB
#: (no PRIMARY KEY, no index): the writer keeps them unique itself (batch_rows.insert), at the
#: cost of scanning the key columns of the batch's tables on each write. DuckDB rewrites every
#: index of a changed table at each checkpoint, and each write closes the file, which
#: checkpoints: with keys a small write into a store of 100k flow runs and 1M task runs, history
#: rows and logs took ~0.6 s (CPU ~0.7 s) and the file was 5.5x bigger; without, ~0.2 s
#: (benchmarks/store_write.py). No secondary indexes either, for the same reason.
KEYS = {
    "flow_runs": ("id",),
    "task_runs": ("id",),
    "state_history": ("run_id", "seq"),
    "logs": ("run_id", "seq"),
    "cache_entries": ("cache_key",),
}

META_DDL = "CREATE TABLE nbflow_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"


def column_type(column: str) -> str:
    """The SQL type of a records column, from its name."""
    if column in TIME_COLUMNS:
        return "TIMESTAMP"
    if column in INTEGER_COLUMNS:
        return "INTEGER"
    if column in DOUBLE_COLUMNS:
        return "DOUBLE"
    return "VARCHAR"


def table_ddl(table: str, columns: tuple[str, ...]) -> str:
    """CREATE TABLE for one records table, columns in records order, without keys or indexes.

    The key columns are NOT NULL (a constraint checked on insert, not an index).
    """
    key = KEYS[table]
    body = ", ".join(f'"{c}" {column_type(c)}{" NOT NULL" if c in key else ""}' for c in columns)
    return f"CREATE TABLE {table} ({body})"


#: Deployments and their workers (schema version 4; frozen: _v3_to_v4 creates exactly these).
#: Small tables changed row by row, so they keep their keys: the uniqueness of a scheduled slot
#: (deployment_runs.slot_key) is what makes schedulers idempotent across restarts and races.
V4_DEPLOYMENT_DDL = [
    "CREATE TABLE deployments (id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, flow_name VARCHAR,"
    " kind VARCHAR NOT NULL, notebook VARCHAR, entrypoint VARCHAR, parameters VARCHAR, schedule VARCHAR,"
    " catch_up VARCHAR, timeout_seconds DOUBLE, paused BOOLEAN, work_pool VARCHAR, webhook_slug VARCHAR,"
    " webhook_secret VARCHAR, webhook_parameters VARCHAR, triggers VARCHAR, last_scheduled TIMESTAMP,"
    " created TIMESTAMP, updated TIMESTAMP)",
    "CREATE TABLE deployment_runs (run_id VARCHAR PRIMARY KEY, deployment_id VARCHAR NOT NULL,"
    " slot_key VARCHAR UNIQUE, work_pool VARCHAR, worker_id VARCHAR, claimed TIMESTAMP,"
    " heartbeat TIMESTAMP, cancel_requested BOOLEAN, triggered_by VARCHAR, created TIMESTAMP)",
    "CREATE TABLE work_pools (name VARCHAR PRIMARY KEY, concurrency_limit INTEGER, created TIMESTAMP)",
    "CREATE TABLE workers (id VARCHAR PRIMARY KEY, work_pool VARCHAR, host VARCHAR, pid INTEGER,"
    " started TIMESTAMP, heartbeat TIMESTAMP)",
]
#: The deployment tables of the current schema (a later change gives its own list here).
DEPLOYMENT_DDL = V4_DEPLOYMENT_DDL


def current_ddl() -> list[str]:
    """Statements creating the current schema: the tables of records.TABLES, then deployments'."""
    return [table_ddl(t, cols) for t, cols in records.TABLES.items()] + DEPLOYMENT_DDL


# Frozen history: a file written by nbflow with schema version 1. Never edit; migrations
# start from exactly this.
V1_DDL = [
    "CREATE TABLE flow_runs (id VARCHAR, flow_name VARCHAR, name VARCHAR, flow_version VARCHAR,"
    " state VARCHAR, state_type VARCHAR, state_message VARCHAR, parameters VARCHAR,"
    " parent_flow_run_id VARCHAR, parent_task_run_id VARCHAR, tags VARCHAR, run_count INTEGER,"
    " start_time TIMESTAMP, end_time TIMESTAMP, duration_s DOUBLE, host VARCHAR, pid INTEGER,"
    " process_start DOUBLE, created TIMESTAMP, updated TIMESTAMP, PRIMARY KEY (id))",
    "CREATE TABLE task_runs (id VARCHAR, flow_run_id VARCHAR, task_name VARCHAR, task_key VARCHAR,"
    " dynamic_key INTEGER, state VARCHAR, state_type VARCHAR, state_message VARCHAR, error VARCHAR,"
    " upstream VARCHAR, tags VARCHAR, run_count INTEGER, cache_key VARCHAR,"
    " cache_expiration TIMESTAMP, result_format VARCHAR, result_path VARCHAR,"
    " start_time TIMESTAMP, end_time TIMESTAMP, duration_s DOUBLE, created TIMESTAMP,"
    " updated TIMESTAMP, PRIMARY KEY (id))",
    "CREATE TABLE state_history (run_id VARCHAR, seq INTEGER, run_kind VARCHAR, state VARCHAR,"
    " state_type VARCHAR, message VARCHAR, timestamp TIMESTAMP, PRIMARY KEY (run_id, seq))",
    "CREATE TABLE logs (run_id VARCHAR, seq INTEGER, flow_run_id VARCHAR, task_run_id VARCHAR,"
    " level INTEGER, level_name VARCHAR, logger VARCHAR, message VARCHAR, timestamp TIMESTAMP,"
    " PRIMARY KEY (run_id, seq))",
    "CREATE TABLE cache_entries (cache_key VARCHAR, task_name VARCHAR, task_run_id VARCHAR,"
    " result_format VARCHAR, result_path VARCHAR, created TIMESTAMP, expires TIMESTAMP,"
    " PRIMARY KEY (cache_key))",
]


# Frozen history: a file created by nbflow with schema version 2 (a v1 file migrated to v2 has
# the three deployment columns at the end of flow_runs instead). Never edit.
V2_DDL = [
    "CREATE TABLE flow_runs (id VARCHAR, flow_name VARCHAR, name VARCHAR, flow_version VARCHAR,"
    " state VARCHAR, state_type VARCHAR, state_message VARCHAR, parameters VARCHAR,"
    " parent_flow_run_id VARCHAR, parent_task_run_id VARCHAR, deployment_id VARCHAR, tags VARCHAR,"
    " run_count INTEGER, scheduled_time TIMESTAMP, start_time TIMESTAMP, end_time TIMESTAMP,"
    " duration_s DOUBLE, host VARCHAR, pid INTEGER, process_start DOUBLE, created TIMESTAMP,"
    " updated TIMESTAMP, output_notebook VARCHAR, PRIMARY KEY (id))",
    V1_DDL[1],
    V1_DDL[2],
    V1_DDL[3],
    V1_DDL[4],
]


def _v1_to_v2(con: Any) -> None:
    """Deployments: flow runs learn their deployment, scheduled time and output notebook."""
    con.execute("ALTER TABLE flow_runs ADD COLUMN deployment_id VARCHAR")
    con.execute("ALTER TABLE flow_runs ADD COLUMN scheduled_time TIMESTAMP")
    con.execute("ALTER TABLE flow_runs ADD COLUMN output_notebook VARCHAR")


def _v2_to_v3(con: Any) -> None:
    """Drop the primary keys (see KEYS): rebuild each table without them, rows kept.

    DuckDB cannot drop a primary key in place, so each table is copied into a new one with
    the same columns (same order and types; the key columns NOT NULL, nothing else) and
    renamed. ensure() runs this inside the migration's single transaction, so a failure (a
    full disk, a kill) leaves the v2 file as it was.
    """
    keys = {"flow_runs": ("id",), "task_runs": ("id",), "state_history": ("run_id", "seq"),
            "logs": ("run_id", "seq"), "cache_entries": ("cache_key",)}  # frozen: v3's keys
    for table, key in keys.items():
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index", [table]
        ).fetchall()
        new = f"{table}__v3"
        body = ", ".join(f'"{c}" {t}{" NOT NULL" if c in key else ""}' for c, t in columns)
        cols = ", ".join(f'"{c}"' for c, _ in columns)
        con.execute(f"CREATE TABLE {new} ({body})")
        con.execute(f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {new} RENAME TO {table}")


def _v3_to_v4(con: Any) -> None:
    """Deployments: their definitions, scheduled slots, work pools and workers."""
    for statement in V4_DEPLOYMENT_DDL:
        con.execute(statement)


def _v4_to_v5(con: Any) -> None:
    """Task runs get a name (task_run_name, or Prefect's default `task-abc`)."""
    con.execute("ALTER TABLE task_runs ADD COLUMN name VARCHAR")


#: MIGRATIONS[i] upgrades a file from version i + 1 to version i + 2.
MIGRATIONS: list[Callable[[Any], None]] = [_v1_to_v2, _v2_to_v3, _v3_to_v4, _v4_to_v5]
assert len(MIGRATIONS) == SCHEMA_VERSION - 1, "every schema version needs a migration step"


def read_version(con: Any) -> int | None:
    """The file's schema version, or None when it holds no nbflow schema yet."""
    import duckdb

    try:
        row = con.execute("SELECT value FROM nbflow_meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:  # no nbflow_meta table: a new file
        return None
    return int(row[0]) if row else None


def _set_version(con: Any, version: int) -> None:
    con.execute("INSERT OR REPLACE INTO nbflow_meta VALUES ('schema_version', ?)", [str(version)])


def create(con: Any, ddl: list[str] | None = None, version: int = SCHEMA_VERSION) -> None:
    """Create a schema (the current one by default) in an empty file."""
    for statement in [META_DDL, *(ddl if ddl is not None else current_ddl())]:
        con.execute(statement)
    _set_version(con, version)


def ensure(con: Any, path: str) -> None:
    """Bring the file's schema to SCHEMA_VERSION inside one transaction: create or migrate.

    Raises SchemaVersionError for a file written by a newer nbflow.
    """
    version = read_version(con)
    if version == SCHEMA_VERSION:
        return
    if version is not None and version < 1:
        raise StoreError(f"The run store {path} records schema version {version}, which no nbflow "
                         f"ever wrote. Move the file aside to start a fresh store.")
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"The run store {path} has schema version {version}, but this nbflow supports "
            f"version {SCHEMA_VERSION} at most: it was written by a newer nbflow. "
            f"Upgrade nbflow (pip install -U nbflow) to use it."
        )
    con.execute("BEGIN TRANSACTION")
    try:
        if version is None:
            _refuse_foreign_tables(con, path)
            create(con)
        else:
            for step in MIGRATIONS[version - 1:]:
                step(con)
            _set_version(con, SCHEMA_VERSION)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _refuse_foreign_tables(con: Any, path: str) -> None:
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()]
    clash = sorted(set(names) & set(records.TABLES))
    if clash:
        raise StoreError(
            f"{path} is a DuckDB database with tables {clash} but no nbflow_meta table, so it is "
            f"not an nbflow run store. Point NBFLOW_HOME at another directory, or move the file aside."
        )
