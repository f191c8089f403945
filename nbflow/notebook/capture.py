"""Record what a cell prints and displays while still showing it live, for replay on a cache hit."""

from __future__ import annotations

import io
import sys
from typing import Any


class _Tee(io.TextIOBase):
    def __init__(self, target: Any) -> None:
        self.target = target
        self.buffer_text = io.StringIO()

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
    """Context manager: tee stdout/stderr and record display_data publications."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.displays: list[tuple[dict, dict]] = []
        self.stdout = ""
        self.stderr = ""

    def __enter__(self) -> "OutputCapture":
        self._out, self._err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(self._out), _Tee(self._err)
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

    def __exit__(self, *exc: Any) -> None:
        tee_out, tee_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self._out, self._err
        self.stdout = tee_out.buffer_text.getvalue() if isinstance(tee_out, _Tee) else ""
        self.stderr = tee_err.buffer_text.getvalue() if isinstance(tee_err, _Tee) else ""
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
