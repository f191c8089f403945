"""A worker: claims due deployment runs of one work pool and executes each in a child process.

The same class runs inside the server (the default worker, on the store directly) and as
`nbflow worker start` in another process or machine (through the REST API). It claims runs
atomically, heartbeats while it has runs (so the server can crash the runs of a worker that
died), stops runs when asked to cancel them, and reports each run's final state.

Stopping has two steps. stop_claiming() (safe in a signal handler) closes the gate: from its
return on, no run is claimed or started. stop() also stops the runs still executing; they are
recorded Crashed. A run claimed while the gate closed is recorded Crashed without being started.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from typing import Any

from nbflow import settings
from nbflow.deployments.paths import PathNotAllowedError
from nbflow.errors import NbflowError

logger = logging.getLogger("nbflow.worker")


def new_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """Runs the due runs of `pool`, at most `limit` at a time."""

    def __init__(self, client: Any, pool: str = "default", *, limit: int = 4,
                 poll_seconds: float | None = None, env: dict[str, str] | None = None) -> None:
        if limit < 1:
            raise NbflowError(f"A worker runs at least one run at a time; got limit={limit}.")
        self.client = client
        self.pool = pool
        self.limit = limit
        self.id = new_worker_id()
        self.poll_seconds = poll_seconds if poll_seconds is not None else settings.worker_poll_seconds()
        self.env = dict(env or {})
        url, token = getattr(client, "url", None), getattr(client, "token", None)
        if url and token:  # the runs' kernels and flows send their records to the same server
            self.env.setdefault("NBFLOW_API_URL", url)
            self.env.setdefault("NBFLOW_API_TOKEN", token)
        self._running: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_heartbeat = 0.0
        #: held while deciding whether a run may start and starting its process, and by
        #: stop_claiming(): no run starts once that returned. Nothing under it logs, locks or waits
        #: for another thread, so a signal handler may take it (reentrant: handlers can nest).
        self._gate = threading.RLock()
        #: False once stop_claiming() ran: a plain flag, so a signal handler can set it
        self._claiming = True
        self._stop_reason = "The worker stopped"

    def wake(self) -> None:
        """Look for runs now (new runs were created, or a cancel was asked for)."""
        self._wake.set()

    def run_forever(self) -> None:
        """Claim and run until stop() or stop_claiming() (or Ctrl-C); the runs still executing are
        then stopped and recorded Crashed."""
        threading.Thread(target=self._send_debug_data, name="nbflow-debug-data", daemon=True).start()
        try:
            next_step = 0.0
            while not self._stop.is_set() and self._claiming:
                if time.monotonic() >= next_step:
                    self.step()
                    next_step = time.monotonic() + self.poll_seconds
                # a signal handler only sets a flag (setting an Event could deadlock it): look twice a second
                if self._wake.wait(min(self.poll_seconds, 0.5)):
                    self._wake.clear()
                    next_step = 0.0
            if not self._stop.is_set():  # stop_claiming() ended the loop, e.g. from a signal handler
                logger.info("nbflow worker %s is stopping (%s): it claims no more runs and stops the %d it has",
                            self.id, self._stop_reason, len(self._running))
                self.stop(self._stop_reason)
        except KeyboardInterrupt:
            self.stop("The worker was interrupted (Ctrl-C)")
        finally:
            self._join()

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name=f"nbflow-worker-{self.pool}", daemon=True)
        thread.start()
        return thread

    def stop_claiming(self, reason: str | None = None) -> None:
        """Claim and start no more runs, from the moment this returns; runs executing go on.
        `reason` ("The nbflow server stopped") goes into the messages of the runs it stops.

        Safe in a signal handler: it only waits for the gate, which run threads hold just while
        starting a process, never while waiting for the main thread.
        """
        with self._gate:
            self._claiming = False
            if reason:
                self._stop_reason = reason

    def stop(self, reason: str = "The worker stopped") -> None:
        """Stop claiming; runs still executing are killed and recorded Crashed: "`reason` while the run
        was executing"."""
        self.stop_claiming(reason)
        self._stop.set()
        with self._lock:
            events = [event for _, event in self._running.values()]
        for event in events:
            event.set()
        self._wake.set()

    def step(self) -> None:
        """One round: heartbeat (and stop runs the server wants stopped), then claim free slots."""
        try:
            self._heartbeat()
            free = self.limit - len(self._running)
            if free > 0 and self._claiming and not self._stop.is_set():
                for claimed in self.client.claim_runs(self.pool, self.id, free):
                    self._start(claimed)
        except NbflowError as exc:  # the server is away or refused: say so, try again next round
            logger.warning("nbflow worker %s: %s", self.id, exc)

    def _heartbeat(self) -> None:
        with self._lock:
            run_ids = list(self._running)
        now = time.monotonic()
        if not run_ids and now - self._last_heartbeat < settings.heartbeat_seconds():
            return
        answer = self.client.heartbeat(self.id, self.pool, run_ids)
        self._last_heartbeat = now
        with self._lock:
            for run_id in answer.get("cancel", []):
                if run_id in self._running:
                    self._running[run_id][1].set()

    def _start(self, claimed: dict[str, Any]) -> None:
        cancel = threading.Event()
        if self._claiming:
            logger.info("nbflow worker %s took flow run %s", self.id, describe_run(claimed))
            thread = threading.Thread(target=self._execute, args=(claimed, cancel), daemon=True,
                                      name=f"nbflow-run-{claimed['id'][:8]}")
        else:  # claimed as the worker began to stop: record it, do not run it
            thread = threading.Thread(target=self._not_started, args=(claimed,), daemon=True,
                                      name=f"nbflow-unstarted-{claimed['id'][:8]}")
        with self._lock:
            self._running[claimed["id"]] = (thread, cancel)
        thread.start()

    def _execute(self, claimed: dict[str, Any], cancel: threading.Event) -> None:
        from nbflow.deployments.execution import Execution, Outcome, RunSpec

        run_id = claimed["id"]
        try:
            spec = RunSpec.from_claim(claimed)
            execution = Execution(spec, env=self.env)
            output = str(execution.output_notebook) if execution.output_notebook else None
            self._report(run_id, "Running", f"Running on worker {self.id}", output)
            with self._gate:
                started = self._claiming
                if started:
                    execution.start()
                    # stamped now, emitted after the gate: logging takes locks a signal handler may hold
                    record = _stamped("nbflow worker %s started flow run %s (process %s)", self.id, run_id[:8],
                                      execution.pid)
            if started:
                logger.handle(record)
                outcome = execution.wait(cancel=cancel)
                if outcome.state != "Completed":
                    self._send_debug_data(run_id)  # before its state: the server can debug it once it shows
                if self._stop.is_set() and outcome.state == "Cancelled":
                    outcome = Outcome("Crashed", f"{self._stop_reason} while the run was executing",
                                      outcome.output_notebook)
            else:
                outcome = Outcome("Crashed", f"{self._stop_reason} before the run's process started")
        except _Gone:
            outcome = None
        except PathNotAllowedError as exc:  # its file moved out of the allowed roots since it was deployed
            logger.warning("nbflow worker %s did not run flow run %s: %s", self.id, run_id[:8], exc)
            outcome = Outcome("Failed", f"Not run: {exc}")
        except Exception as exc:  # the run must end recorded, whatever broke here
            logger.exception("nbflow worker %s could not run %s", self.id, run_id)
            outcome = Outcome("Crashed", f"The worker could not run it: {type(exc).__name__}: {exc}")
        self._finish(run_id, outcome)

    def _send_debug_data(self, run_id: str | None = None) -> None:
        """A worker with a home of its own sends the server what failed runs kept that the server lacks:
        a run's process normally sends it as it fails, but it may have been killed meanwhile, or the
        server away (then all of it, once the worker starts)."""
        url, token = getattr(self.client, "url", None), getattr(self.client, "token", None)
        if not (url and token):
            return  # the server's own worker: its runs keep their data in the server's home
        from nbflow.store.api_store import ApiStore
        from nbflow.store.debug_sync import share_pending

        try:
            sent = share_pending(ApiStore(url, token, lock_timeout=10.0), run_id)
        except Exception as exc:  # noqa: BLE001 - it stays here, and the next run or start tries again
            logger.warning("nbflow worker %s could not send the debug data of failed runs to the server (it stays "
                           "in %s): %s", self.id, settings.home() / "debug", exc)
            return
        if sent:
            logger.info("nbflow worker %s sent the server the debug data of %d failed task run(s)", self.id, sent)

    def _not_started(self, claimed: dict[str, Any]) -> None:
        """A run claimed as the worker began to stop: recorded Crashed, never started."""
        from nbflow.deployments.execution import Outcome

        logger.info("nbflow worker %s is stopping: flow run %s, claimed meanwhile, is not started",
                    self.id, claimed["id"][:8])
        self._finish(claimed["id"], Outcome("Crashed", f"{self._stop_reason} as the run was claimed; it was "
                                                       "not started"))

    def _finish(self, run_id: str, outcome: Any) -> None:
        """Record how the run ended (unless it is no longer ours) and free its slot."""
        try:
            if outcome is not None:
                self._report(run_id, outcome.state, outcome.message, outcome.output_notebook)
                logger.info("nbflow worker %s: flow run %s ended %s: %s", self.id, run_id[:8], outcome.state,
                            outcome.message)
        except _Gone:
            pass
        finally:
            with self._lock:
                self._running.pop(run_id, None)
            self._wake.set()

    def _report(self, run_id: str, state: str, message: str, output_notebook: str | None) -> None:
        """Record a state, retrying while the server is away; _Gone if the run is no longer ours."""
        deadline = time.monotonic() + 300
        while True:
            try:
                self.client.set_run_state(run_id, state, message, output_notebook=output_notebook,
                                          worker_id=self.id)
                return
            except NbflowError as exc:
                if getattr(exc, "status", None) in (404, 409) or isinstance(exc, LookupError):
                    raise _Gone() from exc  # cancelled, crashed or deleted meanwhile
                if output_notebook and getattr(exc, "field", None) == "output_notebook":
                    # e.g. a worker whose NBFLOW_HOME is outside the server's roots: the state matters more
                    logger.warning("nbflow worker %s: the server will not show flow run %s's output notebook: "
                                   "%s", self.id, run_id[:8], exc)
                    output_notebook = None
                    continue
                if time.monotonic() > deadline:
                    logger.error("nbflow worker %s could not record %s of run %s: %s", self.id, state, run_id, exc)
                    raise _Gone() from exc
                time.sleep(1.0)

    def _join(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [thread for thread, _ in self._running.values()]
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.1))


def _stamped(message: str, *args: Any) -> logging.LogRecord:
    """An INFO record of the worker's logger, timed now, to emit later with logger.handle()."""
    return logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, args, None)


def describe_run(claimed: dict[str, Any]) -> str:
    """A claimed run in a log line: its id, its deployment's name and what it runs."""
    target = (f"notebook {claimed['notebook']}" if claimed.get("notebook")
              else f"flow {claimed.get('flow_name')} ({claimed.get('entrypoint')})")
    deployment = claimed.get("deployment_name") or claimed.get("deployment_id")
    return f"{claimed['id']} of deployment {deployment!r}: {target}"


class _Gone(Exception):
    """The run is no longer this worker's to report (cancelled, crashed or deleted meanwhile)."""
