"""Deployments in the store: definitions, their runs, claims by workers, states, triggers.

Every function takes the store first (an EmbeddedStore: the server's held file, or the
embedded file without a server) and works in one transaction, so a failure writes nothing.
A deployment's run is a flow run (state Scheduled -> Pending when a worker claims it ->
Running -> final) plus a `deployment_runs` row: its slot key (unique: one run per scheduled
time, whoever schedules it), work pool, worker, heartbeat and cancel request.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
from typing import Any, Callable

from nbflow import settings
from nbflow.deployments import paths
from nbflow.deployments.definitions import (
    COLUMNS, DeploymentError, UnknownDeploymentError, body_value, check_body, check_run_parameters,
)
from nbflow.engine.models import new_run_id
from nbflow.engine.states import FINAL_STATE_NAMES, STATE_TYPES, TRANSITIONS
from nbflow.errors import UnknownRunError

#: runs created ahead of time per scheduled deployment, within AHEAD_HORIZON.
AHEAD_COUNT = 3
AHEAD_HORIZON = dt.timedelta(days=7)
_ACTIVE = ("PENDING", "RUNNING")
#: the most runs a worker claims in one call, and the largest concurrency limit of a work pool
#: (bounds that keep the numbers within what the store's columns hold).
MAX_CLAIM = 1000
MAX_CONCURRENCY = 10_000

#: called (without arguments) after runs were created, so an in-server worker can wake at once.
run_listeners: list[Callable[[], None]] = []


class ConflictError(DeploymentError):
    """The request conflicts with the stored state (a taken name, a finished run): HTTP 409."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, field, status=409)


class WebhookAuthError(DeploymentError):
    """A webhook call without the right secret: HTTP 403, and nothing says whether the slug exists."""

    def __init__(self) -> None:
        super().__init__("Unknown webhook or wrong secret: send the webhook's secret in the "
                         "X-Nbflow-Webhook-Secret header.", None, status=403)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")


# -- deployments -----------------------------------------------------------------------------

