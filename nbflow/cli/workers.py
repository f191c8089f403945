"""`nbflow worker start` and `nbflow work-pool create|ls`: where deployment runs are executed."""

from __future__ import annotations

import argparse
import signal

from nbflow.cli import formatting as fmt
from nbflow.cli.base import Commands, CommandError, add_command, add_group, positive_int
from nbflow.cli.tables import format_table
from nbflow.deployments.client import LocalClient, connect
from nbflow.deployments.worker import Worker

DEFAULT_POOL = "default"
#: runs a worker executes at once unless told otherwise.
DEFAULT_LIMIT = 4


def register(commands: Commands) -> None:
    worker = add_group(commands, "worker", help="Workers: processes that run deployments' flow runs.")
    start = add_command(worker, "start", start_worker,
                        help="Start a worker that claims and runs flow runs of a work pool until Ctrl-C.",
                        description="Start a worker in this process: it claims the work pool's scheduled "
                                    "flow runs from the running nbflow server and runs them (notebooks with "
                                    "papermill, flows in a subprocess) until Ctrl-C.")
    start.add_argument("--pool", default=DEFAULT_POOL, metavar="NAME",
                       help=f"the work pool to take runs from (default {DEFAULT_POOL})")
    start.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                       help=f"run at most N flow runs at once (default {DEFAULT_LIMIT})")

    pools = add_group(commands, "work-pool", help="Work pools: named queues of flow runs that workers take.")
    create = add_command(pools, "create", create_work_pool, help="Create a work pool.")
    create.add_argument("name", metavar="NAME", help="the pool's name, e.g. gpu")
    create.add_argument("--concurrency-limit", type=positive_int, metavar="N",
                        help="run at most N of the pool's flow runs at once, over all its workers")
    add_command(pools, "ls", list_work_pools, help="List work pools with their limits and workers.")


def start_worker(args: argparse.Namespace) -> int:
    client = connect()
    if isinstance(client, LocalClient):
        raise CommandError("A worker needs a running nbflow server to take flow runs from, and none was found. "
                           "Start one with `nbflow server start` (or set NBFLOW_API_URL and NBFLOW_API_TOKEN "
                           "to a server's), then start the worker again.")
    worker = Worker(client, args.pool, limit=args.limit)
    _stop_on_signals(worker)
    print(f"worker {worker.id} polling pool {args.pool} at {client.url}", flush=True)
    worker.run_forever()  # until a signal: the runs it still has are stopped and recorded Crashed
    print(f"worker {worker.id} stopped.")
    return 0


def _stop_on_signals(worker: Worker) -> None:
    """Ctrl-C or SIGTERM: claim and start no more runs at once, stop the runs still executing
    (recorded Crashed) and exit; a second one interrupts whatever is left at once."""

    def stop(signum: int, frame: object) -> None:
        worker.stop_claiming("The worker was interrupted (Ctrl-C)" if signum == signal.SIGINT
                             else f"The worker was stopped ({signal.Signals(signum).name})")
        for again in (signal.SIGINT, signal.SIGTERM):
            signal.signal(again, _interrupt)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def create_work_pool(args: argparse.Namespace) -> int:
    pool = connect().create_work_pool(args.name, args.concurrency_limit)
    limit = pool.get("concurrency_limit")
    print(f"Created work pool {pool.get('name', args.name)!r} (concurrency limit: "
          f"{'none' if limit is None else limit}). Start a worker for it with "
          f"`nbflow worker start --pool {pool.get('name', args.name)}`.")
    return 0


def list_work_pools(args: argparse.Namespace) -> int:
    pools = connect().list_work_pools()
    if not pools:
        print("No work pools yet. Create one with `nbflow work-pool create NAME`; deployments use the pool "
              f"{DEFAULT_POOL!r} unless given --work-pool.")
        return 0
    rows = [(fmt.text(p.get("name")), fmt.text(p.get("concurrency_limit")), _workers(p.get("workers")),
             fmt.local_time(p.get("created"))) for p in pools]
    print(format_table(["NAME", "CONCURRENCY LIMIT", "WORKERS", "CREATED"], rows, right=[1, 2]))
    return 0


def _workers(value: object) -> str:
    """How many workers a pool has: the API may answer a count or a list of workers."""
    if isinstance(value, (list, tuple)):
        return str(len(value))
    return fmt.text(value)
