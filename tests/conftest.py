"""Every test gets its own NBFLOW_HOME; buffered run events are flushed around each test."""

from __future__ import annotations

import pytest


def _flush() -> None:
    try:
        from nbflow.store.buffer import recorder
    except ImportError:  # while the package is being assembled
        return
    recorder.flush_quietly()


@pytest.fixture(autouse=True)
def nbflow_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("nbflow-home")
    _flush()
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    yield home
    _flush()
