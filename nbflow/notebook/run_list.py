"""`%nbflow runs`: this notebook's flow runs (or the store's) as a short, readable table.

"This notebook's runs" are the runs of its flow (named after the notebook, see session.py) and
the flows this kernel called, newest first; `--all` lists every run in the store.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from nbflow import api
from nbflow.notebook.static_html import fmt_duration
from nbflow.store.liveness import process_start_time

#: the columns of the table, in order.
COLUMNS = ("run", "flow", "state", "started", "duration", "tasks", "message")
#: messages longer than this are cut (the whole message is in `nbflow.flow_run(id)`).
MESSAGE_WIDTH = 80


def run_table(flow_name: str | None = None, state: str | None = None, limit: int = 20,
              notebook: str | None = None) -> Any:
    """Flow runs, newest first, as a DataFrame of COLUMNS (indexed by the short run id); `notebook`: only that notebook's
    flow runs and those this kernel started."""
    import pandas as pd

    where, params = [], []
    if notebook is not None:
        condition, values = _notebook_condition(notebook)
        where.append(condition)
        params += values
    if flow_name is not None:
        where.append("f.flow_name = ?")
        params.append(flow_name)
    if state is not None:
        where.append("lower(f.state) = lower(?)")
        params.append(state)
    conditions = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(int(limit))
    # task runs are counted for the runs shown only
    frame = api.sql(
        "WITH picked AS (SELECT f.id, f.flow_name, f.state, f.state_message, epoch(f.start_time) AS start, "
        "epoch(coalesce(f.start_time, f.scheduled_time, f.created)) AS sort_time, f.duration_s "
        f"FROM flow_runs f {conditions} ORDER BY sort_time DESC NULLS LAST, f.id LIMIT ?), "
        "counted AS (SELECT flow_run_id, count(*) AS tasks FROM task_runs "
        "WHERE flow_run_id IN (SELECT id FROM picked) GROUP BY flow_run_id) "
        "SELECT p.*, coalesce(c.tasks, 0) AS tasks FROM picked p LEFT JOIN counted c ON c.flow_run_id = p.id "
        "ORDER BY p.sort_time DESC NULLS LAST, p.id", params)
    rows = [(r.id[:8], r.flow_name, r.state, _when(r.start), fmt_duration(_number(r.duration_s)),
             int(r.tasks), _short(r.state_message)) for r in frame.itertuples()]
    return pd.DataFrame(rows, columns=list(COLUMNS)).set_index("run")


def newest_run_id(notebook: str) -> str | None:
    """The id of this notebook's newest flow run (as run_table lists them), or None."""
    where, params = _notebook_condition(notebook)
    frame = api.sql(f"SELECT f.id FROM flow_runs f WHERE {where} ORDER BY "
                    "coalesce(f.start_time, f.scheduled_time, f.created) DESC NULLS LAST, f.id LIMIT 1", params)
    return None if frame.empty else str(frame["id"].iloc[0])


def _notebook_condition(notebook: str) -> tuple[str, list]:
    """Runs of the notebook's flow, and runs this kernel process started."""
    return ("(f.flow_name = ? OR (f.host = ? AND f.pid = ? AND abs(coalesce(f.process_start, 0) - ?) < 2))",
            [notebook, socket.gethostname(), os.getpid(), process_start_time(os.getpid()) or 0.0])


def _number(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def _when(epoch: Any) -> str:
    """Local time, with the date only when it is not today."""
    seconds = _number(epoch)
    if seconds is None:
        return ""
    moment = dt.datetime.fromtimestamp(seconds)
    return moment.strftime("%H:%M:%S" if moment.date() == dt.date.today() else "%Y-%m-%d %H:%M")


def _short(message: Any) -> str:
    if not isinstance(message, str):
        return ""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= MESSAGE_WIDTH else line[:MESSAGE_WIDTH - 1] + "…"
