"""The seed ETL flow, as a Prefect user writes it — only the import changed.

Run it twice: the second run's `transform` is a cache hit (state Cached).
"""

from datetime import timedelta
import json
import random

from nbflow import flow, get_run_logger, task
from nbflow.tasks import task_input_hash


@task(retries=3, retry_delay_seconds=60)
def extract(n_orders: int, seed: int) -> list[dict]:
    """Fetch raw orders (generated here, so the example needs no network)."""
    rng = random.Random(seed)
    return [{"order_id": i, "amount": round(rng.uniform(5, 500), 2), "country": rng.choice("DE FR US".split())}
            for i in range(n_orders)]


@task(cache_key_fn=task_input_hash, cache_expiration=timedelta(hours=1))
def transform(orders: list[dict]) -> dict[str, float]:
    """Revenue per country: cached for an hour per distinct input."""
    revenue: dict[str, float] = {}
    for order in orders:
        revenue[order["country"]] = round(revenue.get(order["country"], 0.0) + order["amount"], 2)
    return revenue


@task
def load(revenue: dict[str, float]) -> str:
    get_run_logger().info("loaded %d countries", len(revenue))
    return json.dumps(revenue, sort_keys=True)


@flow(log_prints=True)
def etl(n_orders: int = 1000, seed: int = 7) -> str:
    orders = extract(n_orders, seed)
    summary = load(transform(orders))
    print(f"revenue by country: {summary}")
    return summary


if __name__ == "__main__":
    etl()
