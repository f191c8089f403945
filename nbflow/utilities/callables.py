"""Prefect-compatible import path: `from nbflow.utilities.callables import parameter_schema`.

Importing this module loads pydantic (the schema is pydantic's).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from nbflow.engine.parameter_schema import (
    ParameterSchema, generate_parameter_schema, parameter_docstrings, parameter_schema,
)
from nbflow.errors import ParameterBindError


def get_call_parameters(fn: Callable[..., Any], call_args: tuple, call_kwargs: dict[str, Any],
                        apply_defaults: bool = True) -> dict[str, Any]:
    """A call's arguments by parameter name (ParameterBindError if they do not fit), as Prefect's."""
    try:
        bound = inspect.signature(fn).bind(*call_args, **call_kwargs)
    except TypeError as exc:
        raise ParameterBindError.from_bind_failure(fn, exc, call_args, call_kwargs) from None
    if apply_defaults:
        bound.apply_defaults()
    return dict(bound.arguments)


__all__ = ["ParameterSchema", "generate_parameter_schema", "get_call_parameters", "parameter_docstrings",
           "parameter_schema"]
