"""Time limits of store queries: one watchdog thread interrupts a DuckDB connection past its limit."""

from __future__ import annotations

import contextlib
import heapq
import os
import threading
import time
from typing import Any, Iterator


class _Watchdog:
    """One thread that interrupts queries past their time limit (a timer thread per query would
    cost a thread start on every read)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list] = []  # [deadline, seq, con, expired event, active]
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def watch(self, seconds: float, con: Any, expired: threading.Event) -> list:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():  # none yet, or forked
                self._pid, self._heap = os.getpid(), []
                self._thread = threading.Thread(target=self._run, name="nbflow-query-limit", daemon=True)
                self._thread.start()
            self._seq += 1
            entry = [time.monotonic() + seconds, self._seq, con, expired, True]
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()
            return entry

    @staticmethod
    def cancel(entry: list) -> None:
        entry[4] = False
        entry[2] = None  # the connection may be closed and freed

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and not self._heap[0][4]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, con, expired, active = heapq.heappop(self._heap)
                if active and con is not None:
                    expired.set()
                    with contextlib.suppress(Exception):
                        con.interrupt()


_watchdog = _Watchdog()


@contextlib.contextmanager
def time_limit(con: Any, seconds: float) -> Iterator[threading.Event]:
    """Interrupt what `con` runs once `seconds` have passed (0: no limit); the event tells it happened."""
    expired = threading.Event()
    if not seconds or seconds <= 0:
        yield expired
        return
    entry = _watchdog.watch(seconds, con, expired)
    try:
        yield expired
    finally:
        _Watchdog.cancel(entry)
