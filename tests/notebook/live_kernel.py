"""A real IPython kernel driven cell by cell, stdin included (for %nbflow debug --pdb)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager


@dataclass
class Reply:
    status: str
    #: everything the cell showed: streams, results, the error.
    text: str
    #: the execute reply's payloads (set_next_input...).
    payloads: list[dict[str, Any]] = field(default_factory=list)
    #: the prompts the kernel asked on stdin.
    prompts: list[str] = field(default_factory=list)


class LiveKernel:
    """A kernel started with `env` (NBFLOW_HOME...) in `cwd`; `run` executes one cell."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env={**os.environ, **(env or {})}, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, answers: list[str] | None = None, timeout: float = 120) -> Reply:
        """Execute `code`; answer the kernel's input requests with `answers`, in order."""
        parts: list[str] = []
        prompts: list[str] = []
        pending = list(answers or [])

        def on_output(msg: dict[str, Any]) -> None:
            content, kind = msg["content"], msg["msg_type"]
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                parts.append(f"{content['ename']}: {content['evalue']}")

        def on_input(msg: dict[str, Any]) -> None:
            prompts.append(msg["content"]["prompt"])
            self.client.input(pending.pop(0) if pending else "q")

        reply = self.client.execute_interactive(code, allow_stdin=answers is not None, timeout=timeout,
                                                output_hook=on_output, stdin_hook=on_input)
        content = reply["content"]
        if content["status"] == "error":
            parts.append(f"{content['ename']}: {content['evalue']}")
        return Reply(content["status"], "".join(parts), content.get("payload", []), prompts)

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
