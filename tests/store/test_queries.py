"""The query layer: DataFrames newest first, filters, JSON parsed, id prefixes."""

from __future__ import annotations

import datetime as dt

import pytest

from nbflow.errors import UnknownRunError
from nbflow.store import queries, records
from nbflow.store.embedded import EmbeddedStore

T0 = 1_700_000_000.0


@pytest.fixture
def filled(store: EmbeddedStore, rows) -> EmbeddedStore:
    """Three etl runs and one report run, a minute apart, with tasks, history and logs."""
    store.write(records.Batch(
        flow_runs=[
            rows.flow_run("aaaa1111", start=T0, parameters={"day": 1}),
            rows.flow_run("aaaa2222", start=T0 + 60, state="Failed", parameters={"day": 2}),
            rows.flow_run("bbbb3333", start=T0 + 120, state="Cached"),
            rows.flow_run("cccc4444", flow_name="report", start=T0 + 180, state="Completed"),
        ],
        task_runs=[
            rows.task_run("t1", "aaaa1111", task_name="extract", start=T0 + 1),
            rows.task_run("t2", "aaaa1111", task_name="load", start=T0 + 2, upstream=["t1"]),
            rows.task_run("t3", "aaaa2222", task_name="extract", start=T0 + 61, state="Failed"),
        ],
        state_history=[rows.state("aaaa1111", 2, "Completed", "COMPLETED"),
                       rows.state("aaaa1111", 1, "Running", "RUNNING")],
        logs=[
            rows.log("aaaa1111", 1, flow_run_id="aaaa1111", message="flow starts", timestamp=T0),
            rows.log("t1", 1, flow_run_id="aaaa1111", task_run_id="t1", message="extracting",
                     timestamp=T0 + 1),
            rows.log("t2", 1, flow_run_id="aaaa1111", task_run_id="t2", message="loading",
                     timestamp=T0 + 2),
            rows.log("aaaa1111", 2, flow_run_id="aaaa1111", message="flow ends", timestamp=T0 + 3),
            rows.log("aaaa2222", 1, flow_run_id="aaaa2222", message="other run", timestamp=T0 + 60),
        ],
    ))
    return store


def test_runs_newest_first_with_parsed_json(filled: EmbeddedStore) -> None:
    df = queries.runs(filled)

    assert df["id"].tolist() == ["cccc4444", "bbbb3333", "aaaa2222", "aaaa1111"]
    assert list(df.columns[:7]) == ["id", "flow_name", "state", "start_time", "end_time",
                                    "duration_s", "parameters"]
    assert set(df.columns) == set(records.FLOW_RUN_COLUMNS)
    assert df.set_index("id").loc["aaaa2222", "parameters"] == {"day": 2}
    assert df["tags"].iloc[0] == ["nightly"]
    assert df["start_time"].iloc[-1] == dt.datetime(2023, 11, 14, 22, 13, 20)


def test_runs_filters(filled: EmbeddedStore) -> None:
    assert queries.runs(filled, flow_name="report")["id"].tolist() == ["cccc4444"]
    assert queries.runs(filled, state="failed")["id"].tolist() == ["aaaa2222"]
    assert queries.runs(filled, state=["COMPLETED", "Cached"])["id"].tolist() == [
        "cccc4444", "bbbb3333", "aaaa1111"]
    assert queries.runs(filled, flow_name="etl", state="Completed")["id"].tolist() == ["aaaa1111"]
    assert queries.runs(filled, limit=2)["id"].tolist() == ["cccc4444", "bbbb3333"]
    assert queries.runs(filled, limit=2, offset=2)["id"].tolist() == ["aaaa2222", "aaaa1111"]
    assert queries.runs(filled, flow_name="etl' OR 1=1 --").empty


def test_runs_of_an_empty_store(store: EmbeddedStore) -> None:
    df = queries.runs(store)
    assert df.empty and "parameters" in df.columns


