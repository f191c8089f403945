"""Transactions as Prefect 3's: task runs commit together, or roll back together when the block raises."""

from __future__ import annotations

import logging

import pytest

from nbflow import flow, task, transaction
from nbflow.transactions import CommitMode, Transaction, get_transaction


def test_a_task_run_outside_a_transaction_commits_at_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: dict = {}

    @task
    def step():
        return 1

    @step.on_commit
    def committed(txn):
        seen["txn"] = txn

    with caplog.at_level(logging.INFO, logger="nbflow"):
        state = step(return_state=True)
    assert state.is_completed() and state.name == "Completed"
    assert isinstance(seen["txn"], Transaction) and seen["txn"].is_committed()
    assert "Running commit hook 'committed'" in caplog.text
    assert "Running rollback hook" not in caplog.text


def test_a_failing_block_rolls_back_every_task_run_newest_first_with_its_own_values() -> None:
    calls: list[tuple[str, int]] = []
    committed: list[str] = []

    @task(on_rollback=[lambda txn: calls.append(("first", txn.get("n")))],
          on_commit=[lambda txn: committed.append("first")])
    def first():
        get_transaction().set("n", 1)

    @task(on_rollback=[lambda txn: calls.append(("second", txn.get("n")))])
    def second():
        get_transaction().set("n", 2)

    @task
    def breaks():
        raise RuntimeError("oopsie")

    @flow
    def grouped():
        with transaction():
            first()
            second()
            breaks()

    assert grouped(return_state=True).is_failed()
    assert calls == [("second", 2), ("first", 1)] and committed == []


def test_a_block_that_ends_normally_commits_its_task_runs_at_its_end() -> None:
    events: list[str] = []

    @task(on_commit=[lambda txn: events.append("committed")])
    def step():
        events.append("ran")

    @flow
    def grouped():
        with transaction() as txn:
            txn.set("shared", [1])
            step()
            events.append("block ends")
            assert txn.get("shared") == [1] and txn.get("missing", "default") == "default"
            with pytest.raises(ValueError, match="unknown key: missing"):
                txn.get("missing")

    grouped()
    assert events == ["ran", "block ends", "committed"]


def test_commit_mode_off_rolls_back_and_eager_commits_inside_a_parent() -> None:
    events: list[str] = []

    @task(on_commit=[lambda txn: events.append("commit")], on_rollback=[lambda txn: events.append("rollback")])
    def step():
        return 1

    with transaction(commit_mode=CommitMode.OFF):
        step()
    assert events == ["rollback"]
    events.clear()
    with transaction(commit_mode=CommitMode.OFF):
        with transaction(commit_mode=CommitMode.EAGER):
            step()
        assert events == ["commit"]
