"""A submitted task that submits tasks and waits on them never deadlocks, however deep."""

from __future__ import annotations

import pytest

from nbflow import ThreadPoolTaskRunner, flow, task, wait


@task
def countdown(n: int) -> int:
    return 0 if n == 0 else countdown.submit(n - 1).result() + 1


@task
async def async_countdown(n: int) -> int:
    return 0 if n == 0 else async_countdown.submit(n - 1).result() + 1


@task
def fan_out(depth: int) -> int:
    if depth == 0:
        return 1
    futures = [fan_out.submit(depth - 1) for _ in range(2)]
    wait(futures)
    return sum(f.result() for f in futures)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [None, 1, 2])
def test_recursive_submits_complete(workers):
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=workers))
    def deep() -> tuple:
        return countdown.submit(35).result(), async_countdown.submit(35).result(), fan_out.submit(6).result()

    assert deep() == (35, 35, 64)


@pytest.mark.timeout(60)
def test_mapped_tasks_that_submit_complete():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def mapped() -> list:
        return fan_out.map([3, 3, 3, 3]).result()

    assert mapped() == [8, 8, 8, 8]


@pytest.mark.timeout(60)
def test_async_flow_with_nested_submits():
    import asyncio

    @flow
    async def deep_async() -> int:
        return async_countdown.submit(30).result()

    assert asyncio.run(deep_async()) == 30
