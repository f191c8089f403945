"""Hooks (on_completion, on_failure, on_crashed): called with the definition, the run and its state."""

from __future__ import annotations

from typing import Any, Callable


def run_hooks(owner: Any, hooks: list[Callable], run: Any, state: Any, logger: Any) -> None:
    """Call each hook; one that raises is logged on the run and changes nothing."""
    for hook in hooks:
        try:
            hook(owner, run, state)
        except Exception:
            logger.exception("Hook %r raised; the run's state is unchanged", getattr(hook, "__name__", hook))
