"""The directories whose files deployments may run and the dashboard may show: the allowed roots.

A deployment's notebook or flow file, and a run's output notebook, must lie under an allowed
root once `~`, `..` and symlinks are resolved (realpath): the server's root dir (Jupyter's
`root_dir`; for `nbflow server start`, the directory it was started in), NBFLOW_HOME (output
notebooks live in its `runs/`), the directories in NBFLOW_ALLOWED_ROOTS and, inside Jupyter,
`NbflowApp.allowed_roots`. Relative paths resolve against the server's root dir. Without a
server in this process (the CLI on the embedded store) the current directory stands in for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from nbflow import settings
from nbflow.errors import NbflowError

#: (root dir, extra roots) of the server running in this process; None without one.
_server: tuple[Path, tuple[Path, ...]] | None = None


class PathNotAllowedError(NbflowError, ValueError):
    """A path outside every allowed root (HTTP 422): names the field, the path and the roots."""

    status = 422

    def __init__(self, message: str, *, field: str, path: str, roots: list[Path]) -> None:
        super().__init__(message)
        self.field = field
        self.path = path
        self.roots = roots


def configure(root_dir: str | os.PathLike, extra: Iterable[str | os.PathLike] = ()) -> None:
    """Make `root_dir` the server's root dir and add `extra` roots (the server does this at start)."""
    global _server
    _server = (Path(root_dir).expanduser().absolute(), tuple(Path(p).expanduser().absolute() for p in extra))


def reset() -> None:
    """Forget the server's configuration (the server stopped)."""
    global _server
    _server = None


def base_dir() -> Path:
    """Where relative paths resolve: the server's root dir, else the current directory."""
    return _server[0] if _server is not None else Path.cwd()


def allowed_roots() -> list[Path]:
    """Every allowed root, resolved, in order, without repeats."""
    extra = _server[1] if _server is not None else ()
    roots: list[Path] = []
    for root in (base_dir(), settings.home(), *settings.allowed_roots(), *extra):
        real = Path(os.path.realpath(root))
        if real not in roots:
            roots.append(real)
    return roots


def resolve(path: str | os.PathLike, field: str, roots: Iterable[str | os.PathLike] | None = None) -> Path:
    """`path` made absolute (relative to base_dir()) with `~`, `..` and symlinks resolved, if that lies
    under one of `roots` (default: allowed_roots()); else PathNotAllowedError naming `field`."""
    allowed = [Path(os.path.realpath(r)) for r in roots] if roots is not None else allowed_roots()
    try:
        given = Path(path).expanduser()
        real = Path(os.path.realpath(given if given.is_absolute() else base_dir() / given))
    except (ValueError, RuntimeError, OSError) as exc:  # a NUL character, ~nobody, ...
        reason = str(exc).rstrip(".")
        raise PathNotAllowedError(f"{field} {os.fspath(path)!r} is not a usable path: {reason}.", field=field,
                                  path=os.fspath(path), roots=allowed) from None
    if any(real.is_relative_to(root) for root in allowed):
        return real
    shown = f"{os.fspath(path)!r}" + (f" (which resolves to {real})" if str(real) != os.fspath(path) else "")
    defaults = ("the server's root directory (where `nbflow server start` runs, or Jupyter's root_dir) and "
                "NBFLOW_HOME" if _server is not None else "the current directory (no server here) and NBFLOW_HOME")
    raise PathNotAllowedError(
        f"{field} {shown} is outside the directories nbflow may use files from: "
        f"{', '.join(map(str, allowed))}. Move the file under one of them, or add its directory to "
        f"NBFLOW_ALLOWED_ROOTS (several separated by {os.pathsep!r}; inside Jupyter also "
        f"c.NbflowApp.allowed_roots) and restart the server. By default the roots are {defaults}.",
        field=field, path=os.fspath(path), roots=allowed)
