"""Checks of @task/@flow options made at decoration time, so mistakes surface early."""

from __future__ import annotations

from typing import Any, Callable

from nbflow.errors import TaskDefinitionError


def check_hooks(owner: str, option: str, hooks: Any) -> list[Callable]:
    """A hook option as a list of callables; a clear error for anything else."""
    if hooks is None:
        return []
    if callable(hooks):
        return [hooks]
    if not isinstance(hooks, (list, tuple)):
        raise TaskDefinitionError(
            f"{owner}: {option} must be a list of callables; got {type(hooks).__name__} {hooks!r}."
        )
    for hook in hooks:
        if not callable(hook):
            raise TaskDefinitionError(
                f"{owner}: every hook in {option} must be callable (a function taking the "
                f"definition, the run and its state); got {type(hook).__name__} {hook!r}."
            )
    return list(hooks)


def check_timeout(owner: str, timeout_seconds: Any) -> float | None:
    if timeout_seconds is None:
        return None
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or timeout_seconds <= 0:
        raise TaskDefinitionError(
            f"{owner}: timeout_seconds must be a number of seconds > 0; got {timeout_seconds!r}."
        )
    return float(timeout_seconds)


def check_callable(owner: str, option: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TaskDefinitionError(f"{owner}: {option} must be callable; got {type(value).__name__} {value!r}.")


def check_tags(owner: str, tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise TaskDefinitionError(f"{owner}: tags must be a list of strings; got {tags!r}.")
    return tuple(tags)
