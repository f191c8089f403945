"""The server's background work: the scheduler loop and the in-server worker.

The scheduler ingests the run records clients spooled while the store was out of their reach,
marks Crashed the runs of dead processes (also those only noted in their start logs), creates
the runs of scheduled deployments ahead of time and crashes the runs of workers that stopped
heartbeating; the in-server worker (on by default) executes the due runs of the `default`
pool, woken at once when runs are created or cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from nbflow import settings
from nbflow.deployments import service
from nbflow.errors import NbflowError
from nbflow.store import spool

logger = logging.getLogger("nbflow.server")


class Background:
    """Starts and stops the scheduler thread and the in-server worker."""

    def __init__(self, store: Any, *, worker: bool = True, worker_limit: int = 4, pool: str = "default") -> None:
        self.store = store
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.worker = None
        if worker:
            from nbflow.deployments.client import LocalClient
            from nbflow.deployments.worker import Worker

            self.worker = Worker(LocalClient(store), pool, limit=worker_limit, poll_seconds=2.0)

    def start(self) -> None:
        scheduler = threading.Thread(target=self._schedule_forever, name="nbflow-scheduler", daemon=True)
        scheduler.start()
        self._threads.append(scheduler)
        if self.worker is not None:
            service.run_listeners.append(self.worker.wake)
            self._threads.append(self.worker.start_in_thread())

    def stop_claiming(self) -> None:
        """The in-server worker claims and starts no run from now on (safe in a signal handler)."""
        if self.worker is not None:
            self.worker.stop_claiming("The nbflow server stopped")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling; runs of the in-server worker still executing end Crashed. Waits at most
        `timeout` seconds for the threads (a run's process is killed in well under that)."""
        self._stop.set()
        if self.worker is not None:
            if self.worker.wake in service.run_listeners:
                service.run_listeners.remove(self.worker.wake)
            self.worker.stop("The nbflow server stopped")
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))

    def _recover_runs(self) -> None:
        """Ingest spooled run records, then crash the runs of processes that died (one pass)."""
        try:
            sent = spool.replay(self.store.write, self.store.path.parent)
            if sent:
                logger.info("nbflow: ingested %d spooled run records", sent)
            self.store.sweep()
        except NbflowError as exc:
            logger.warning("nbflow: could not ingest spooled runs or mark crashed ones: %s", exc)
        except Exception:  # the scheduling below must go on
            logger.exception("nbflow: ingesting spooled runs failed")

    def _schedule_forever(self) -> None:
        while not self._stop.is_set():
            self._recover_runs()
            try:
                service.schedule_pass(self.store)
                crashed = service.crash_stale_runs(self.store)
                if crashed:
                    logger.warning("nbflow: %d run(s) of workers that stopped heartbeating are Crashed", len(crashed))
            except NbflowError as exc:
                logger.warning("nbflow scheduler: %s", exc)
            except Exception:  # keep scheduling whatever one pass hit
                logger.exception("nbflow scheduler pass failed")
            self._stop.wait(settings.scheduler_seconds())