def create_deployment(store: Any, body: Any) -> dict[str, Any]:
    """Store a new deployment; its name must be free (409 otherwise)."""
    row = check_body(body)
    with store.transaction("create a deployment in") as con:
        _check_unique(con, row, None)
        row["triggers"] = _resolve_triggers(con, row["triggers"])
        now = _now()
        row.update(id=new_run_id(), last_scheduled=None, created=now, updated=now)
        con.execute(f"INSERT INTO deployments ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                    [_db(c, row[c]) for c in COLUMNS])
    return deployment_json(row, with_secret=True)


def list_deployments(store: Any, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    with store.transaction("read deployments from") as con:
        rows = _rows(con, "SELECT * FROM deployments ORDER BY created DESC, id LIMIT ? OFFSET ?", [limit, offset])
    return [deployment_json(r) for r in rows]


def get_deployment(store: Any, ref: str) -> dict[str, Any]:
    """One deployment, with the schema of the parameters its target takes (for a run form)."""
    from nbflow.deployments.definitions import parameter_schema

    with store.transaction("read a deployment from") as con:
        row = _deployment(con, ref)
    return deployment_json(row) | {"parameter_schema": parameter_schema(row)}


def update_deployment(store: Any, ref: str, patch: Any) -> dict[str, Any]:
    """Change some fields; a changed or paused schedule drops the runs it had scheduled ahead."""
    with store.transaction("update a deployment in") as con:
        current = _deployment(con, ref)
        row = check_body(patch, current=_as_body(current))
        _check_unique(con, row, current["id"])
        row["triggers"] = _resolve_triggers(con, row["triggers"])
        row.update(id=current["id"], created=current["created"], updated=_now(),
                   last_scheduled=current["last_scheduled"])
        if row["paused"] or row["schedule"] != current["schedule"] or row["parameters"] != current["parameters"]:
            _drop_scheduled(con, current["id"])
            row["last_scheduled"] = None
        changed = [c for c in COLUMNS if c != "id" and _db(c, row[c]) != _db(c, current[c])]
        if changed:
            con.execute(f"UPDATE deployments SET {', '.join(f'{c} = ?' for c in changed)} WHERE id = ?",
                        [_db(c, row[c]) for c in changed] + [row["id"]])
    return deployment_json(row)


def delete_deployment(store: Any, ref: str) -> dict[str, Any]:
    """Delete a deployment; its runs stay recorded, those not started yet are Cancelled."""
    with store.transaction("delete a deployment from") as con:
        row = _deployment(con, ref)
        waiting = [r[0] for r in con.execute(
            "SELECT f.id FROM flow_runs f JOIN deployment_runs d ON d.run_id = f.id "
            "WHERE d.deployment_id = ? AND f.state_type = 'SCHEDULED'", [row["id"]]).fetchall()]
        for run_id in waiting:
            _set_state(con, run_id, "Cancelled", f"Its deployment {row['name']} was deleted")
        con.execute("DELETE FROM deployments WHERE id = ?", [row["id"]])
    return {"deleted": row["id"], "name": row["name"], "cancelled_runs": len(waiting)}


# -- runs --------------------------------------------------------------------------------------

def create_run(store: Any, ref: str, parameters: Any = None, *, triggered_by: str | None = None) -> dict[str, Any]:
    """A run of the deployment now (also when it is paused: a person asked for it)."""
    with store.transaction("create a deployment run in") as con:
        row = _deployment(con, ref)
        values = check_run_parameters(row, parameters)
        run_id = _insert_runs(con, row, [(values, _now(), None, triggered_by)])[0]
    _notify()
    return flow_run_json(store, run_id)


def webhook_run(store: Any, slug: str, secret: str | None, body: Any) -> dict[str, Any]:
    """A run of the deployment whose webhook is `slug`, parameters taken from the JSON body."""
    return start_webhook_run(store, webhook_deployment(store, slug, secret), body)


#: the secret an unknown slug is compared with, so that it takes the path of a wrong secret.
_NO_SUCH_SECRET = secrets.token_bytes(32)


def webhook_deployment(store: Any, slug: str, secret: str | None) -> dict[str, Any]:
    """The deployment whose webhook is `slug`, if `secret` is its secret; else WebhookAuthError.

    An unknown slug takes the path of a known one: one look-up, then hmac.compare_digest of
    SHA-256 digests (of a random dummy for an unknown slug), so neither the answer nor its
    timing tells whether the slug exists or how long its secret is.
    """
    with store.transaction("read a deployment from") as con:
        found = con.execute("SELECT id, webhook_secret FROM deployments WHERE webhook_slug = ?", [slug]).fetchone()
    expected = found[1].encode("utf-8", "surrogatepass") if found and found[1] else _NO_SUCH_SECRET
    given = (secret or "").encode("utf-8", "surrogatepass")
    matches = hmac.compare_digest(hashlib.sha256(expected).digest(), hashlib.sha256(given).digest())
    if not (matches and found and secret):
        raise WebhookAuthError()
    with store.transaction("read a deployment from") as con:
        rows = _rows(con, "SELECT * FROM deployments WHERE id = ?", [found[0]])
    if not rows:  # deleted meanwhile
        raise WebhookAuthError()
    return rows[0]


def start_webhook_run(store: Any, row: dict[str, Any], body: Any) -> dict[str, Any]:
    """A run of the webhook's deployment `row`, its parameters mapped from the JSON body."""
    mapping = row["webhook_parameters"] or {}
    if mapping:
        values = {}
        for name, path in mapping.items():
            try:
                values[name] = body_value(body, path)
            except KeyError:
                raise DeploymentError(f"The webhook maps parameter {name} to {path}, which the JSON body "
                                      "does not have.", path) from None
    else:
        values = body.get("parameters") if isinstance(body, dict) else None
    return create_run(store, row["id"], values)


def cancel_run(store: Any, run_id: str) -> dict[str, Any]:
    """Cancel a deployment run: at once when no worker has it, else its worker stops it."""
    with store.transaction("cancel a run in") as con:
        run = _run(con, run_id)
        if run["state"] in FINAL_STATE_NAMES:
            raise ConflictError(f"Flow run {run['id']} already ended {run['state']}; there is nothing to cancel.")
        if run["deployment_id"] is None or run["worker_id"] is None and run["dr"] is None:
            raise ConflictError(f"Flow run {run['id']} is not a deployment run: only runs that nbflow executes "
                                "(deployments) can be cancelled through the API; stop the process running it.")
        if run["worker_id"] is None:
            _set_state(con, run["id"], "Cancelled", "Cancelled by request before it started")
        else:
            con.execute("UPDATE deployment_runs SET cancel_requested = true WHERE run_id = ?", [run["id"]])
    return flow_run_json(store, run["id"])


def set_run_state(store: Any, run_id: str, state: str, message: str | None = None,
                  output_notebook: str | None = None, worker_id: str | None = None) -> dict[str, Any]:
    """A worker reports its run's state; a final state fires the triggers of other deployments."""
    name = next((s for s in STATE_TYPES if isinstance(state, str) and s.lower() == state.lower()), None)
    if name is None:
        raise DeploymentError(f"state must be one of {', '.join(STATE_TYPES)}; got {state!r}.", "state")
    if output_notebook is not None and not isinstance(output_notebook, str):
        raise DeploymentError(f"output_notebook must be the path of a .ipynb file; got {output_notebook!r}.",
                              "output_notebook")
    if output_notebook:
        try:  # the dashboard serves this file: it must lie under an allowed root
            output_notebook = str(paths.resolve(output_notebook, "output_notebook"))
        except paths.PathNotAllowedError as exc:
            raise DeploymentError(str(exc), "output_notebook") from None
    with store.transaction("record a run state in") as con:
        run = _run(con, run_id)
        if worker_id is not None and run["worker_id"] != worker_id:
            raise ConflictError(f"Flow run {run['id']} is not claimed by worker {worker_id}.", "worker_id")
        if run["state"] != name:
            _set_state(con, run["id"], name, message, output_notebook)
        else:
            if output_notebook:
                con.execute("UPDATE flow_runs SET output_notebook = ? WHERE id = ?", [output_notebook, run["id"]])
            if name in FINAL_STATE_NAMES:  # the flow's own process recorded it (an adopted run): act on it now
                _fire_triggers(con, run["id"], name)
    if name in FINAL_STATE_NAMES:
        _notify()
    return flow_run_json(store, run["id"])


def flow_run_json(store: Any, run_id: str) -> dict[str, Any]:
    from nbflow.server.runs_api import get_flow_run

    return get_flow_run(store, run_id)


# -- workers -----------------------------------------------------------------------------------

def create_work_pool(store: Any, name: str, concurrency_limit: int | None = None) -> dict[str, Any]:
    from nbflow.deployments.definitions import _pool

    name = _pool(name)
    if concurrency_limit is not None and (isinstance(concurrency_limit, bool) or not isinstance(
            concurrency_limit, int) or not 1 <= concurrency_limit <= MAX_CONCURRENCY):
        raise DeploymentError(f"concurrency_limit must be a whole number from 1 to {MAX_CONCURRENCY}; "
                              f"got {concurrency_limit!r}.", "concurrency_limit")
    with store.transaction("create a work pool in") as con:
        if con.execute("SELECT 1 FROM work_pools WHERE name = ?", [name]).fetchone():
            raise ConflictError(f"A work pool named {name} exists already.", "name")
        con.execute("INSERT INTO work_pools VALUES (?, ?, ?)", [name, concurrency_limit, _now()])
    return {"name": name, "concurrency_limit": concurrency_limit, "workers": 0}


def list_work_pools(store: Any) -> list[dict[str, Any]]:
    since = _now() - dt.timedelta(seconds=settings.heartbeat_timeout())
    with store.transaction("read work pools from") as con:
        pools = {r[0]: {"name": r[0], "concurrency_limit": r[1], "created": _iso(r[2]), "workers": 0}
                 for r in con.execute("SELECT name, concurrency_limit, created FROM work_pools").fetchall()}
        pools.setdefault("default", {"name": "default", "concurrency_limit": None, "created": None, "workers": 0})
        for pool, count in con.execute("SELECT work_pool, count(*) FROM workers WHERE heartbeat >= ? "
                                       "GROUP BY work_pool", [since]).fetchall():
            pools.setdefault(pool, {"name": pool, "concurrency_limit": None, "created": None, "workers": 0})
            pools[pool]["workers"] = count
    return sorted(pools.values(), key=lambda p: p["name"])


def claim_runs(store: Any, pool: str, worker_id: str, limit: int) -> list[dict[str, Any]]:
    """Give the worker up to `limit` due runs of `pool`, each to one worker only (one transaction)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_CLAIM:
        raise DeploymentError(f"limit must be a whole number from 1 to {MAX_CLAIM}; got {limit!r}.", "limit")
    if not isinstance(worker_id, str) or not worker_id:
        raise DeploymentError("worker_id is required.", "worker_id")
    now = _now()
    with store.transaction("claim runs in") as con:
        _touch_worker(con, worker_id, pool, now)
        cap = con.execute("SELECT concurrency_limit FROM work_pools WHERE name = ?", [pool]).fetchone()
        if cap and cap[0] is not None:
            busy = con.execute(
                "SELECT count(*) FROM deployment_runs d JOIN flow_runs f ON f.id = d.run_id "
                "WHERE d.work_pool = ? AND d.worker_id IS NOT NULL AND f.state_type IN ('PENDING', 'RUNNING')",
                [pool]).fetchone()[0]
            limit = min(limit, max(cap[0] - busy, 0))
        if limit == 0:
            return []
        due = con.execute(
            "SELECT f.id FROM deployment_runs d JOIN flow_runs f ON f.id = d.run_id "
            "WHERE d.work_pool = ? AND d.worker_id IS NULL AND f.state_type = 'SCHEDULED' "
            "AND f.scheduled_time <= ? ORDER BY f.scheduled_time, f.id LIMIT ?", [pool, now, limit]).fetchall()
        claimed = []
        for (run_id,) in due:
            con.execute("UPDATE deployment_runs SET worker_id = ?, claimed = ?, heartbeat = ? WHERE run_id = ?",
                        [worker_id, now, now, run_id])
            _set_state(con, run_id, "Pending", f"Claimed by worker {worker_id}")
            claimed.append(run_id)
        specs = _claimed_specs(con, claimed)
    return specs


def heartbeat(store: Any, worker_id: str, pool: str, run_ids: list[str], *, host: str | None = None,
              pid: int | None = None) -> dict[str, Any]:
    """Record that the worker (on `host`, process `pid`) and its runs are alive; answer the runs it
    must stop. A pool no one created is recorded as created now (the server's `default`)."""
    if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
        raise DeploymentError("run_ids must be a list of flow run ids.", "run_ids")
    now = _now()
    with store.transaction("record a heartbeat in") as con:
        _touch_worker(con, worker_id, pool, now, host, pid)
        if not run_ids:
            return {"cancel": []}
        con.execute("UPDATE deployment_runs SET heartbeat = ? WHERE worker_id = ? AND list_contains(?, run_id)",
                    [now, worker_id, run_ids])
        stop = con.execute(
            "SELECT d.run_id FROM deployment_runs d JOIN flow_runs f ON f.id = d.run_id "
            "WHERE list_contains(?, d.run_id) AND (d.cancel_requested OR d.worker_id IS DISTINCT FROM ? "
            "OR f.state_type NOT IN ('PENDING', 'RUNNING'))", [run_ids, worker_id]).fetchall()
    return {"cancel": [r[0] for r in stop]}


def crash_stale_runs(store: Any, now: dt.datetime | None = None) -> list[str]:
    """Crash the runs whose worker stopped heartbeating (killed, or its machine went away)."""
    now = now or _now()
    cutoff = now - dt.timedelta(seconds=settings.heartbeat_timeout())
    with store.transaction("crash runs of lost workers in") as con:
        stale = con.execute(
            "SELECT d.run_id, d.worker_id, d.heartbeat FROM deployment_runs d JOIN flow_runs f ON f.id = d.run_id "
            "WHERE d.worker_id IS NOT NULL AND f.state_type IN ('PENDING', 'RUNNING') AND d.heartbeat < ?",
            [cutoff]).fetchall()
        for run_id, worker, last in stale:
            _set_state(con, run_id, "Crashed", f"Worker {worker} stopped heartbeating (last heartbeat "
                                               f"{_iso(last)}): it was killed or lost its machine")
    return [r[0] for r in stale]


# -- scheduling --------------------------------------------------------------------------------

def schedule_pass(store: Any, now: dt.datetime | None = None) -> int:
    """Create the due and upcoming runs of every active scheduled deployment; return how many.

    Idempotent: a slot's run has a unique slot key, so running this twice (or in two processes
    at once, or after a restart) never makes a second run for the same deployment and time.
    """
    from nbflow.deployments.schedules import due_slots, slot_key

    now_utc = (now or _now()).replace(tzinfo=dt.timezone.utc)
    with store.transaction("schedule runs in") as con:
        cursor = con.execute("SELECT id, name, flow_name, work_pool, parameters, schedule, catch_up, last_scheduled "
                             "FROM deployments WHERE schedule IS NOT NULL AND NOT coalesce(paused, false)")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r)) for r in cursor.fetchall()]
        todo: list[tuple[dict, list]] = []
        for row in rows:
            schedule = _parsed_schedule(row["schedule"])
            last = row["last_scheduled"].replace(tzinfo=dt.timezone.utc) if row["last_scheduled"] else None
            slots = due_slots(schedule, last, now_utc, dt.timedelta(0), row["catch_up"] or "latest")
            start = max(now_utc, last) if last else now_utc
            have = 0 if last is None or last <= now_utc else len(schedule.next_times(now_utc, until=last))
            if have < AHEAD_COUNT:
                slots += schedule.next_times(start, count=AHEAD_COUNT - have, until=now_utc + AHEAD_HORIZON)
            if slots:
                todo.append((row, slots))
        runs = []
        for row, slots in todo:
            row["parameters"] = json.loads(row["parameters"] or "{}")
            runs += [(row, row["parameters"], s.replace(tzinfo=None), slot_key(row["id"], s), None) for s in slots]
        created = len(_insert_many(con, runs))
        if todo:
            import pyarrow as pa

            con.register("nbflow_scheduled_until", pa.table({
                "id": [row["id"] for row, _ in todo],
                "until": pa.array([max(slots).replace(tzinfo=None) for _, slots in todo], pa.timestamp("us"))}))
            try:
                con.execute("UPDATE deployments SET last_scheduled = u.until FROM nbflow_scheduled_until u "
                            "WHERE deployments.id = u.id")
            finally:
                con.unregister("nbflow_scheduled_until")
    if created:
        _notify()
    return created


