"""Row layouts of the run store: the one place that fixes column order.

The engine's buffer turns run objects into these tuples; the writer appends them
in batches. Times are float epoch seconds (UTC); JSON columns hold JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: flow_runs: one row per flow run, upserted by id with its latest snapshot.
FLOW_RUN_COLUMNS = (
    "id", "flow_name", "name", "flow_version", "state", "state_type", "state_message",
    "parameters", "parent_flow_run_id", "parent_task_run_id", "deployment_id", "tags",
    "run_count", "scheduled_time", "start_time", "end_time", "duration_s",
    "host", "pid", "process_start", "created", "updated", "output_notebook",
)

#: task_runs: one row per task run, upserted by id with its latest snapshot.
TASK_RUN_COLUMNS = (
    "id", "flow_run_id", "task_name", "task_key", "dynamic_key", "state", "state_type",
    "state_message", "error", "upstream", "tags", "run_count", "cache_key",
    "cache_expiration", "result_format", "result_path", "start_time", "end_time",
    "duration_s", "created", "updated", "name",
)
#: task_runs columns added after schema version 4 (rows from older clients lack them).
TASK_RUN_COLUMNS_ADDED = ("name",)

#: state_history: append-only, idempotent on (run_id, seq).
STATE_COLUMNS = ("run_id", "seq", "run_kind", "state", "state_type", "message", "timestamp")

#: logs: append-only, idempotent on (run_id, seq); run_id is the task run's id for
#: task logs and the flow run's id for flow logs.
LOG_COLUMNS = ("run_id", "seq", "flow_run_id", "task_run_id", "level", "level_name",
               "logger", "message", "timestamp")

#: cache_entries: upserted by cache_key; mirrors the file-based cache index for SQL.
CACHE_COLUMNS = ("cache_key", "task_name", "task_run_id", "result_format", "result_path",
                 "created", "expires")

TABLES = {
    "flow_runs": FLOW_RUN_COLUMNS,
    "task_runs": TASK_RUN_COLUMNS,
    "state_history": STATE_COLUMNS,
    "logs": LOG_COLUMNS,
    "cache_entries": CACHE_COLUMNS,
}


@dataclass
class Batch:
    """Rows drained from the buffer, written to the store in one transaction."""

    flow_runs: list[tuple] = field(default_factory=list)
    task_runs: list[tuple] = field(default_factory=list)
    state_history: list[tuple] = field(default_factory=list)
    logs: list[tuple] = field(default_factory=list)
    cache_entries: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.flow_runs) + len(self.task_runs) + len(self.state_history)
                + len(self.logs) + len(self.cache_entries))

    def extend(self, other: "Batch") -> None:
        """Append another batch's rows after this one's (used to retry a failed write)."""
        for name in TABLES:
            getattr(self, name).extend(getattr(other, name))
