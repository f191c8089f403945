"""A flow call's parameters: bound to the signature, then validated and coerced with pydantic v2.

As in Prefect 3, a flow's parameters are validated against its type hints with a pydantic
model built from the signature: text that spells a number, a boolean, a date or a path
becomes one, a dict becomes the pydantic model or dataclass the hint names, and a value
that does not fit fails the run with ParameterTypeError. Text that does not fit but parses
as JSON (a list or object typed on a command line or in a form) is tried once as JSON.

pydantic loads only when a value needs it: values of exactly their plain hinted type (int,
float, str, bool) are what pydantic would return, so they pass without it. The validator is
built once per flow, so a call costs one `model_validate` of the values actually passed.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any, Callable

from nbflow.errors import ParameterBindError, ParameterTypeError

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def bind_parameters(fn: Callable, signature: inspect.Signature, args: tuple,
                    kwargs: dict) -> inspect.BoundArguments:
    """Bind call arguments to the signature with defaults applied; ParameterBindError if they do not fit."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ParameterBindError.from_bind_failure(fn, exc, args, kwargs) from None
    bound.apply_defaults()
    return bound


class FlowParameters:
    """A flow's signature and, built on first use, the pydantic validator of its type hints."""

    def __init__(self, fn: Callable, signature: inspect.Signature) -> None:
        self.fn = fn
        self.signature = signature
        #: None until built; False when no parameter has a hint to check
        self._validator: _Validator | bool | None = None
        #: parameter -> hint when every hint is a plain int/float/str/bool (None: not known yet, or not so)
        self._plain: dict[str, type] | None = None
        self._plain_known = False

    def bind(self, args: tuple, kwargs: dict) -> inspect.BoundArguments:
        """The call's arguments by parameter name, defaults included (ParameterBindError if they do not fit)."""
        return bind_parameters(self.fn, self.signature, args, kwargs)

    def validate(self, bound: inspect.BoundArguments) -> None:
        """Coerce the bound arguments to their hints in place; ParameterTypeError if one does not fit."""
        if not self._plain_known:
            self._plain = _plain_hints(self.fn, self.signature)
            self._plain_known = True
        plain = self._plain
        if plain is not None:
            # Values of exactly their plain hinted type are what pydantic would return: no pydantic needed.
            arguments = bound.arguments
            if all(type(arguments[name]) is hint for name, hint in plain.items() if name in arguments):
                return
        validator = self._validator
        if validator is None:
            validator = self._validator = _build(self.fn, self.signature) or False
        if validator is not False:
            validator.validate(bound)  # type: ignore[union-attr]

    def validate_dict(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Prefect's `Flow.validate_parameters`: a parameters dict, validated and coerced, as a new dict."""
        unknown = [name for name in parameters if name not in self.signature.parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in self.signature.parameters.values()):
            raise ParameterTypeError(
                f"Flow run received invalid parameters:\n - {unknown[0]}: Unexpected parameter; the flow "
                f"takes {', '.join(self.signature.parameters) or 'no parameters'}", parameter=unknown[0])
        positional = [p.name for p in self.signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
        args = tuple(parameters[name] for name in positional if name in parameters)
        kwargs = {k: v for k, v in parameters.items() if k not in positional}
        var_kw = next((p.name for p in self.signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
        if var_kw is not None and isinstance(kwargs.get(var_kw), dict):
            kwargs.update(kwargs.pop(var_kw))
        try:
            bound = self.bind(args, kwargs)
        except ParameterBindError as exc:
            raise ParameterTypeError(f"Flow run received invalid parameters:\n - {exc}") from None
        self.validate(bound)
        return dict(bound.arguments)


class _Validator:
    """A pydantic model with one field per hinted parameter; validates the values actually passed."""

    def __init__(self, fn: Callable, model: Any, fields: dict[str, str]) -> None:
        self.fn = fn
        self.model = model
        #: parameter name -> field name in the model (they differ for names pydantic reserves)
        self.fields = fields
        self.defaults = {name: param.default for name, param in inspect.signature(fn).parameters.items()}

    def validate(self, bound: inspect.BoundArguments) -> None:
        arguments = bound.arguments
        defaults = self.defaults
        # As pydantic does, a default the call did not override is not validated.
        given = {name: arguments[name] for name in self.fields
                 if name in arguments and arguments[name] is not defaults.get(name, inspect.Parameter.empty)}
        if not given:
            return
        validated = self._validate(given)
        for name in given:
            arguments[name] = getattr(validated, self.fields[name])

    def _validate(self, given: dict[str, Any]) -> Any:
        from pydantic import ValidationError

        try:
            return self.model.model_validate(given)
        except ValidationError as exc:
            retry = _json_text(given, exc)
            if retry is not None:
                try:
                    return self.model.model_validate(retry)
                except ValidationError:
                    pass
            raise ParameterTypeError.from_validation_error(exc) from None


def _json_text(given: dict[str, Any], exc: Any) -> dict[str, Any] | None:
    """The values again with each failing text value parsed as JSON, or None if none parses."""
    changed = dict(given)
    for error in exc.errors():
        name = error["loc"][0] if error["loc"] else None
        value = given.get(name) if isinstance(name, str) else None
        if isinstance(value, str) and changed[name] is value:
            try:
                parsed = json.loads(value)
            except ValueError:
                continue
            if not isinstance(parsed, str):
                changed[name] = parsed
    return changed if any(changed[k] is not given[k] for k in given) else None


def resolved_hints(fn: Callable, signature: inspect.Signature) -> dict[str, Any]:
    """Each parameter's type hint, with string (forward) references resolved where they can be."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a forward reference to a name that does not exist (yet): resolve one by one
        pass
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    hints = {}
    for name, param in signature.parameters.items():
        annotation = param.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # noqa: S307 - the user's own annotation
            except Exception:
                continue
        if annotation is not inspect.Parameter.empty:
            hints[name] = annotation
    return hints


_PLAIN = (int, float, str, bool)


def _plain_hints(fn: Callable, signature: inspect.Signature) -> dict[str, type] | None:
    """The hints by parameter when each hinted parameter's hint is int, float, str or bool, else None."""
    hints = resolved_hints(fn, signature)
    plain = {name: hints[name] for name, param in signature.parameters.items()
             if name in hints and param.kind not in _VARIADIC and hints[name] is not Any}
    return plain if all(hint in _PLAIN for hint in plain.values()) else None


def _build(fn: Callable, signature: inspect.Signature) -> _Validator | None:
    """The validator of a flow's hinted parameters; None when none is hinted (nothing to check)."""
    hints = resolved_hints(fn, signature)
    wanted = {name: hints[name] for name, param in signature.parameters.items()
              if name in hints and param.kind not in _VARIADIC and hints[name] is not Any}
    if not wanted:
        return None
    import pydantic

    base = pydantic.BaseModel
    fields: dict[str, str] = {}
    definitions: dict[str, Any] = {}
    for i, (name, hint) in enumerate(wanted.items()):
        field = name if not name.startswith("_") and not hasattr(base, name) else f"p{i}_"
        fields[name] = field
        definitions[field] = (hint, pydantic.Field(default=None, alias=name if field != name else None))
    config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    model_name = f"{getattr(fn, '__name__', 'flow')}_parameters"
    try:
        model = pydantic.create_model(model_name, __config__=config, **definitions)
    except Exception:  # a hint pydantic cannot check: leave that parameter unchecked, check the rest
        kept = {}
        for field, definition in definitions.items():
            try:
                pydantic.create_model("Check", __config__=config, **{field: definition})
                kept[field] = definition
            except Exception:
                continue
        fields = {name: field for name, field in fields.items() if field in kept}
        if not fields:
            return None
        model = pydantic.create_model(model_name, __config__=config, **kept)
    return _Validator(fn, model, fields)
