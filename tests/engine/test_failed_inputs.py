"""Failed task runs keep their inputs for debugging: what is kept, what is listed, the cap, the off
switches, and a modified debug file refused like a modified result."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import nbflow
from nbflow import flow, task
from nbflow.store import debug_files
from nbflow.store.debug_files import DebugDataError


@task
def check_rows(frame: pd.DataFrame, limit: int, lock: object = None, label: str = "daily") -> int:
    bad = frame[frame["amount"] < 0]
    if len(bad):
        raise ValueError(f"{len(bad)} bad row(s) over limit {limit}")
    return len(frame)


@flow
def pipeline(frame: pd.DataFrame, lock: object = None) -> int:
    return check_rows(frame, 10, lock)


def _frame(rows: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"id": range(rows), "amount": [1.5] * (rows - 1) + [-3.0]})


def _failed_run_id() -> str:
    runs = nbflow.runs()
    return runs.iloc[0]["id"]


def test_a_failed_task_keeps_its_arguments_and_lists_what_it_could_not_store() -> None:
    frame = _frame()
    state = pipeline(frame, threading.Lock(), return_state=True)
    assert state.is_failed()
    inputs = nbflow.debug(_failed_run_id()[:8])  # a flow run's id prefix: its first failed task run
    assert list(inputs) == ["frame", "limit", "label"]  # parameter order, the lock left out
    pd.testing.assert_frame_equal(inputs["frame"], frame)
    assert inputs["limit"] == 10 and inputs["label"] == "daily"
    assert inputs.error == "ValueError: 1 bad row(s) over limit 10"
    assert inputs.skipped == [{"name": "lock", "type": "_thread.lock",
                               "reason": "cannot be stored (cloudpickle: TypeError: cannot pickle '_thread.lock' object)"}]
    assert "def check_rows" in inputs.source and "raise ValueError" in inputs.traceback
    assert inputs.manifest["raised_at"]["function"] == "check_rows"
    assert nbflow.debug(inputs.task_run_id).task_run_id == inputs.task_run_id  # the task run's own id works too
    logged = nbflow.logs(inputs.task_run_id)["message"].str.cat(sep="\n")
    assert "lock (cannot be stored" in logged


def test_success_writes_nothing_and_a_timeout_keeps_its_inputs(nbflow_home: Path) -> None:
    assert pipeline(_frame(3).abs()) == 3
    assert not (nbflow_home / "debug").exists()

    @task(timeout_seconds=0.2)
    def slow(seconds: float) -> None:
        time.sleep(seconds)

    state = slow(5.0, return_state=True)
    assert state.name == "TimedOut"
    inputs = nbflow.debug(nbflow.task_runs().iloc[0]["id"])
    assert dict(inputs) == {"seconds": 5.0} and inputs.manifest["state"] == "TimedOut"


def test_the_size_cap_skips_the_largest_values_and_lists_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBFLOW_FAILED_INPUTS_MAX_BYTES", "20000")
    big, small = _frame(50_000), _frame(5)

    @task
    def join(big: pd.DataFrame, small: pd.DataFrame, blob: bytes) -> None:
        raise RuntimeError("join failed")

    join(big, small, b"x" * 19_000, return_state=True)
    inputs = nbflow.debug(nbflow.task_runs().iloc[0]["id"])
    assert list(inputs) == ["small"]
    pd.testing.assert_frame_equal(inputs["small"], small)
    reasons = {s["name"]: s["reason"] for s in inputs.skipped}
    assert set(reasons) == {"big", "blob"}
    assert "over the size cap of 20,000 bytes" in reasons["big"]  # too big in memory: never serialised
    assert "past the size cap of 20,000 bytes" in reasons["blob"]


def test_the_off_switches_keep_nothing(monkeypatch: pytest.MonkeyPatch, nbflow_home: Path) -> None:
    @task(keep_failed_inputs=False)
    def secret(password: str) -> None:
        raise PermissionError("denied")

    secret("hunter2", return_state=True)
    monkeypatch.setenv("NBFLOW_KEEP_FAILED_INPUTS", "0")
    check_rows(_frame(), 1, return_state=True)
    assert not (nbflow_home / "debug").exists()
    with pytest.raises(DebugDataError, match="keep_failed_inputs=False"):
        nbflow.debug(nbflow.task_runs().iloc[0]["id"])
    with pytest.raises(nbflow.errors.TaskDefinitionError, match="keep_failed_inputs must be True or False"):
        task(keep_failed_inputs="no")(lambda: None)


def test_a_modified_debug_file_is_refused(nbflow_home: Path) -> None:
    pipeline(_frame(), return_state=True)
    run_id = _failed_run_id()
    folder = next((nbflow_home / "debug" / run_id).iterdir())
    parquet = next((folder / "values").glob("*frame.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:-20] + b"\0" * 20)
    with pytest.raises(DebugDataError, match="frame.parquet was modified after it was written"):
        nbflow.debug(run_id)
    manifest = folder / "manifest.json"
    signed = json.loads(manifest.read_text())
    signed["manifest"]["values"]["limit"]["ref"]["digest"] = "0" * 64
    manifest.write_text(json.dumps(signed))
    with pytest.raises(DebugDataError, match="manifest.json was modified after it was written"):
        nbflow.debug(run_id)


def test_any_identifier_is_a_value_name() -> None:
    @task
    def accents(données: list, résumé: str = "é") -> None:
        raise KeyError("x")

    accents([1, 2], return_state=True)
    assert dict(nbflow.debug(nbflow.task_runs().iloc[0]["id"])) == {"données": [1, 2], "résumé": "é"}


def test_old_debug_data_is_pruned(nbflow_home: Path) -> None:
    pipeline(_frame(), return_state=True)
    assert debug_files.prune(14) == 0
    assert debug_files.prune(14, now=time.time() + 15 * 86400) == 1
    assert not any((nbflow_home / "debug").iterdir())
