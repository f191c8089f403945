"""A flow run that resumes a failed one at its failed task (`nbflow flow-run retry --from-failed`).

The process running the retry sets `ACTIVE` before calling the flow. Task calls are matched to the
old run's task runs by task and call order; a call whose old run produced an input of the failed
task gets that value back (kept with the failure) instead of running again, recorded `Cached`.
Every other task runs as usual (a cached result is still a cache hit). One process, one retry:
nothing here is looked at unless `ACTIVE` is set.
"""

from __future__ import annotations

import threading
from typing import Any

MISS = object()


class Resume:
    """Values the old run's task runs produced, by (task name, n-th call of that task in the run)."""

    def __init__(self, values: dict[tuple[str, int], tuple[Any, str]], failed_run_id: str) -> None:
        #: (task name, call index) -> (value, id of the old task run that produced it)
        self.values = values
        self.failed_run_id = failed_run_id
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, task_name: str) -> tuple[Any, str] | Any:
        """The kept value of this call of the task, or MISS (then the task runs)."""
        with self._lock:
            index = self._calls.get(task_name, 0)
            self._calls[task_name] = index + 1
        return self.values.get((task_name, index), MISS)


#: the retry this process runs, if any.
ACTIVE: Resume | None = None