@functools.lru_cache(maxsize=4096)
def _parsed_schedule(text: str) -> Any:
    """A stored schedule's object; cached, as a pass reads every scheduled deployment."""
    from nbflow.deployments.schedules import parse_schedule

    return parse_schedule(json.loads(text))


# -- inside a transaction ----------------------------------------------------------------------

def _insert_runs(con: Any, row: dict[str, Any], runs: list[tuple]) -> list[str]:
    """Insert (parameters, scheduled_time, slot_key, triggered_by) runs of one deployment."""
    return _insert_many(con, [(row, *run) for run in runs])


def _insert_many(con: Any, runs: list[tuple]) -> list[str]:
    """Insert (deployment row, parameters, scheduled_time, slot_key, triggered_by) runs in three
    statements, whatever their number; a run whose slot key is taken already is skipped."""
    import pyarrow as pa

    if not runs:
        return []
    now = _now()
    columns: dict[str, list] = {k: [] for k in ("run_id", "deployment_id", "slot_key", "work_pool", "triggered_by",
                                               "flow_name", "name", "message", "parameters", "scheduled_time")}
    for row, parameters, scheduled, key, triggered_by in runs:
        values = (new_run_id(), row["id"], key, row["work_pool"], triggered_by, row["flow_name"], row["name"],
                  triggered_by if triggered_by and triggered_by.startswith("Retry") else
                  f"Triggered by flow run {triggered_by}" if triggered_by else
                  "Scheduled by its schedule" if key else "Run requested", json.dumps(parameters), scheduled)
        for name, value in zip(columns, values):
            columns[name].append(value)
    batch = pa.table({name: pa.array(values, pa.timestamp("us") if name == "scheduled_time" else pa.string())
                      for name, values in columns.items()})
    con.register("nbflow_new_runs", batch)
    try:
        made = [r[0] for r in con.execute(
            "INSERT INTO deployment_runs SELECT n.run_id, n.deployment_id, n.slot_key, n.work_pool, NULL, NULL, NULL, "
            "false, n.triggered_by, ? FROM nbflow_new_runs n WHERE n.slot_key IS NULL OR n.slot_key NOT IN "
            "(SELECT slot_key FROM deployment_runs WHERE slot_key IS NOT NULL) ON CONFLICT DO NOTHING RETURNING run_id",
            [now]).fetchall()]
        if made:
            con.execute(
                "INSERT INTO flow_runs (id, flow_name, name, state, state_type, state_message, parameters, "
                "deployment_id, tags, run_count, scheduled_time, created, updated) "
                "SELECT run_id, flow_name, name, 'Scheduled', 'SCHEDULED', message, parameters, deployment_id, "
                "'[\"deployment\"]', 0, scheduled_time, ?, ? FROM nbflow_new_runs WHERE list_contains(?, run_id)",
                [now, now, made])
            con.execute("INSERT INTO state_history SELECT run_id, 1, 'flow', 'Scheduled', 'SCHEDULED', message, ? "
                        "FROM nbflow_new_runs WHERE list_contains(?, run_id)", [now, made])
    finally:
        con.unregister("nbflow_new_runs")
    order = {run_id: i for i, run_id in enumerate(columns["run_id"])}
    return sorted(made, key=order.__getitem__)


