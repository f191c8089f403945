"""The JupyterLab extension as shipped: its prebuilt bundle matches its sources, `pip install`
installs and enables it, and its TypeScript unit tests pass (when Node is here to run them).

The bundle in nbflow/labextension/ is committed so that installing nbflow needs no Node; building
it does (scripts/build_labextension.sh). The build records a fingerprint of every source it read,
and the first test recomputes it, so a change to jupyter_extension/ (or to the dashboard modules
it bundles) without a rebuild fails here, with no Node needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "jupyter_extension"
SHIPPED = REPO / "nbflow" / "labextension"
INSTALLED = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbflow"


def _stamp_module():
    spec = importlib.util.spec_from_file_location("nbflow_lab_stamp", SOURCE / "stamp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_build_was_made_from_the_current_sources() -> None:
    recorded = json.loads((SHIPPED / "build_source.json").read_text())["sources"]
    current = _stamp_module().fingerprint()
    changed = sorted(p for p in set(recorded) | set(current) if recorded.get(p) != current.get(p))
    assert not changed, (f"nbflow/labextension was built from other sources than these: {', '.join(changed)} "
                         "changed since. Run `bash scripts/build_labextension.sh` and commit nbflow/labextension/.")
    assert "jupyter_extension/src/index.ts" in current and "nbflow/server/static/js/params.js" in current
    package = json.loads((SHIPPED / "package.json").read_text())
    entry = package["jupyterlab"]["_build"]["load"]
    assert (SHIPPED / entry).is_file(), f"the shipped package.json loads {entry}, which is not in nbflow/labextension"


def _digest(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "build_source.json"}


def test_pip_install_installs_and_enables_the_extension() -> None:
    if not INSTALLED.is_dir():
        pytest.skip(f"nbflow is not installed into {sys.prefix} with its lab extension (pip install . does that)")
    assert _digest(INSTALLED) == _digest(SHIPPED), (
        f"{INSTALLED} is not the extension this checkout ships: reinstall (pip install --no-deps --force-reinstall .)")
    listed = subprocess.run([sys.executable, "-m", "jupyterlab.labextensions", "list"], capture_output=True,
                            text=True, timeout=120)
    line = next((ln for ln in (listed.stdout + listed.stderr).splitlines() if ln.strip().startswith("nbflow ")), "")
    assert "enabled" in line and "OK" in line and "(python, nbflow)" in line, listed.stdout + listed.stderr


def test_typescript_unit_tests() -> None:
    npx = shutil.which("npx")
    if npx is None or not (SOURCE / "node_modules" / ".bin" / "vitest").exists():
        pytest.skip("Node or jupyter_extension/node_modules is missing: bash scripts/build_labextension.sh --test "
                    "installs them and runs these tests")
    done = subprocess.run([npx, "vitest", "run", "--reporter=dot"], cwd=SOURCE, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
