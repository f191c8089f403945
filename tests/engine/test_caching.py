"""Caching in the engine: opt-in, across processes, policies, expiry, refusals and fallbacks."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nbflow
from nbflow import INPUTS, NO_CACHE, TASK_SOURCE, flow, task
from nbflow.tasks import task_input_hash

CALLS: list[int] = []


@task(cache_key_fn=task_input_hash, cache_expiration=dt.timedelta(hours=1))
def cached_square(x: int) -> int:
    CALLS.append(x)
    return x * x


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_caching_is_opt_in() -> None:
    counter = []

    @task
    def plain(x: int) -> int:
        counter.append(x)
        return x

    @flow
    def twice() -> None:
        plain(1)
        plain(1)

    twice()
    twice()
    assert len(counter) == 4
    assert set(nbflow.task_runs()["state"]) == {"Completed"}


def test_second_call_with_same_inputs_is_a_cached_run() -> None:
    @flow
    def squares() -> list[int]:
        return [cached_square(3), cached_square(3), cached_square(4)]

    assert squares() == [9, 9, 16]
    assert squares() == [9, 9, 16]
    assert CALLS == [3, 4]
    states = nbflow.task_runs()["state"].value_counts().to_dict()
    assert states == {"Cached": 4, "Completed": 2}
    cached = nbflow.task_runs()
    assert cached.loc[cached["state"] == "Cached", "cache_key"].notna().all()


def test_cache_survives_processes_and_lookup_never_opens_the_database(nbflow_home: Path) -> None:
    script = textwrap.dedent("""
        import sys, time
        from datetime import timedelta
        from nbflow import flow, task
        from nbflow.tasks import task_input_hash

        @task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
        def slow_square(x):
            print("computed", flush=True)
            return {"value": x * x}

        @flow
        def f(x):
            return slow_square(x)

        started = time.perf_counter()
        print(f(int(sys.argv[1])), flush=True)
    """)
    env = {**os.environ, "NBFLOW_HOME": str(nbflow_home)}
    first = subprocess.run([sys.executable, "-c", script, "5"], env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "computed" in first.stdout
    # Hold the database file in another process: a cache hit must not need it.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(nbflow_home / 'nbflow.duckdb')!r})
        print("holding", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        second = subprocess.run([sys.executable, "-c", script, "5"], capture_output=True, text=True,
                                timeout=60, env={**env, "NBFLOW_STORE_LOCK_TIMEOUT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert "computed" not in second.stdout
    assert "{'value': 25}" in second.stdout
    tasks = nbflow.task_runs()
    assert "Cached" in set(tasks["state"]) or "could not be saved" in second.stderr


def test_cache_expiration_and_refresh_cache() -> None:
    @task(cache_key_fn=task_input_hash, cache_expiration=dt.timedelta(seconds=0.3))
    def short_lived(x: int) -> int:
        CALLS.append(x)
        return x

    short_lived(1)
    short_lived(1)
    assert CALLS == [1]
    time.sleep(0.4)
    short_lived(1)
    assert CALLS == [1, 1]
    refreshing = cached_square.with_options(refresh_cache=True)
    refreshing(7)
    refreshing(7)
    assert CALLS == [1, 1, 7, 7]
    cached_square(7)  # the refreshed entry serves normal calls
    assert CALLS == [1, 1, 7, 7]


def test_cache_policies_inputs_task_source_and_no_cache() -> None:
    @task(cache_policy=INPUTS + TASK_SOURCE)
    def by_inputs(x: int) -> int:
        CALLS.append(x)
        return x

    by_inputs(1)
    by_inputs(1)
    by_inputs(2)
    assert CALLS == [1, 2]

    @task(cache_policy=NO_CACHE)
    def never(x: int) -> int:
        CALLS.append(x)
        return x

    never(5)
    never(5)
    assert CALLS == [1, 2, 5, 5]
    assert (NO_CACHE + INPUTS) is not None


def test_task_source_change_misses_the_cache(tmp_path: Path) -> None:
    calls = []

    def define(body: str):
        namespace: dict = {"task": task, "TASK_SOURCE": TASK_SOURCE, "INPUTS": INPUTS, "calls": calls}
        source = textwrap.dedent(f"""
            @task(cache_policy=INPUTS + TASK_SOURCE)
            def compute(x):
                calls.append(x)
                return {body}
        """)
        path = tmp_path / f"mod_{len(calls)}_{abs(hash(body))}.py"
        path.write_text(source)
        exec(compile(source, str(path), "exec"), namespace)
        return namespace["compute"]

    assert define("x + 1")(1) == 2
    assert define("x + 1")(1) == 2
    assert len(calls) == 1
    assert define("x + 2")(1) == 3
    assert len(calls) == 2


def test_dataframe_results_are_parquet_and_queryable_with_sql() -> None:
    pd = pytest.importorskip("pandas")

    @task(cache_policy=INPUTS)
    def frame(n: int):
        CALLS.append(n)
        return pd.DataFrame({"a": range(n), "b": [f"r{i}" for i in range(n)]})

    first = frame(4)
    second = frame(4)
    assert CALLS == [4]
    pd.testing.assert_frame_equal(first, second)
    run = nbflow.task_runs().iloc[0]
    assert run["result_format"] == "parquet" and run["result_path"].endswith(".parquet")
    total = nbflow.sql(f"select sum(a) as s from read_parquet('{run['result_path']}')")
    assert int(total["s"].iloc[0]) == 6


def test_tampered_pickled_entry_is_refused_and_recomputed() -> None:
    @task(cache_policy=INPUTS)
    def obj(x: int) -> set:
        CALLS.append(x)
        return {x, "a set is not JSON"}

    obj(1)
    path = Path(nbflow.task_runs().iloc[0]["result_path"])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    state = obj(1, return_state=True)
    assert state.name == "Completed" and state.result() == {1, "a set is not JSON"}
    assert CALLS == [1, 1]
    warnings = nbflow.sql("select message from logs where level_name = 'WARNING'")["message"]
    assert any("refused" in m for m in warnings)


def test_unfingerprintable_input_runs_uncached_with_a_warning() -> None:
    @task(cache_policy=INPUTS)
    def uses_lock(lock: object) -> int:
        CALLS.append(1)
        return 1

    lock = threading.Lock()
    uses_lock(lock)
    uses_lock(lock)
    assert CALLS == [1, 1]
    assert set(nbflow.task_runs()["state"]) == {"Completed"}
    warnings = nbflow.sql("select message from logs where level_name = 'WARNING'")["message"].tolist()
    assert any("computing cache key" in m and "lock" in m.lower() and "cache_policy=NO_CACHE" in m
               for m in warnings)


def test_unhashable_input_under_task_input_hash_is_not_a_false_hit() -> None:
    @task(cache_key_fn=task_input_hash)
    def takes_generator(gen: object) -> int:
        CALLS.append(1)
        return 1

    takes_generator(x for x in range(3))
    takes_generator(x for x in range(3))
    assert CALLS == [1, 1]


def test_non_serializable_result_completes_with_a_warning_as_in_prefect() -> None:
    @task(persist_result=True)
    def returns_lock() -> object:
        return threading.Lock()

    state = returns_lock(return_state=True)
    assert state.is_completed() and type(state.result()).__name__ == "lock"
    warnings = nbflow.sql("select message from logs where level_name = 'WARNING'")["message"].tolist()
    assert any("Encountered an error while serializing result" in m and "lock" in m.lower() for m in warnings)

    @task(cache_policy=INPUTS)
    def cached_lock(x: int) -> object:
        CALLS.append(x)
        return threading.Lock()

    assert cached_lock(1, return_state=True).is_completed()  # caching is best effort
    cached_lock(1)
    assert CALLS == [1, 1]


def test_unfingerprintable_upstream_result_is_keyed_by_the_upstream_cache_key() -> None:
    class Handle:
        """Holds a lock: no fingerprint of its own."""

        def __init__(self, n: int) -> None:
            self.n = n
            self.lock = threading.Lock()

    @task(cache_policy=INPUTS)
    def open_handle(n: int) -> Handle:
        return Handle(n)  # cannot be pickled: not persisted (a warning), but it has a key

    @task(cache_policy=INPUTS)
    def use(handle: Handle) -> int:
        CALLS.append(handle.n)
        return handle.n

    @flow
    def chained(n: int) -> int:
        return use(open_handle(n))

    assert chained(1) == 1
    keys = nbflow.task_runs().set_index("task_name")["cache_key"]
    assert keys["use"] is not None and keys["open_handle"] is not None


def test_a_custom_policy_may_return_any_string_key() -> None:
    from nbflow.cache_policies import CachePolicy

    class ByName(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters):
            return f"name:{inputs['name']}"

    @task(cache_policy=ByName())
    def greet(name: str) -> str:
        CALLS.append(1)
        return f"hi {name}"

    assert greet("a") == greet("a") == "hi a"
    assert CALLS == [1]
