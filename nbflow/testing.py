"""A throwaway nbflow home for users' own tests (like Prefect's `prefect_test_harness`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nbflow.store.buffer import recorder


@contextlib.contextmanager
def nbflow_test_harness() -> Iterator[Path]:
    """Point NBFLOW_HOME at a fresh temporary directory for the duration of the block."""
    recorder.flush_quietly()
    previous = os.environ.get("NBFLOW_HOME")
    with tempfile.TemporaryDirectory(prefix="nbflow-test-") as home:
        os.environ["NBFLOW_HOME"] = home
        try:
            yield Path(home)
        finally:
            recorder.flush_quietly()
            if previous is None:
                os.environ.pop("NBFLOW_HOME", None)
            else:
                os.environ["NBFLOW_HOME"] = previous
