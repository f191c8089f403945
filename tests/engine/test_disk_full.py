"""A full disk: the run that cannot write fails clearly, and nothing recorded earlier is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

import nbflow
from nbflow import flow, task
from nbflow.store.buffer import recorder


def test_full_disk_fails_the_run_clearly_and_keeps_earlier_runs(small_disk: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    recorder.flush_quietly()
    monkeypatch.setenv("NBFLOW_HOME", str(small_disk))

    @task
    def small() -> int:
        return 1

    @task(persist_result=True)
    def huge() -> bytes:
        return b"x" * (16 * 1024 * 1024)

    @flow
    def fine() -> int:
        return small()

    @flow
    def too_big() -> bytes:
        return huge()

    assert fine() == 1
    nbflow.flush()
    state = too_big(return_state=True)
    assert state.is_failed()
    assert "No space left on device" in state.message
    assert "persist_result=False" in state.message
    nbflow.flush()
    runs = nbflow.runs().set_index("flow_name")
    assert runs.loc["fine", "state"] == "Completed"
    assert runs.loc["too-big", "state"] == "Failed"
    leftovers = [p for p in (small_disk / "results").rglob("*") if p.is_file()]
    assert leftovers == []  # no half-written result file
    recorder.flush_quietly()
