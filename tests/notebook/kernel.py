"""Run tiny notebooks in a real IPython kernel (nbclient) for the notebook tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def make_notebook(cells: list[str]) -> Any:
    """A notebook whose code cells have the given sources."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def run_notebook(cells: list[str], workdir: Path, *, allow_errors: bool = False,
                 timeout: int = 120, env: dict[str, str] | None = None) -> Any:
    """Execute the cells in a fresh kernel (NBFLOW_HOME as in this process) and return the notebook."""
    nb = make_notebook(cells)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                            resources={"metadata": {"path": str(workdir)}})
    # All cells are one flow run (the kernel shuts down after the last), however busy the machine.
    client.execute(env={**os.environ, "NBFLOW_NOTEBOOK_IDLE_SECONDS": "10", **(env or {})})
    return nb


def outputs_text(cell: Any) -> str:
    """All text a cell showed: streams, text/plain and text/html results, error tracebacks."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            data = output.get("data", {})
            parts.append(data.get("text/plain", ""))
            parts.append(data.get("text/html", ""))
        elif output["output_type"] == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
            parts.extend(output.get("traceback", []))
    return "\n".join(parts)


def error_of(cell: Any) -> dict | None:
    """The cell's error output, if it raised."""
    for output in cell.get("outputs", []):
        if output["output_type"] == "error":
            return output
    return None


__all__ = ["CellExecutionError", "error_of", "make_notebook", "outputs_text", "run_notebook"]


class LiveKernel:
    """A kernel a test talks to cell by cell, as JupyterLab does (jupyter_client), until stop()."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(workdir), env={**os.environ, **(env or {})})
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    @property
    def pid(self) -> int:
        return self.manager.provisioner.process.pid

    def execute(self, code: str, timeout: float = 60) -> list[dict]:
        """Run one cell; its iopub outputs (stream, execute_result, display_data, error)."""
        outputs: list[dict] = []

        def keep(msg: dict) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"output_type": msg["msg_type"], **msg["content"]})

        self.client.execute_interactive(code, timeout=timeout, output_hook=keep)
        return outputs

    def stop(self) -> None:
        """Shut the kernel down as Jupyter does (a shutdown request, then signals if it lingers)."""
        self.client.stop_channels()
        self.manager.shutdown_kernel()
