"""Checks of @task/@flow options made at decoration time, so mistakes surface early."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from nbflow.errors import InvalidNameError, ReservedArgumentError, TaskDefinitionError


def check_hooks(owner: str, option: str, hooks: Any, kind: str = "task") -> list[Callable]:
    """A hook option as a list of callables; Prefect's TypeError for anything else (`kind`:
    "task" or "flow", for the example in the message)."""
    if hooks is None:
        return []
    example = f"Please provide a list of hooks to '{option}':\n\n@{kind}({option}=[hook1, hook2])\ndef my_{kind}():\n\tpass"
    try:
        hooks = list(hooks)
    except TypeError:
        raise TaskDefinitionError(
            f"Expected iterable for '{option}'; got {type(hooks).__name__} instead. {example}\n({owner}; "
            f"to add a single hook, decorate it with @<{kind}>.{option} instead.)") from None
    for hook in hooks:
        check_hook(owner, option, hook, kind)
    return hooks


def check_hook(owner: str, option: str, hook: Any, kind: str = "task") -> Callable:
    """One hook: a callable taking the definition, the run and its state (Prefect's TypeError otherwise)."""
    if not callable(hook):
        raise TaskDefinitionError(
            f"Expected callables in '{option}'; got {type(hook).__name__} instead. Please provide a list of "
            f"hooks to '{option}':\n\n@{kind}({option}=[hook1, hook2])\ndef my_{kind}():\n\tpass\n({owner}: "
            f"each hook is a function taking the {kind}, the run and its state; got {hook!r}.)")
    return hook


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
        raise TaskDefinitionError(f"Expected `{option}` to be callable, got {type(value).__name__} instead. "
                                  f"{owner}: {option} must be callable; got {value!r}.")


#: characters Prefect refuses in flow names (they break URLs and file paths).
BANNED_NAME_CHARACTERS = ("/", "%", "&", ">", "<")


def legal_flow_name(name: str) -> str:
    """`name` with each character flow names may not hold as "-" (for names taken from files)."""
    for banned in BANNED_NAME_CHARACTERS:
        name = name.replace(banned, "-")
    return name


def check_flow_name(name: Any, fn: Callable) -> str:
    """A flow's name: the given string, or the function's name with "_" as "-" (a lambda is
    "unknown-lambda"); Prefect's TypeError / InvalidNameError for anything else."""
    if name is None or name == "":
        name = getattr(fn, "__name__", type(fn).__name__).replace("_", "-").replace("<lambda>", "unknown-lambda")
    elif not isinstance(name, str):
        hint = " Perhaps you meant to call it? e.g. '@flow(name=get_flow_run_name())'" if callable(name) else ""
        raise TaskDefinitionError(
            f"Expected string for flow parameter 'name'; got {type(name).__name__} instead.{hint}")
    banned = [c for c in BANNED_NAME_CHARACTERS if c in name]
    if banned:
        raise InvalidNameError(
            f"Name {name!r} contains an invalid character. Must not contain any of: "
            f"{list(BANNED_NAME_CHARACTERS)}. Use '-' or '_' instead of {''.join(banned)!r}.")
    return name


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


def _option_parameters(cls: type, drop: tuple[str, ...]) -> list[inspect.Parameter]:
    """The options of `cls.__init__` (everything after the function) as keyword-only parameters."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    return [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params if p.name not in drop]


def decorator_signature(cls: type) -> inspect.Signature:
    """`@task`/`@flow`'s signature as help() and IDEs show it: the function, then every option."""
    fn = inspect.Parameter("__fn", inspect.Parameter.POSITIONAL_ONLY, default=None)
    return inspect.Signature([fn, *_option_parameters(cls, ())])


def with_options_signature(cls: type, drop: tuple[str, ...] = ()) -> inspect.Signature:
    """`with_options`' signature: every option of the decorator (but `drop`), as in Prefect."""
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([this, *_option_parameters(cls, drop)])
