"""Every test gets its own NBFLOW_HOME; buffered run events are flushed around each test; deployments
may use files under the tests' tmp dirs."""

from __future__ import annotations

import pytest


def _flush() -> None:
    try:
        from nbflow.store.buffer import recorder
    except ImportError:  # while the package is being assembled
        return
    recorder.flush_quietly()


@pytest.fixture(autouse=True, scope="session")
def allowed_roots(tmp_path_factory: pytest.TempPathFactory):
    """Deployments may use the notebooks and flow files tests write in their tmp dirs (the servers
    tests start inherit it); a test of the confinement itself sets NBFLOW_ALLOWED_ROOTS its own way."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBFLOW_ALLOWED_ROOTS", str(tmp_path_factory.getbasetemp()))
        yield


@pytest.fixture(autouse=True)
def nbflow_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.mktemp("nbflow-home")
    _flush()
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    yield home
    _flush()


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs mounted in tmp_path: a real disk that fills up (needs root, as here and in CI)."""
    import subprocess

    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)],
                                capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("the mount command is not available, so no small disk can be made")
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root): {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
