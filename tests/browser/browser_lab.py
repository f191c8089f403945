"""Helpers of the browser tests: a JupyterLab server process, driving a notebook, reading the store.

The server runs `sys.executable -m jupyterlab` (not `jupyter lab`, which runs whatever
`jupyter-lab` is first on PATH) on a free port with a random token, its own
Jupyter config/data/runtime directories and IPython directory (no user settings, no first-run
prompts, no network), and `NBFLOW_HOME` pointing at a scratch store. Installed lab extensions
(ipywidgets, plotly, anywidget) live in `sys.prefix/share/jupyter`, which stays on Jupyter's data
path whatever JUPYTER_DATA_DIR says.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat

REPO = Path(__file__).resolve().parents[2]
#: screenshots of the browser tests (git-ignored).
ARTIFACTS = REPO / "test-artifacts"
#: seconds the server may take to answer /api/status.
SERVER_START_TIMEOUT = 60.0

#: JupyterLab user settings written before the server starts: no news or update checks, and every
#: cell rendered in the DOM (no virtual scrolling), so the widget is laid out where it is.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """A JupyterLab server started in `base` (root dir, config, logs all below it)."""

    def __init__(self, base: Path, nbflow_home: Path) -> None:
        self.base = base
        self.root_dir = base / "root"
        self.nbflow_home = nbflow_home
        self.log_path = base / "jupyter-lab.log"
        self.token = secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        config, data, runtime, ipython = (self.base / name for name in ("config", "data", "runtime", "ipython"))
        for directory in (self.root_dir, config, data, runtime, ipython, self.nbflow_home):
            directory.mkdir(parents=True, exist_ok=True)
        settings = config / "lab" / "user-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        self.env = {
            **os.environ,
            "NBFLOW_HOME": str(self.nbflow_home),
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(data),
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.base / "workspaces"),
            "IPYTHONDIR": str(ipython),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("JUPYTER_PATH", None)  # only the installed extensions and kernels of sys.prefix
        self.port = free_port()
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            f"--port={self.port}",
            "--port-retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        log = self.log_path.open("wb")
        try:
            # a session of its own, so a stuck server and its kernels can be killed together
            self.process = subprocess.Popen(command, cwd=self.root_dir, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        finally:
            log.close()
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        last_error: Exception | None = None
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.process.returncode} before it "
                                   f"answered /api/status:\n{self.log_tail()}")
            try:
                status = self.api("status", timeout=2)
                if "started" in status:
                    return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last_error = exc
            time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer {self.url('api/status')} within "
                           f"{SERVER_START_TIMEOUT:.0f} s (last error: {last_error}):\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the server and any kernel it left behind
            except ProcessLookupError:
                pass
            process.wait(timeout=10)

    # -- talking to it -------------------------------------------------------------------------

    def url(self, path: str) -> str:
        separator = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{separator}token={self.token}"

    def api(self, path: str, timeout: float = 10) -> Any:
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=timeout) as response:
            return json.loads(response.read())

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        tail = text.splitlines()[-lines:]
        return "--- jupyter lab log (tail) ---\n" + "\n".join(tail).replace(self.token, "<token>")

    # -- the store, read the way a user would, in a process of its own ---------------------------

    def store_query(self, script: str) -> Any:
        """Run `script` (which prints one JSON document) with this server's NBFLOW_HOME."""
        result = subprocess.run([sys.executable, "-c", script], env={**self.env, "PYTHONWARNINGS": "ignore"},
                                capture_output=True, text=True, timeout=60, cwd=self.base)
        if result.returncode != 0:
            raise AssertionError(f"reading the store failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def flow_run_summary(self, flow_name: str) -> dict[str, Any]:
        """The newest flow run of `flow_name` and its task runs' states, from the store."""
        return self.store_query(f"""
import json, nbflow, pandas
runs = nbflow.runs(flow_name={flow_name!r}, limit=1)
if runs.empty:
    print(json.dumps(None))
else:
    run = runs.iloc[0]
    tasks = nbflow.task_runs(str(run["id"]))
    keys = [None if pandas.isna(k) else int(k) for k in tasks["dynamic_key"]]
    print(json.dumps({{"id": str(run["id"]), "state": str(run["state"]),
                      "task_states": [str(s) for s in tasks["state"]],
                      "labels": [str(n) if k is None else f"{{n}}[{{k}}]" for n, k in zip(tasks["task_name"], keys)]}}))
""")


# -- notebooks -------------------------------------------------------------------------------------


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


# -- driving JupyterLab in the page (window.jupyterapp: --LabApp.expose_app_in_browser) -----------

#: JS: the open notebook panel whose path is `path`, or null.
_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}
"""

KERNEL_IDLE = f"""
(path) => {{
  const panel = ({_PANEL})(path);
  if (!panel || !panel.context.isReady) return false;
  const session = panel.sessionContext && panel.sessionContext.session;
  const kernel = session && session.kernel;
  return !!kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected';
}}
"""

RUN_ALL = f"""
(path) => {{
  const app = window.jupyterapp;
  const panel = ({_PANEL})(path);
  app.shell.activateById(panel.id);
  // not awaited: the test polls the notebook model until every cell has run
  app.commands.execute('notebook:run-all-cells').catch((e) => {{ window.__nbflowRunAllError = String(e); }});
  return true;
}}
"""

#: JS: the state of every code cell: execution count, whether it is queued/running, its outputs.
CELLS = f"""
(path) => {{
  const panel = ({_PANEL})(path);
  if (!panel) return null;
  const cells = [];
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {{
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    const outputs = cell.outputs.toJSON();
    cells.push({{
      index: i,
      count: cell.executionCount,
      state: cell.executionState || null,
      outputs: outputs,
    }});
  }}
  const session = panel.sessionContext.session;
  return {{cells, kernel: session && session.kernel ? session.kernel.status : null,
          runAllError: window.__nbflowRunAllError || null}};
}}
"""


def error_outputs(cells: list[dict[str, Any]]) -> list[str]:
    """'cell N: ename: evalue' for every error output of the cells."""
    found = []
    for cell in cells:
        for output in cell["outputs"]:
            if output.get("output_type") == "error":
                found.append(f"cell {cell['index']}: {output.get('ename')}: {output.get('evalue')}")
    return found


def cell_text(cell: dict[str, Any]) -> str:
    parts = []
    for output in cell["outputs"]:
        if output.get("output_type") == "stream":
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        elif output.get("output_type") == "error":
            parts.append("\n".join(output.get("traceback", [])))
        else:
            text = output.get("data", {}).get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(parts)


# -- a kernel of the server, driven over its websocket as JupyterLab does -------------------------


def start_notebook_session(lab: JupyterLab, path: str) -> str:
    """Open a session for notebook `path` (as opening it in Lab does); return its kernel's id."""
    body = json.dumps({"path": path, "type": "notebook", "name": path, "kernel": {"name": "python3"}}).encode()
    request = urllib.request.Request(lab.url("api/sessions"), data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["kernel"]["id"]


def execute_in_kernel(lab: JupyterLab, kernel_id: str, code: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Run one cell in the server's kernel over its websocket; its outputs (iopub contents)."""
    import asyncio
    import uuid

    from tornado.websocket import websocket_connect

    async def run() -> list[dict[str, Any]]:
        ws = await websocket_connect(f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?token={lab.token}")
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": msg_id,
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False}}))
        outputs: list[dict[str, Any]] = []
        try:
            while True:
                message = json.loads(await ws.read_message())
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                kind = message["msg_type"]
                if kind in ("stream", "execute_result", "display_data", "error"):
                    outputs.append({"output_type": kind, **message["content"]})
                if kind == "status" and message["content"]["execution_state"] == "idle":
                    return outputs
        finally:
            ws.close()

    return asyncio.run(asyncio.wait_for(run(), timeout))