def _set_state(con: Any, run_id: str, name: str, message: str | None = None,
               output_notebook: str | None = None) -> None:
    current = con.execute("SELECT state, start_time FROM flow_runs WHERE id = ?", [run_id]).fetchone()
    if name not in TRANSITIONS.get(current[0], frozenset()):
        raise ConflictError(f"Flow run {run_id} is {current[0]}; it cannot become {name}.", "state")
    now = _now()
    sets = ["state = ?", "state_type = ?", "state_message = ?", "updated = ?"]
    values: list[Any] = [name, STATE_TYPES[name].value, message, now]
    if name == "Running":
        sets += ["start_time = coalesce(start_time, ?)", "run_count = coalesce(run_count, 0) + 1"]
        values.append(now)
    if name in FINAL_STATE_NAMES:
        sets += ["end_time = ?", "duration_s = CASE WHEN start_time IS NULL THEN NULL "
                 "ELSE greatest(epoch(?::TIMESTAMP) - epoch(start_time), 0) END"]
        values += [now, now]
    if output_notebook:
        sets.append("output_notebook = ?")
        values.append(output_notebook)
    con.execute(f"UPDATE flow_runs SET {', '.join(sets)} WHERE id = ?", values + [run_id])
    con.execute("INSERT INTO state_history SELECT ?, coalesce(max(seq), 0) + 1, 'flow', ?, ?, ?, ? "
                "FROM state_history WHERE run_id = ?", [run_id, name, STATE_TYPES[name].value, message, now, run_id])
    if name in FINAL_STATE_NAMES:
        _end_task_runs(con, run_id, name, now)
        _fire_triggers(con, run_id, name)


