"""Prefect 3's rules for caching and result persistence: which options turn persistence on, what
is cached when, where results go (result_storage, result_storage_key, result_serializer,
key_storage), cache_result_in_memory, locking, and lazy commit of nested task runs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import flow, task
from nbflow.cache_policies import (
    DEFAULT, INPUTS, NO_CACHE, TASK_SOURCE, CacheKeyFnPolicy, Inputs,
)
from nbflow.engine.context import TaskRunContext
from nbflow.errors import ConfigurationError, ResultIntegrityError, TaskDefinitionError
from nbflow.serializers import JSONSerializer, Serializer
from nbflow.tasks import task_input_hash


def key_fn(context: Any, parameters: dict) -> str:
    return "fixed"


# -- which options turn persistence on, and the cache policy they give -----------------------

RULES = [
    ("nothing", {}, DEFAULT, None),
    ("persist_result=True", {"persist_result": True}, DEFAULT, True),
    ("persist_result=False", {"persist_result": False}, NO_CACHE, False),
    ("persist_result=False, cache_policy=None", {"persist_result": False, "cache_policy": None}, None, False),
    ("a cache policy", {"cache_policy": INPUTS}, INPUTS, True),
    ("a policy's class", {"cache_policy": Inputs}, INPUTS, True),
    ("NO_CACHE", {"cache_policy": NO_CACHE}, NO_CACHE, None),
    ("cache_key_fn", {"cache_key_fn": key_fn}, CacheKeyFnPolicy(key_fn), True),
    ("result_storage_key", {"result_storage_key": "out.json"}, None, True),
    ("result_storage", {"result_storage": "results"}, DEFAULT, True),
    ("result_serializer", {"result_serializer": "json"}, DEFAULT, True),
]


@pytest.mark.parametrize("options, policy, persist", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_options_set_policy_and_persistence_as_prefect_does(options: dict, policy: Any, persist: Any) -> None:
    @task(**options)
    def step(x: int) -> int:
        return x

    for t in (step, task(lambda x: x).with_options(**options), step.with_options(name="renamed")):
        assert t.cache_policy == policy and t.persist_result is persist, t
    if policy is DEFAULT:
        assert step.cache_policy is DEFAULT


def test_flow_persist_result_follows_its_result_options() -> None:
    assert flow(lambda: 1).persist_result is None
    assert flow(result_storage=Path("r"))(lambda: 1).persist_result is True
    assert flow(result_serializer="compressed/json")(lambda: 1).persist_result is True
    assert flow(persist_result=False, result_storage="r")(lambda: 1).persist_result is False
    assert flow(lambda: 1).with_options(persist_result=True).persist_result is True


def test_warnings_for_options_that_cancel_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nbflow.tasks"):
        task(cache_policy=INPUTS, cache_key_fn=key_fn)(lambda x: x)
        task(cache_policy=TASK_SOURCE, persist_result=False)(lambda x: x)
        task(cache_expiration=dt.timedelta(hours=1))(lambda x: x)
        assert len(caplog.records) == 3
        task(cache_expiration=dt.timedelta(hours=1), cache_key_fn=task_input_hash)(lambda x: x)
        task(persist_result=False, cache_policy=NO_CACHE)(lambda x: x)
    text = caplog.text
    assert "`cache_key_fn` will be used" in text
    assert "Ignoring `cache_policy` because `persist_result` is False" in text
    assert "cache_expiration is set, but the task does not persist its results" in text
    assert "cache_key_fn=task_input_hash" in text
    assert len(caplog.records) == 3


BAD = [
    ({"result_storage": 42}, "result_storage must be a local folder"),
    ({"result_serializer": "yaml"}, "Unknown result_serializer 'yaml'"),
    ({"result_serializer": object()}, "result_serializer must be one of"),
    ({"result_storage_key": 7}, "result_storage_key must be a str template"),
    ({"cache_result_in_memory": "no"}, "cache_result_in_memory must be True or False"),
    ({"cache_policy": "inputs"}, "cache_policy must be a cache policy"),
    ({"cache_policy": INPUTS.configure(key_storage=object())}, "key_storage must be a folder"),
    ({"cache_policy": INPUTS.configure(isolation_level="LOOSE")}, "isolation_level must be"),
]


@pytest.mark.parametrize("options, message", BAD, ids=[m for _, m in BAD])
def test_bad_result_options_are_refused_in_one_line(options: dict, message: str) -> None:
    with pytest.raises(TaskDefinitionError, match=message) as info:
        task(**options)(lambda x: x)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, (TypeError, ValueError))


# -- what is cached when --------------------------------------------------------------------

def test_without_persistence_nothing_is_cached_or_written(nbflow_home: Path) -> None:
    calls = []

    @task
    def step(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def twice() -> None:
        step(1)
        step(1)

    twice()
    assert calls == [1, 1]
    assert not (nbflow_home / "results").exists() and not (nbflow_home / "cache").exists()


def test_a_persisting_flow_caches_its_tasks_default_policy_within_the_run() -> None:
    calls = []

    @task
    def step(x: int) -> int:
        calls.append(x)
        return x * 10

    @flow(persist_result=True)
    def twice() -> list:
        return [step(1, return_state=True).name, step(1, return_state=True).name]

    assert twice() == ["Completed", "Cached"]
    assert twice() == ["Completed", "Cached"]  # DEFAULT has RUN_ID: a new flow run recomputes
    assert calls == [1, 1]
    assert step.with_options(persist_result=False)(1) == 10


def test_a_flow_retry_reuses_its_completed_tasks_though_they_count_calls() -> None:
    counts = {"task": 0, "flow": 0}
    task_calls = 0

    @task(persist_result=True)
    def fetch() -> str:
        nonlocal task_calls
        task_calls += 1  # state the task keeps: not part of its code
        counts["task"] += 1
        return "rows"

    @flow(retries=1)
    def load() -> str:
        counts["flow"] += 1
        rows = fetch()
        if counts["flow"] == 1:
            raise RuntimeError("first attempt fails after fetch")
        return rows

    assert load() == "rows"
    assert counts == {"task": 1, "flow": 2} and task_calls == 1


def test_task_input_hash_hits_for_a_task_that_mutates_its_closure() -> None:
    seen = {"calls": 0}

    @task(cache_key_fn=task_input_hash)
    def square(x: int) -> int:
        seen["calls"] += 1
        return x * x

    assert [square(3), square(3), square(4)] == [9, 9, 16]
    assert seen["calls"] == 2


def test_a_factory_parameter_the_task_reads_is_part_of_its_code() -> None:
    def make(k: int):
        @task(cache_policy=INPUTS + TASK_SOURCE)
        def scale(x: int) -> int:
            return x * k
        return scale

    assert make(2)(5) == 10
    assert make(3)(5) == 15  # not a false hit on make(2)'s entry
    assert make(2)(5) == 10


# -- where results go ----------------------------------------------------------------------

def test_result_storage_key_names_the_file_and_is_the_cache_key(tmp_path: Path) -> None:
    calls = []

    @task(result_storage=tmp_path / "out", result_storage_key="day-{parameters[day]}.json",
          result_serializer="json")
    def report(day: str) -> dict:
        calls.append(day)
        return {"day": day, "rows": [1, 2]}

    @flow
    def daily(day: str) -> str:
        return report(day, return_state=True).name

    assert daily("mon") == "Completed"
    assert json.loads((tmp_path / "out" / "day-mon.json").read_text()) == {"day": "mon", "rows": [1, 2]}
    assert daily("mon") == "Cached"  # another flow run, same name: reused, as in Prefect
    assert daily("tue") == "Completed"
    assert calls == ["mon", "tue"]
    state = report.with_options(result_storage_key="{parameters[nope]}")("x", return_state=True)
    assert state.is_failed() and "result_storage_key '{parameters[nope]}' could not be filled in" in state.message
    assert "day" not in state.message or "parameters[NAME]" in state.message


def test_tasks_write_to_their_flows_result_storage_with_its_serializer(tmp_path: Path) -> None:
    @task(cache_key_fn=task_input_hash)
    def rows(n: int) -> list:
        return list(range(n))

    @flow(result_storage=str(tmp_path / "flow-results"), result_serializer="compressed/pickle")
    def pipeline() -> list:
        return rows(3)

    assert pipeline() == [0, 1, 2]
    files = [p for p in (tmp_path / "flow-results").rglob("*") if p.is_file()]
    assert [p.name.endswith(".pkl.xz") for p in files] == [True]
    assert pipeline() == [0, 1, 2]
    assert nbflow.task_runs()["state"].tolist() == ["Cached", "Completed"]


def test_a_custom_serializer_object_round_trips_and_a_json_failure_only_warns() -> None:
    class Upper(Serializer):
        type = "upper"

        def dumps(self, obj: Any) -> bytes:
            return str(obj).upper().encode()

        def loads(self, blob: bytes) -> Any:
            return blob.decode()

    calls = []

    @task(result_serializer=Upper(), cache_key_fn=task_input_hash)
    def shout(word: str) -> str:
        calls.append(word)
        return word

    assert shout("hi") == "hi"
    assert shout("hi") == "HI"  # the cache hit is what the serializer stored
    assert calls == ["hi"]

    @task(result_serializer=JSONSerializer())
    def returns_function() -> Any:
        return len

    assert returns_function(return_state=True).is_completed()
    warnings = nbflow.sql("select message from logs where level_name = 'WARNING'")["message"].tolist()
    assert any("Encountered an error while serializing result" in m and "JSON" in m for m in warnings)


def test_cache_result_in_memory_false_reads_the_result_back_from_storage() -> None:
    @task(persist_result=True, cache_result_in_memory=False)
    def big() -> set:
        return {1, 2, 3}  # pickled: its bytes are only in the file

    state = big(return_state=True)
    assert state.result() == {1, 2, 3} and state.result() is not state.result()
    Path(nbflow.task_runs().iloc[0]["result_path"]).unlink()
    with pytest.raises(ResultIntegrityError, match="missing"):
        state.result()
    assert task(cache_result_in_memory=False)(lambda: 42)() == 42  # not persisted: kept in memory


def test_key_storage_keeps_a_policys_entries_in_its_own_folder(tmp_path: Path) -> None:
    policy = Inputs().configure(key_storage=tmp_path / "keys")
    expected = policy.compute_key(None, {"x": 1}, {})
    calls = []

    @task(cache_policy=policy)
    def step(x: int) -> int:
        calls.append(x)
        return x

    assert step(1) == step(1) == 1
    assert calls == [1]
    entry = json.loads((tmp_path / "keys" / expected).read_text())
    assert entry["key"] == expected and entry["task_name"] == "step"


# -- locking and nested runs ---------------------------------------------------------------

class CountingLocks:
    """A lock manager with Prefect's protocol (acquire_lock / release_lock), counting calls."""

    def __init__(self) -> None:
        self.locks: dict[str, threading.Lock] = {}
        self.calls: list[tuple[str, str]] = []

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        self.calls.append(("acquire", key))
        self.locks.setdefault(key, threading.Lock()).acquire()
        return True

    def release_lock(self, key: str, holder: str) -> None:
        self.calls.append(("release", key))
        self.locks[key].release()


