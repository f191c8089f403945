"""Hooks (on_completion, on_failure, on_crashed): called with the definition, the run and its state."""

from __future__ import annotations

from typing import Any, Callable

from nbflow.engine.options import check_hooks


def run_hooks(owner: Any, hooks: list[Callable], run: Any, state: Any, logger: Any) -> None:
    """Call each hook; one that raises is logged on the run and changes nothing."""
    for hook in hooks:
        try:
            hook(owner, run, state)
        except Exception:
            logger.exception("Hook %r raised; the run's state is unchanged", getattr(hook, "__name__", hook))


class HookDecorators:
    """`@my_task.on_completion` / `@my_flow.on_failure`: add a hook to the definition's list and
    hand the function back. The lists are `on_<event>_hooks`."""

    def _add_hook(self, event: str, fn: Callable) -> Callable:
        getattr(self, f"{event}_hooks").append(check_hooks(repr(self), event, fn)[0])
        return fn

    def on_completion(self, fn: Callable) -> Callable:
        """Add a hook called when a run completes."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable) -> Callable:
        """Add a hook called when a run fails."""
        return self._add_hook("on_failure", fn)
