"""`nbflow server start`: the same ExtensionApp, launched on its own Jupyter server."""

from __future__ import annotations

import os
import signal
import sys

# jsonschema (through jupyter_events) imports rfc3987_syntax when it is installed, and that
# compiles a grammar for about 3 s at import. Its IRI format checks are not needed to serve
# the run API, so the standalone server starts without it (start to healthy well under 1.5 s).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from nbflow import settings  # noqa: E402
from nbflow.server.app import NbflowApp  # noqa: E402


def run_standalone(host: str, port: int, token: str, worker: bool = True) -> int:
    """Serve until interrupted; print a login link once listening.

    The server's root dir is the directory it starts in: deployments may run the notebooks and
    flow files under it (and under NBFLOW_HOME and NBFLOW_ALLOWED_ROOTS), relative paths resolve there.
    """
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    os.environ["NBFLOW_API_TOKEN"] = token
    # Jupyter's runtime files (server info, kernel connection files) stay under NBFLOW_HOME.
    os.environ["JUPYTER_RUNTIME_DIR"] = str(settings.home() / "jupyter-runtime")
    NbflowApp.standalone = True
    argv = [
        f"--ServerApp.ip={host}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={os.getcwd()}", "--ServerApp.allow_unauthenticated_access=False",
        "--ServerApp.default_url=/nbflow/",
    ]
    if not worker:
        argv.append("--NbflowApp.worker=False")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")  # containers and CI run as root
    NbflowApp.launch_instance(argv=argv)
    return 0


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before the server can stop cleanly: it stops as soon as it can. (Python's own
    KeyboardInterrupt would land wherever the main thread is, e.g. in DuckDB, which swallows it.)"""
    NbflowApp.interrupted = True
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once