def _end_task_runs(con: Any, run_id: str, name: str, now: dt.datetime) -> None:
    """A flow deployment's run stopped by its worker (timeout, cancel, crash): its unfinished task runs
    (the flow's process was killed) end Crashed with it."""
    rows = con.execute("SELECT id FROM task_runs WHERE flow_run_id = ? AND state_type IN ('PENDING', 'RUNNING')",
                       [run_id]).fetchall()
    if not rows:
        return
    ids = [r[0] for r in rows]
    message = f"The flow run ended {name} before this task run finished"
    con.execute("UPDATE task_runs SET state = 'Crashed', state_type = 'CRASHED', state_message = ?, end_time = ?, "
                "duration_s = CASE WHEN start_time IS NULL THEN NULL ELSE greatest(epoch(?::TIMESTAMP) - "
                "epoch(start_time), 0) END, updated = ? WHERE list_contains(?, id)", [message, now, now, now, ids])
    con.execute("INSERT INTO state_history SELECT t.id, coalesce(max(h.seq), 0) + 1, 'task', 'Crashed', 'CRASHED', "
                "?, ? FROM unnest(?) AS t(id) LEFT JOIN state_history h ON h.run_id = t.id GROUP BY t.id",
                [message, now, ids])


def _fire_triggers(con: Any, run_id: str, state: str) -> None:
    """Create runs of the deployments that wait for this run's deployment to reach `state`."""
    source = con.execute("SELECT deployment_id FROM deployment_runs WHERE run_id = ?", [run_id]).fetchone()
    if not source:
        return
    fired = {r[0] for r in con.execute("SELECT deployment_id FROM deployment_runs WHERE triggered_by = ?",
                                       [run_id]).fetchall()}  # a state reported twice fires once
    for row in _rows(con, "SELECT * FROM deployments WHERE triggers IS NOT NULL AND triggers <> '[]'", []):
        if not row["paused"] and row["id"] not in fired and any(t["deployment"] == source[0] and t["state"] == state
                                                                  for t in row["triggers"]):
            _insert_runs(con, row, [(row["parameters"] or {}, _now(), None, run_id)])


