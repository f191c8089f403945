"""A throwaway venv with Prefect 3 for the side-by-side benchmarks.

    python3 benchmarks/prefect_env.py          # create or reuse it, print the Prefect version
    python3 benchmarks/prefect_env.py --force  # rebuild it

Imported by bench_tasks.py and bench_startup.py (`ensure()`, `prefect_env()`).

The venv lives in benchmarks/.prefect-venv (git-ignored). Prefect 3.9.1 pins a certifi
newer than some package indexes hold, so its dependencies are installed first (from the
wheel's own metadata, certifi unpinned) and then the prefect wheel with --no-deps; if that
fails, prefect==3.8.8 is installed the ordinary way.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".prefect-venv"
MARKER = VENV / ".bench-prefect-version"
PREFERRED = "3.9.1"
FALLBACK = "3.8.8"


class PrefectUnavailable(RuntimeError):
    """Prefect could not be installed; str() is a one-line reason."""


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _run(cmd: list[str], log: list[str], timeout: float = 1800) -> bool:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    log.append("$ " + " ".join(cmd) + "\n" + proc.stdout)
    return proc.returncode == 0


def _last_error(log: list[str]) -> str:
    for line in reversed("\n".join(log).splitlines()):
        line = line.strip()
        if line.startswith("ERROR") or "error" in line.lower():
            return line[:200]
    return "see pip output (-v)"


def _installed_version(py: Path) -> str | None:
    if not py.exists():
        return None
    proc = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('prefect'))"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _install_no_deps(py: Path, version: str, log: list[str]) -> bool:
    """Dependencies from the wheel's metadata (certifi unpinned), then the wheel with --no-deps."""
    pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory() as tmp:
        if not _run(pip + ["download", "--quiet", "--no-deps", "-d", tmp, f"prefect=={version}"], log):
            return False
        wheels = list(Path(tmp).glob("prefect-*.whl"))
        if not wheels:
            log.append("no prefect wheel downloaded")
            return False
        with zipfile.ZipFile(wheels[0]) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            meta = zf.read(meta_name).decode()
        reqs = []
        for line in meta.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = line.split(":", 1)[1].strip()
            if "extra ==" in req:
                continue
            if re.match(r"certifi\b", req):
                req = "certifi" + (";" + req.split(";", 1)[1] if ";" in req else "")
            reqs.append(req)
        req_file = Path(tmp) / "requirements.txt"
        req_file.write_text("\n".join(reqs) + "\n")
        if not _run(pip + ["install", "--quiet", "-r", str(req_file)], log):
            return False
        return _run(pip + ["install", "--quiet", "--no-deps", str(wheels[0])], log)


def ensure(force: bool = False, verbose: bool = False) -> tuple[Path, str]:
    """Return (python of the venv, Prefect version), creating the venv when needed.

    Raises PrefectUnavailable with a one-line reason when Prefect cannot be installed.
    """
    py = venv_python()
    if not force and MARKER.exists():
        version = _installed_version(py)
        if version:
            return py, version
    if force and VENV.exists():
        shutil.rmtree(VENV)
    log: list[str] = []
    try:
        if not py.exists():
            print(f"prefect_env: creating {VENV} (one-off, a few minutes)", file=sys.stderr)
            if not _run([sys.executable, "-m", "venv", str(VENV)], log, timeout=300):
                raise PrefectUnavailable(f"'{sys.executable} -m venv' failed: {_last_error(log)}")
        ok = _install_no_deps(py, PREFERRED, log)
        if not ok:
            print(f"prefect_env: prefect {PREFERRED} did not install; trying {FALLBACK}", file=sys.stderr)
            ok = _run([str(py), "-m", "pip", "--disable-pip-version-check", "install", "--quiet",
                       f"prefect=={FALLBACK}"], log)
        if not ok:
            raise PrefectUnavailable(f"pip could not install prefect {PREFERRED} or {FALLBACK}: {_last_error(log)}")
        version = _installed_version(py)
        if not version:
            raise PrefectUnavailable("prefect installed but does not import in the venv")
        # importing it once compiles the bytecode, so the first timed import is not a cold compile
        subprocess.run([str(py), "-c", "import prefect"], env=prefect_env(tempfile.gettempdir()),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        MARKER.write_text(version + "\n")
        return py, version
    except subprocess.TimeoutExpired as exc:
        raise PrefectUnavailable(f"installing prefect timed out ({exc.timeout:.0f} s)") from None
    finally:
        if verbose:
            print("\n".join(log), file=sys.stderr)


def prefect_env(prefect_home: str | os.PathLike) -> dict[str, str]:
    """Environment for a Prefect subprocess: its own PREFECT_HOME, no telemetry, quiet logs.

    No PREFECT_API_URL: Prefect starts its temporary local server, as a new user's first run does.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        # a fresh home's first server start takes 14-16 s here; the default 20 s is too tight on a busy box
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PYTHONWARNINGS": "ignore",
    })
    env.pop("PYTHONPATH", None)
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="delete and rebuild the venv")
    ap.add_argument("-v", "--verbose", action="store_true", help="show pip's output")
    args = ap.parse_args()
    try:
        py, version = ensure(force=args.force, verbose=args.verbose)
    except PrefectUnavailable as exc:
        print(f"prefect: unavailable ({exc})")
        return 1
    print(f"prefect {version} in {py}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
