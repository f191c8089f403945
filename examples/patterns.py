"""Sequential, parallel (submit and map) and conditional flows, Prefect-style."""

from nbflow import flow, task, unmapped


@task
def fetch(item: int) -> int:
    return item * 10


@task
def combine(values: list[int], offset: int = 0) -> int:
    return sum(values) + offset


@task
def report(kind: str, value: int) -> str:
    return f"{kind}: {value}"


@flow
def sequential(n: int = 3) -> int:
    return combine([fetch(i) for i in range(n)])


@flow
def parallel(n: int = 10) -> int:
    futures = fetch.map(range(n))
    return combine.submit(futures.result(), offset=1).result()


@flow
def conditional(threshold: int = 50) -> str:
    total = combine([fetch(i) for i in range(4)])
    if total > threshold:
        return report("big", total)
    return report("small", total)


@flow
def fan_in(n: int = 5) -> list[str]:
    return report.map(unmapped("item"), fetch.map(range(n))).result()


if __name__ == "__main__":
    print(sequential(), parallel(), conditional(), fan_in())
