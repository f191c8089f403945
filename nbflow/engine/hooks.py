"""Hooks (on_running, on_completion, on_failure, on_cancellation, on_crashed): called with the
definition, the run and its state."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from nbflow.engine.options import check_hook


def run_hooks(owner: Any, hooks: list[Callable], run: Any, state: Any, logger: Any) -> None:
    """Call each hook (awaiting an async one), with Prefect's log lines; one that raises is logged
    on the run and changes nothing."""
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        logger.info("Running hook %r in response to entering state %r", name, state.name)
        try:
            outcome = hook(owner, run, state)
            if inspect.isawaitable(outcome):
                from nbflow.engine.calls import run_coro_sync

                run_coro_sync(outcome)
        except Exception:
            logger.error("An error was encountered while running hook %r", name, exc_info=True)
        else:
            logger.info("Hook %r finished running successfully", name)


class HookDecorators:
    """`@my_task.on_completion` / `@my_flow.on_failure`: add a hook to the definition's list and
    hand the function back. The lists are `on_<event>_hooks`."""

    #: "task" or "flow": how error messages show the decorator.
    _hook_kind = "task"

    def _add_hook(self, event: str, fn: Callable) -> Callable:
        getattr(self, f"{event}_hooks").append(check_hook(repr(self), event, fn, self._hook_kind))
        return fn

    def on_completion(self, fn: Callable) -> Callable:
        """Add a hook called when a run completes."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable) -> Callable:
        """Add a hook called when a run fails."""
        return self._add_hook("on_failure", fn)

    def on_running(self, fn: Callable) -> Callable:
        """Add a hook called when a run starts running."""
        return self._add_hook("on_running", fn)
