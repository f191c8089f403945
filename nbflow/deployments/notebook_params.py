"""A notebook's parameters, read from its `parameters` cell with papermill, and checked.

papermill escapes parameter values but writes parameter *names* into the notebook
unchanged, so a name that is not a plain identifier would be code injection: every
name must be an identifier that the notebook's `parameters` cell defines.
"""

from __future__ import annotations

import ast
import keyword
from pathlib import Path
from typing import Any

from nbflow.errors import NbflowError


class NotebookParameterError(NbflowError, ValueError):
    """A parameter the notebook does not take, or a value of the wrong kind."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


def notebook_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook's `parameters` cell defines: name -> {type, default, help}."""
    import papermill

    path = Path(path)
    if not path.is_file():
        raise NotebookParameterError(f"No notebook at {path}. Give the path of an existing .ipynb file.")
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:  # papermill raises bare exceptions for unreadable notebooks
        raise NotebookParameterError(f"Could not read the notebook {path}: {exc}") from None
    return {name: {"type": _type_of(info), "default": info.get("default"),
                   "help": info.get("help") or ""} for name, info in found.items()}


def _type_of(info: dict[str, Any]) -> str:
    """The annotated type, else the type of the default's literal (`n = 3` -> int)."""
    annotated = info.get("inferred_type_name")
    if annotated and annotated != "None":
        return str(annotated)
    try:
        return type(ast.literal_eval(str(info.get("default")))).__name__.replace("NoneType", "none")
    except (ValueError, SyntaxError):
        return "any"  # an expression such as datetime.now(): keep values as given


def check_parameters(path: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Check names against the `parameters` cell and convert text values to the default's type."""
    declared = notebook_parameters(path)
    for name in values:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise NotebookParameterError(
                f"Parameter name {name!r} is not a Python identifier; notebook parameters are variable "
                "names such as n_rows or start_date.", parameter=str(name))
    unknown = sorted(set(values) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none (the notebook has no cell tagged 'parameters')"
        raise NotebookParameterError(
            f"The notebook {Path(path).name} does not define parameter(s) {', '.join(unknown)} in its "
            f"'parameters' cell; it takes: {known}.", parameter=unknown[0])
    return {name: _convert(name, value, declared[name]) for name, value in values.items()}


_LITERAL_KINDS = {"int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict,
                  "tuple": tuple}


def _convert(name: str, value: Any, info: dict[str, Any]) -> Any:
    """Text from a command line or form, as the type of the parameter's default."""
    if not isinstance(value, str):
        return value
    kind = (info.get("type") or "").lower()
    if kind == "bool" and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if kind in _LITERAL_KINDS:
        try:
            parsed = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            parsed = value
        expected = _LITERAL_KINDS[kind]
        if isinstance(parsed, bool) and kind != "bool" or not isinstance(parsed, expected):
            raise NotebookParameterError(
                f"Parameter '{name}' expects a {kind} (its default is {info.get('default')}); "
                f"got {value!r}.", parameter=name)
        return float(parsed) if kind == "float" else parsed
    if kind == "none":  # default None: take a Python literal if it is one, else the text
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return value
    return value
