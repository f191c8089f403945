"""The hook through which `Flow.deploy()`, `.serve()` and `.from_source()` reach the layer that
implements them (nbflow.deployments registers itself on import): the engine imports nothing above it."""

from __future__ import annotations

from typing import Any, Callable

_registered: dict[str, Callable[..., Any]] = {}


def register_deployer(**functions: Callable[..., Any]) -> None:
    """Register the functions behind Flow.deploy (`deploy`), Flow.serve (`serve`) and Flow.from_source."""
    _registered.update(functions)


def deployer(name: str) -> Callable[..., Any]:
    """The registered function `name`; a clear error when the deployment layer is not loaded."""
    try:
        return _registered[name]
    except KeyError:
        raise RuntimeError(f"Flow.{name}() needs nbflow's deployment layer, which was not loaded; "
                           "`import nbflow.deployments` (or `import nbflow`) loads it.") from None
