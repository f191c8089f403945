"""Flow parameter checks from type hints, with the light coercions a CLI or form needs.

Values that already have the hinted type pass unchanged. Strings that spell a
number, a boolean, a date or a path are converted (parameters often arrive as
text from the command line or a web form). Anything else is refused with an
error that names the parameter, the expected type and the value received.
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable

from nbflow.errors import ParameterTypeError

_MISSING = object()
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Mismatch(Exception):
    pass


def bind_parameters(owner: str, fn: Callable, signature: inspect.Signature, args: tuple,
                    kwargs: dict) -> inspect.BoundArguments:
    """Bind call arguments to the signature, turning Python's TypeError into a named error."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        names = ", ".join(signature.parameters) or "(none)"
        missing = _missing_name(str(exc))
        raise ParameterTypeError(
            f"{owner} was called with parameters that do not fit its signature: {exc}. "
            f"Its parameters are: {names}.", parameter=missing,
        ) from None
    bound.apply_defaults()
    return bound


def _missing_name(message: str) -> str | None:
    if "'" in message:
        return message.split("'")[1]
    return None


def validate(owner: str, hints: dict[str, Any], bound: inspect.BoundArguments) -> None:
    """Check (and coerce in place) each bound argument against its type hint."""
    for name, value in bound.arguments.items():
        hint = hints.get(name, _MISSING)
        if hint is _MISSING or hint is Any:
            continue
        param = bound.signature.parameters[name]
        if param.kind is param.VAR_POSITIONAL or param.kind is param.VAR_KEYWORD:
            continue
        try:
            bound.arguments[name] = coerce(value, hint)
        except _Mismatch:
            raise ParameterTypeError(
                f"{owner} got an invalid value for parameter '{name}': expected {_type_name(hint)}, "
                f"got {type(value).__name__} {_short(value)}. Pass a value of that type, or "
                "decorate with validate_parameters=False to skip this check.",
                parameter=name,
            ) from None


def type_hints(fn: Callable) -> dict[str, Any]:
    """The function's resolved type hints, or {} when they cannot be resolved."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # forward references to names that do not exist: skip validation
        return {}


def coerce(value: Any, hint: Any) -> Any:
    """Return `value` as type `hint`, or raise _Mismatch."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or (types.UnionType is not None and origin is types.UnionType):
        for option in typing.get_args(hint):
            try:
                return coerce(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in typing.get_args(hint):
            return value
        raise _Mismatch
    if origin is typing.Annotated:
        return coerce(value, typing.get_args(hint)[0])
    if origin in (list, set, frozenset, tuple, dict):
        return _coerce_collection(value, origin, typing.get_args(hint))
    if hint is type(None) or hint is None:
        if value is None:
            return None
        raise _Mismatch
    if not isinstance(hint, type):
        return value  # TypeVar, Protocol, callables...: not checked
    return _coerce_simple(value, hint)


def _coerce_simple(value: Any, hint: type) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if isinstance(value, hint):
        return value
    if isinstance(value, str):
        if hint is dt.datetime:
            return _parse(dt.datetime.fromisoformat, value)
        if hint is dt.date:
            return _parse(dt.date.fromisoformat, value)
        if issubclass(hint, Path):
            return hint(value)
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise _Mismatch from None
    raise _Mismatch


def _parse(parse: Callable[[str], Any], value: str) -> Any:
    try:
        return parse(value)
    except ValueError:
        raise _Mismatch from None


def _coerce_collection(value: Any, origin: type, args: tuple) -> Any:
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        if len(args) == 2:
            return {coerce(k, args[0]): coerce(v, args[1]) for k, v in value.items()}
        return value
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _Mismatch
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(args) != len(value):
            raise _Mismatch
        return tuple(coerce(v, a) for v, a in zip(value, args))
    item = args[0] if args else Any
    items = [v if item is Any else coerce(v, item) for v in value]
    return origin(items)


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