def test_serializable_isolation_needs_a_lock_manager_and_uses_it() -> None:
    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
    def unlocked(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="not supported by provided configuration"):
        unlocked(1)

    locks = CountingLocks()
    calls = []

    @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=locks))
    def locked(x: int) -> int:
        calls.append(x)
        return x

    @flow
    def concurrent() -> list:
        return locked.map([7, 7, 7, 7]).result()

    assert concurrent() == [7, 7, 7, 7]
    assert calls == [7]  # the runs waited for the first and found its result
    assert [c[0] for c in locks.calls].count("acquire") == 4 == [c[0] for c in locks.calls].count("release")


def test_nested_task_runs_commit_their_cache_entries_when_the_outer_run_completes() -> None:
    @task(cache_key_fn=task_input_hash)
    def inner(x: int) -> int:
        return x * 2

    @task
    def outer(x: int, fail: bool) -> list:
        names = [inner(x, return_state=True).name, inner(x, return_state=True).name]
        if fail:
            raise ValueError("outer failed")
        return names

    assert outer(1, False) == ["Completed", "Completed"]  # not visible before outer completes
    assert outer(1, False) == ["Cached", "Cached"]
    assert outer.with_options(retries=0)(2, True, return_state=True).is_failed()
    assert outer(2, False) == ["Completed", "Completed"]  # the failed outer left no entries


def test_task_source_of_a_task_kept_as_source_text() -> None:
    class Stored:
        def __init__(self, source: str) -> None:
            self.source_code = source

    a = TaskRunContext.model_construct(task=Stored("def a():\n    return 1\n"))
    b = TaskRunContext.model_construct(task=Stored("def a():\n    return 2\n"))
    assert TASK_SOURCE.compute_key(a, None, None) != TASK_SOURCE.compute_key(b, None, None) is not None