def _drop_scheduled(con: Any, deployment_id: str) -> None:
    """Delete the runs a schedule created ahead that no worker took yet (a pause or a new schedule)."""
    ids = [r[0] for r in con.execute(
        "SELECT f.id FROM flow_runs f JOIN deployment_runs d ON d.run_id = f.id WHERE d.deployment_id = ? "
        "AND d.slot_key IS NOT NULL AND d.worker_id IS NULL AND f.state_type = 'SCHEDULED'",
        [deployment_id]).fetchall()]
    if ids:
        for table, column in (("flow_runs", "id"), ("state_history", "run_id"), ("deployment_runs", "run_id")):
            con.execute(f"DELETE FROM {table} WHERE list_contains(?, {column})", [ids])


def _touch_worker(con: Any, worker_id: str, pool: str, now: dt.datetime, host: str | None = None,
                  pid: int | None = None) -> None:
    import socket

    con.execute("INSERT INTO workers VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "heartbeat = excluded.heartbeat, work_pool = excluded.work_pool, "
                "pid = coalesce(excluded.pid, workers.pid)",
                [worker_id, pool, host or socket.gethostname(), pid, now, now])
    if not con.execute("SELECT 1 FROM work_pools WHERE name = ?", [pool]).fetchone():
        con.execute("INSERT INTO work_pools VALUES (?, NULL, ?) ON CONFLICT DO NOTHING", [pool, now])


