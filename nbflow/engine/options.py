"""Checks of @task/@flow options made at decoration time, so mistakes surface early."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from nbflow.errors import ReservedArgumentError, TaskDefinitionError


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
    """Seconds, or None for no limit; 0 means no limit too (as in Prefect)."""
    if timeout_seconds is None or (timeout_seconds == 0 and not isinstance(timeout_seconds, bool)):
        return None
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) or timeout_seconds < 0:
        raise TaskDefinitionError(
            f"{owner}: timeout_seconds must be a number of seconds >= 0 (0: no limit); got {timeout_seconds!r}."
        )
    return float(timeout_seconds)


#: names a task's or flow's function may not use: the engine takes them from the call.
RESERVED_PARAMETERS = ("wait_for", "return_state")


def check_reserved(owner: str, fn: Callable) -> None:
    """Refuse a function with a parameter the call itself takes (wait_for=, return_state=)."""
    try:
        names = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    for reserved in RESERVED_PARAMETERS:
        if reserved in names:
            raise ReservedArgumentError(
                f"{owner}: '{reserved}' is a reserved argument name and cannot be used: every call takes "
                f"{reserved}= itself. Rename the function's parameter.")


def check_run_name(owner: str, option: str, value: Any) -> None:
    """A run-name option is a template string or a callable (TypeError otherwise, as in Prefect)."""
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TaskDefinitionError(
            f"Expected string or callable for '{option}'; got {type(value).__name__} instead. {owner}: use a "
            "template such as 'etl-{day}' or a function returning a string.")


def run_name(owner: str, option: str, template: Any, parameters: dict[str, Any]) -> str:
    """A run's name from its `flow_run_name`/`task_run_name`: a template filled with the call's
    parameters, or a function called with `parameters=` when it takes it, else with nothing."""
    check_run_name(owner, option, template)
    if callable(template):
        try:
            takes = "parameters" in inspect.signature(template).parameters
        except (TypeError, ValueError):
            takes = False
        name = template(parameters=dict(parameters)) if takes else template()
        if not isinstance(name, str):
            raise TypeError(f"Callable {template} for '{option}' returned type {type(name).__name__} but a "
                            f"string is required.")
        return name
    try:
        return template.format(**parameters)
    except KeyError as exc:
        raise TaskDefinitionError(
            f"{owner}: {option} {template!r} names {{{exc.args[0]}}}, which is not a parameter of the call; "
            f"the parameters are {', '.join(parameters) or '(none)'}.") from None
    except (AttributeError, IndexError) as exc:
        raise TaskDefinitionError(
            f"{owner}: {option} {template!r} could not be filled from the call's parameters "
            f"({type(exc).__name__}: {exc}); the parameters are {', '.join(parameters) or '(none)'}.") from None


def check_callable(owner: str, option: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TaskDefinitionError(f"{owner}: {option} must be callable; got {type(value).__name__} {value!r}.")


def check_flag(owner: str, option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TaskDefinitionError(f"{owner}: {option} must be True or False; got {type(value).__name__} {value!r}.")
    return value


def check_tags(owner: str, tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise TaskDefinitionError(f"{owner}: tags must be a list of strings; got {tags!r}.")
    return tuple(tags)
