"""Type hints read from source text without running it, for a deployment's parameter schema.

The server must not run user code, so a hint is not evaluated: a small interpreter over its
syntax tree knows the builtin types, `typing`'s forms, the datetime/pathlib/decimal/uuid types
and the Enum classes the file itself defines with literal values. Anything else (a pydantic
model, a class from another module) reads as "any value" (the flow's own validation, when
the run starts, still checks it).
"""

from __future__ import annotations

import ast
import datetime
import decimal
import enum
import inspect
import pathlib
import typing
import uuid
from typing import Any

_NAMES: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "bytes": bytes, "list": list, "dict": dict,
    "set": set, "frozenset": frozenset, "tuple": tuple, "None": None, "object": Any,
    # a bare `datetime` is the class (`from datetime import datetime`); the module's names are dotted
    "datetime": datetime.datetime, "date": datetime.date, "time": datetime.time, "timedelta": datetime.timedelta,
    "Path": pathlib.Path, "PurePath": pathlib.PurePath, "Decimal": decimal.Decimal, "UUID": uuid.UUID,
    **{name: getattr(typing, name) for name in (
        "Any", "Optional", "Union", "List", "Dict", "Set", "FrozenSet", "Tuple", "Literal", "Sequence",
        "Mapping", "Iterable", "Annotated")},
}
_DOTTED: dict[str, Any] = {
    **{f"{mod}.{name}": getattr(datetime, name) for mod in ("datetime", "dt")
       for name in ("datetime", "date", "time", "timedelta")},
    **{f"{mod}.{name}": getattr(typing, name) for mod in ("typing", "t") for name in (
        "Any", "Optional", "Union", "List", "Dict", "Set", "FrozenSet", "Tuple", "Literal", "Sequence",
        "Mapping", "Iterable", "Annotated")},
    "pathlib.Path": pathlib.Path, "decimal.Decimal": decimal.Decimal, "uuid.UUID": uuid.UUID,
}
_ENUM_BASES = {"Enum", "StrEnum", "IntEnum", "enum.Enum", "enum.StrEnum", "enum.IntEnum"}


class _Unknown(Exception):
    pass


def signature_from_source(tree: ast.Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> inspect.Signature:
    """The signature of `fn` (a function in `tree`) with the hints this module can read, literal defaults."""
    names = {**_NAMES, **_enums(tree)}
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = []
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = inspect.Parameter.POSITIONAL_ONLY if i < len(args.posonlyargs) else \
            inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(_param(arg, kind, default, names))
    if args.vararg:
        params.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        params.append(_param(arg, inspect.Parameter.KEYWORD_ONLY, default, names))
    if args.kwarg:
        params.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)


def hint_from_text(text: str | None, names: dict[str, Any] | None = None) -> Any:
    """A hint written as text ("int", "list[str]"); inspect.Parameter.empty if it cannot be read."""
    if not text:
        return inspect.Parameter.empty
    try:
        node = ast.parse(text.strip(), mode="eval").body
        return _hint(node, names or _NAMES)
    except (SyntaxError, _Unknown, TypeError, ValueError):
        return inspect.Parameter.empty


def _param(arg: ast.arg, kind: Any, default: ast.expr | None, names: dict[str, Any]) -> inspect.Parameter:
    hint = inspect.Parameter.empty
    if arg.annotation is not None:
        try:
            node = arg.annotation
            if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "int": a string annotation
                node = ast.parse(node.value, mode="eval").body
            hint = _hint(node, names)
        except (SyntaxError, _Unknown, TypeError, ValueError):
            hint = inspect.Parameter.empty
    value: Any = inspect.Parameter.empty
    if default is not None:
        try:
            value = ast.literal_eval(default)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = None  # an expression such as datetime.now(): known only when the flow runs
    return inspect.Parameter(arg.arg, kind, default=value, annotation=hint)


def _hint(node: ast.expr, names: dict[str, Any]) -> Any:
    """Evaluate a hint's syntax tree: names from `names` only, subscripts, `X | Y`, literals."""
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _Unknown(node.id)
    if isinstance(node, ast.Attribute):
        dotted = ast.unparse(node)
        if dotted in _DOTTED:
            return _DOTTED[dotted]
        raise _Unknown(dotted)
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, bool))):
        return node.value
    if isinstance(node, ast.Subscript):
        base = _hint(node.value, names)
        inner = node.slice
        if isinstance(inner, ast.Tuple):
            items = tuple(_hint(e, names) if not isinstance(e, ast.Constant) or base is not typing.Literal
                          else e.value for e in inner.elts)
            if base is typing.Annotated:
                return items[0]
            return base[items]
        return base[_hint(inner, names)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_hint(node.left, names), _hint(node.right, names)]
    if isinstance(node, ast.Constant) and node.value is ...:  # Tuple[int, ...]
        return ...
    raise _Unknown(ast.unparse(node))


def _enums(tree: ast.Module) -> dict[str, Any]:
    """The file's module-level Enum classes whose members are literals, rebuilt as Enums."""
    found: dict[str, Any] = {}
    for stmt in tree.body:
        if not isinstance(stmt, ast.ClassDef) or not any(ast.unparse(b) in _ENUM_BASES for b in stmt.bases):
            continue
        members = {}
        for item in stmt.body:
            if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                try:
                    members[item.targets[0].id] = ast.literal_eval(item.value)
                except (ValueError, SyntaxError, TypeError):
                    members = {}
                    break
        if members:
            found[stmt.name] = enum.Enum(stmt.name, members)
    return found