def _claimed_specs(con: Any, run_ids: list[str]) -> list[dict[str, Any]]:
    if not run_ids:
        return []
    rows = con.execute(
        "SELECT f.id, f.flow_name, f.deployment_id, p.name, p.kind, p.notebook, p.entrypoint, f.parameters, "
        "p.timeout_seconds, f.scheduled_time, f.created, d.triggered_by FROM flow_runs f "
        "JOIN deployments p ON p.id = f.deployment_id "
        "LEFT JOIN deployment_runs d ON d.run_id = f.id WHERE list_contains(?, f.id) ORDER BY f.scheduled_time",
        [run_ids]).fetchall()
    keys = ("id", "flow_name", "deployment_id", "deployment_name", "kind", "notebook", "entrypoint",
            "parameters", "timeout_seconds", "scheduled_time", "created", "triggered_by")
    specs = [dict(zip(keys, r)) for r in rows]
    roots = [str(root) for root in paths.allowed_roots()]
    for spec in specs:
        spec["parameters"] = json.loads(spec["parameters"] or "{}")
        spec["scheduled_time"] = _iso(spec["scheduled_time"])
        spec["created"] = _iso(spec["created"])
        spec["allowed_roots"] = roots  # the worker checks the file against them again before running it
    return specs


def _run(con: Any, run_id: str) -> dict[str, Any]:
    from nbflow.store.queries import MIN_PREFIX

    if not isinstance(run_id, str) or len(run_id) < MIN_PREFIX:
        raise UnknownRunError(f"No flow run with id {run_id!r}.")
    rows = con.execute(
        "SELECT f.id, f.state, f.deployment_id, d.worker_id, d.run_id FROM flow_runs f "
        "LEFT JOIN deployment_runs d ON d.run_id = f.id WHERE f.id = ? OR starts_with(f.id, ?) LIMIT 2",
        [run_id, run_id]).fetchall()
    if len(rows) != 1:
        raise UnknownRunError(f"No flow run with id {run_id!r}." if not rows else
                              f"The id prefix {run_id!r} matches several flow runs; give more characters.")
    return dict(zip(("id", "state", "deployment_id", "worker_id", "dr"), rows[0]))


def _deployment(con: Any, ref: str) -> dict[str, Any]:
    """The deployment `ref` names: its id, its name, or FLOW/NAME as Prefect writes it (a deployment's name
    has no '/', so the last '/' splits them)."""
    flow_name, slash, name = str(ref).rpartition("/")
    if slash:
        rows = _rows(con, "SELECT * FROM deployments WHERE name = ? AND flow_name = ?", [name, flow_name])
        if not rows:
            known = [f"{r['flow_name']}/{r['name']}" for r in _rows(
                con, "SELECT flow_name, name FROM deployments WHERE name = ? ORDER BY flow_name", [name])]
            hint = f" A deployment named {name!r} exists as {', '.join(known)}." if known else ""
            raise UnknownDeploymentError(f"No deployment {name!r} of flow {flow_name!r}.{hint} `nbflow deployment "
                                         "ls` lists them.")
        return rows[0]
    rows = _rows(con, "SELECT * FROM deployments WHERE id = ? OR name = ?", [ref, ref])
    if not rows:
        raise UnknownDeploymentError(f"No deployment with id or name {ref!r}; `nbflow deployment ls` lists them.")
    return rows[0]


