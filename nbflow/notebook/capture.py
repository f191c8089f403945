"""Record what a cell prints and displays while still showing it live, for replay on a cache hit."""

from __future__ import annotations

import io
import sys
from typing import Any


class _Tee(io.TextIOBase):
    """Writes through to the real stream and keeps a copy; anything else goes to the real stream
    (ipykernel calls `set_parent` on sys.stdout to route output to the running cell)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.buffer_text = io.StringIO()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)

    def write(self, text: str) -> int:
        self.buffer_text.write(text)
        return self.target.write(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")


class OutputCapture:
    """Context manager: tee stdout/stderr and record display_data publications.

    Entered on the kernel's main thread around the whole task run, so the real streams are
    back in place when the cell ends, even if a timed-out attempt is still running.
    `reset()` starts a fresh record for each attempt.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.displays: list[tuple[dict, dict]] = []

    def __enter__(self) -> "OutputCapture":
        self._out, self._err = sys.stdout, sys.stderr
        self._tee_out, self._tee_err = _Tee(self._out), _Tee(self._err)
        sys.stdout, sys.stderr = self._tee_out, self._tee_err
        pub = getattr(self.shell, "display_pub", None)
        self._publish = getattr(pub, "publish", None)
        self._own_attribute = pub is not None and "publish" in vars(pub)
        if self._publish is not None:
            original = self._publish

            def publish(data: dict, metadata: dict | None = None, **kwargs: Any) -> Any:
                self.displays.append((dict(data), dict(metadata or {})))
                return original(data, metadata, **kwargs)

            pub.publish = publish
        return self

    def reset(self) -> None:
        """Forget what was recorded so far (a retry starts a fresh record)."""
        self._tee_out.buffer_text = io.StringIO()
        self._tee_err.buffer_text = io.StringIO()
        self.displays = []

    def snapshot(self) -> tuple[str, str, list[tuple[dict, dict]]]:
        """What was printed to stdout and stderr, and displayed, since the last reset."""
        return (self._tee_out.buffer_text.getvalue(), self._tee_err.buffer_text.getvalue(),
                list(self.displays))

    def __exit__(self, *exc: Any) -> None:
        sys.stdout, sys.stderr = self._out, self._err
        if self._publish is not None:
            if self._own_attribute:
                self.shell.display_pub.publish = self._publish
            else:
                del self.shell.display_pub.publish  # back to the class's method


def replay(shell: Any, stdout: str, stderr: str, displays: list[tuple[dict, dict]]) -> None:
    """Show recorded output again, as the cell showed it when it ran."""
    if stdout:
        sys.stdout.write(stdout)
        sys.stdout.flush()
    if stderr:
        sys.stderr.write(stderr)
        sys.stderr.flush()
    pub = getattr(shell, "display_pub", None)
    for data, metadata in displays:
        if pub is not None:
            pub.publish(data=data, metadata=metadata)
