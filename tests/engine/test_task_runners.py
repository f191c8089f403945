"""Task runners: threads by default, a process pool, and a real Dask LocalCluster."""

from __future__ import annotations

import os
import time

import pytest

import nbflow
from nbflow import DaskTaskRunner, ProcessPoolTaskRunner, ThreadPoolTaskRunner, flow, task


def test_thread_pool_runs_submitted_tasks_in_parallel() -> None:
    @task
    def nap(x: int) -> int:
        time.sleep(0.2)
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def parallel() -> list[int]:
        return nap.map(range(8)).result()

    started = time.monotonic()
    assert parallel() == list(range(8))
    assert time.monotonic() - started < 0.2 * 8 / 2


def test_process_pool_runs_task_code_in_other_processes() -> None:
    @task
    def where(x: int) -> tuple[int, int]:
        import os as _os

        return x * x, _os.getpid()

    @task
    def fails() -> None:
        raise ValueError("from a worker process")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def in_processes() -> list:
        results = where.map([1, 2, 3]).result()
        fails.submit().wait()
        return [results, fails.submit().result(raise_on_failure=False)]

    results, error = in_processes()
    assert [r[0] for r in results] == [1, 4, 9]
    assert all(r[1] != os.getpid() for r in results)
    assert isinstance(error, ValueError) and "from a worker process" in str(error)
    states = nbflow.task_runs()["state"].value_counts().to_dict()
    assert states == {"Completed": 3, "Failed": 2}


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_runner_connects_to_an_existing_scheduler(dask_cluster) -> None:
    @task(retries=1)
    def work(x: int) -> tuple[int, int]:
        import os as _os

        return x + 1, _os.getpid()

    @flow(task_runner=DaskTaskRunner(address=dask_cluster.scheduler_address))
    def on_dask() -> list:
        return work.map(range(6)).result()

    results = on_dask()
    assert [r[0] for r in results] == [1, 2, 3, 4, 5, 6]
    worker_pids = {r[1] for r in results}
    assert os.getpid() not in worker_pids
    tasks = nbflow.task_runs()
    assert len(tasks) == 6 and set(tasks["state"]) == {"Completed"}


def test_dask_runner_starts_its_own_local_cluster() -> None:
    pytest.importorskip("distributed")

    @task
    def square(x: int) -> int:
        return x * x

    @task(timeout_seconds=0.5)
    def too_slow() -> None:
        import time as _time

        _time.sleep(10)

    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 2})

    @flow(task_runner=runner)
    def own_cluster() -> list:
        slow = too_slow.submit()
        slow.wait()
        return [square.map([2, 3]).result(), slow.state.name]

    assert own_cluster() == [[4, 9], "TimedOut"]