def _check_unique(con: Any, row: dict[str, Any], own_id: str | None) -> None:
    taken = con.execute("SELECT id FROM deployments WHERE name = ? AND id IS DISTINCT FROM ?",
                        [row["name"], own_id]).fetchone()
    if taken:
        raise ConflictError(f"A deployment named {row['name']} exists already (id {taken[0]}); PATCH it, or "
                            "choose another name.", "name")
    if row["webhook_slug"] and con.execute("SELECT 1 FROM deployments WHERE webhook_slug = ? AND id IS DISTINCT "
                                           "FROM ?", [row["webhook_slug"], own_id]).fetchone():
        raise ConflictError(f"Another deployment uses the webhook slug {row['webhook_slug']}.", "webhook.slug")


def _resolve_triggers(con: Any, triggers: list[dict[str, str]]) -> list[dict[str, str]]:
    resolved = []
    for trigger in triggers:
        found = con.execute("SELECT id FROM deployments WHERE id = ? OR name = ?",
                            [trigger["deployment"], trigger["deployment"]]).fetchone()
        if not found:
            raise DeploymentError(f"triggers names deployment {trigger['deployment']!r}, which does not exist; "
                                  "create it first.", "triggers")
        resolved.append({"deployment": found[0], "state": trigger["state"]})
    return resolved


_JSON = ("parameters", "schedule", "webhook_parameters", "triggers")


def _rows(con: Any, sql: str, params: list) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    for row in rows:
        for column in _JSON:
            if column in row and isinstance(row[column], str):
                row[column] = json.loads(row[column])
    return rows


def _db(column: str, value: Any) -> Any:
    return json.dumps(value) if column in _JSON and value is not None else value


def _as_body(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the body check_body merges a PATCH over."""
    body = {k: row[k] for k in ("id", "name", "parameters", "schedule", "catch_up", "timeout_seconds",
                                "paused", "work_pool", "triggers")}
    body["notebook" if row["kind"] == "notebook" else "entrypoint"] = row["notebook"] or row["entrypoint"]
    if row["webhook_slug"]:
        body["webhook"] = {"slug": row["webhook_slug"], "secret": row["webhook_secret"],
                           "parameters": row["webhook_parameters"]}
    body.update(webhook_secret=row["webhook_secret"], webhook_slug=row["webhook_slug"])
    return body


def deployment_json(row: dict[str, Any], with_secret: bool = False) -> dict[str, Any]:
    """A deployment as the REST API shows it."""
    from nbflow.deployments.schedules import describe, parse_schedule

    schedule = parse_schedule(row["schedule"]) if row["schedule"] else None
    next_run = None
    if schedule is not None and not row["paused"]:
        upcoming = schedule.next_times(dt.datetime.now(dt.timezone.utc), count=1)
        next_run = _iso(upcoming[0].replace(tzinfo=None)) if upcoming else None
    webhook = None
    if row["webhook_slug"]:
        webhook = {"slug": row["webhook_slug"], "parameters": row["webhook_parameters"] or {}}
        if with_secret:
            webhook["secret"] = row["webhook_secret"]
    return {"id": row["id"], "name": row["name"], "flow_name": row["flow_name"], "kind": row["kind"],
            "notebook": row["notebook"], "entrypoint": row["entrypoint"], "parameters": row["parameters"] or {},
            "schedule": row["schedule"], "schedule_description": describe(schedule) if schedule else None,
            "catch_up": row["catch_up"], "timeout_seconds": row["timeout_seconds"], "paused": bool(row["paused"]),
            "work_pool": row["work_pool"], "webhook": webhook, "triggers": row["triggers"] or [],
            "created": _iso(row["created"]), "updated": _iso(row["updated"]), "next_run_time": next_run}


def _notify() -> None:
    for listener in list(run_listeners):
        listener()