def test_task_runs(filled: EmbeddedStore) -> None:
    df = queries.task_runs(filled, flow_run_id="aaaa1111")

    assert df["id"].tolist() == ["t2", "t1"]
    assert list(df.columns[:8]) == ["id", "flow_run_id", "task_name", "state", "start_time",
                                    "end_time", "duration_s", "error"]
    assert df["upstream"].tolist() == [["t1"], []]
    assert queries.task_runs(filled)["id"].tolist() == ["t3", "t2", "t1"]
    assert queries.task_runs(filled, limit=1)["id"].tolist() == ["t3"]
    assert queries.task_runs(filled, flow_run_id="aaaa2222")["error"].tolist() == ["ValueError: boom"]


def test_logs_of_a_flow_run_include_its_task_runs(filled: EmbeddedStore) -> None:
    df = queries.logs(filled, "aaaa1111")

    assert df["message"].tolist() == ["flow starts", "extracting", "loading", "flow ends"]
    assert list(df.columns[:5]) == ["timestamp", "level_name", "logger", "task_run_id", "message"]
    assert queries.logs(filled, "t2")["message"].tolist() == ["loading"]
    assert queries.logs(filled, "nope").empty


def test_flows(filled: EmbeddedStore) -> None:
    df = queries.flows(filled)

    assert df["flow_name"].tolist() == ["report", "etl"]
    etl = df.set_index("flow_name").loc["etl"]
    assert etl["runs"] == 3 and etl["last_state"] == "Cached"
    started = dt.datetime.fromtimestamp(T0 + 120, dt.timezone.utc).replace(tzinfo=None)
    assert etl["last_run_start"] == started


def test_state_history_in_order(filled: EmbeddedStore) -> None:
    df = queries.state_history(filled, "aaaa1111")
    assert df["state"].tolist() == ["Running", "Completed"]
    assert df["seq"].tolist() == [1, 2]


def test_flow_run_by_id_and_by_prefix(filled: EmbeddedStore) -> None:
    run = queries.flow_run(filled, "aaaa2222")
    assert run["id"] == "aaaa2222" and run["state"] == "Failed"
    assert run["parameters"] == {"day": 2} and run["tags"] == ["nightly"]
    assert run["deployment_id"] is None and run["scheduled_time"] is None
    assert isinstance(run["start_time"], dt.datetime) and isinstance(run["pid"], int)

    assert queries.flow_run(filled, "bbbb")["id"] == "bbbb3333"
    assert queries.flow_run(filled, "aaaa2")["id"] == "aaaa2222"


def test_flow_run_unknown_ambiguous_or_too_short(filled: EmbeddedStore) -> None:
    with pytest.raises(UnknownRunError) as info:
        queries.flow_run(filled, "zzzz9999")
    assert str(info.value) == "No flow run with id 'zzzz9999'. List runs with `nbflow flow-run ls`."

    with pytest.raises(UnknownRunError, match="'aaaa' matches 2 runs: .*aaaa1111.*aaaa2222|"
                                              "'aaaa' matches 2 runs: .*aaaa2222.*aaaa1111"):
        queries.flow_run(filled, "aaaa")

    with pytest.raises(UnknownRunError, match="No flow run with id 'bbb'"):
        queries.flow_run(filled, "bbb")  # shorter than 4 characters: exact ids only


def test_scheduled_runs_sort_by_their_time_and_are_not_a_flows_last_run(filled: EmbeddedStore, rows) -> None:
    # Slots scheduled ahead, all created at one moment (as the scheduler does), in no order.
    created = T0 + 200
    filled.write(records.Batch(flow_runs=[
        rows.flow_run(f"slot{i}", state="Scheduled", start=None, start_time=None, end_time=None,
                      duration_s=None, pid=None, created=created, scheduled_time=T0 + 3600 * i)
        for i in (2, 3, 1)]))
    for limit in (None, 100, 5):  # the whole list and a page (read the short way on its second read)
        for _ in range(2):
            ids = queries.runs(filled, limit=limit)["id"].tolist()[:5]
            assert ids == ["slot3", "slot2", "slot1", "cccc4444", "bbbb3333"]
    etl = queries.flows(filled).set_index("flow_name").loc["etl"]
    assert etl["last_state"] == "Cached" and etl["runs"] == 6  # the last run that started
