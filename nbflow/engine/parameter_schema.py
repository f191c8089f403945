"""A flow's parameter schema, as Prefect 3 makes it: an OpenAPI object schema built by pydantic
from the signature's hints, with each parameter's position and its docstring description.

`Flow.parameters`, `nbflow.utilities.callables.parameter_schema` and the dashboard's run form
(a deployment's `parameter_schema`) all use this one schema. Importing this module loads pydantic.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Literal

import pydantic
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from nbflow.engine.parameters import resolved_hints


class ParameterSchema(pydantic.BaseModel):
    """The parameters of a flow as an OpenAPI object schema (Prefect's `ParameterSchema`)."""

    title: Literal["Parameters"] = "Parameters"
    type: Literal["object"] = "object"
    properties: dict[str, Any] = pydantic.Field(default_factory=dict)
    required: list[str] = pydantic.Field(default_factory=list)
    definitions: dict[str, Any] = pydantic.Field(default_factory=dict)

    def model_dump_for_openapi(self) -> dict[str, Any]:
        """The schema as plain JSON data, without an empty `required`."""
        result = self.model_dump(mode="python", exclude_none=True)
        if "required" in result and not result["required"]:
            del result["required"]
        return result


class _EmptySchemaForUserClasses(GenerateJsonSchema):
    """A parameter typed with a plain user class gets an empty schema (any value), as in Prefect."""

    def is_instance_schema(self, schema: core_schema.IsInstanceSchema) -> JsonSchemaValue:
        return {}


def parameter_schema(fn: Callable[..., Any]) -> ParameterSchema:
    """The schema of `fn`'s parameters: names, types, defaults, required ones, descriptions."""
    signature = inspect.signature(fn)
    hints = resolved_hints(fn, signature)
    signature = signature.replace(parameters=[
        p.replace(annotation=hints.get(name, p.annotation if not isinstance(p.annotation, str) else p.empty))
        for name, p in signature.parameters.items()])
    return generate_parameter_schema(signature, parameter_docstrings(inspect.getdoc(fn)))


def generate_parameter_schema(signature: inspect.Signature, docstrings: dict[str, str]) -> ParameterSchema:
    """The schema of a signature's parameters; a hint pydantic cannot describe counts as any value."""
    config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    fields: dict[str, Any] = {}
    for position, param in enumerate(signature.parameters.values()):
        if param.name in ("self", "cls"):  # passed implicitly: not parameters of a run
            continue
        name, hint, field = _field(param, position, docstrings)
        try:
            _schema({name: (hint, field)}, config)
        except (ValueError, TypeError, pydantic.errors.PydanticInvalidForJsonSchema, pydantic.PydanticUserError):
            hint = Any
        fields[name] = (hint, field)
    return ParameterSchema(**_schema(fields, config))


def _field(param: inspect.Parameter, position: int, docstrings: dict[str, str]) -> tuple[str, Any, Any]:
    # A name pydantic's BaseModel uses (or a private one) gets another field name, the parameter as alias.
    name = param.name
    if hasattr(pydantic.BaseModel, name) or name.startswith("_"):
        name = f"{name}__" if not name.startswith("_") else f"p{position}__"
    hint = Any if param.annotation is inspect.Parameter.empty else param.annotation
    existing = param.default if isinstance(param.default, pydantic.fields.FieldInfo) else None
    default = existing.default if existing is not None else param.default
    description = existing.description if existing is not None and existing.description else \
        docstrings.get(param.name)
    extra: dict[str, Any] = {}
    if existing is not None and isinstance(existing.json_schema_extra, dict):
        extra.update(existing.json_schema_extra)
    extra.setdefault("position", position)
    field = pydantic.Field(default=... if default is inspect.Parameter.empty else default, title=param.name,
                           description=description, alias=param.name if name != param.name else None,
                           json_schema_extra=extra)
    return name, hint, field


def _schema(fields: dict[str, Any], config: Any) -> dict[str, Any]:
    model = pydantic.create_model("Parameters", __config__=config, **fields)
    try:
        schema = pydantic.TypeAdapter(model).json_schema(by_alias=True, ref_template="#/definitions/{model}",
                                                          schema_generator=_EmptySchemaForUserClasses)
    except pydantic.PydanticUndefinedAnnotation as exc:
        raise TypeError(exc.message) from None
    if "$defs" in schema:
        schema["definitions"] = schema.pop("$defs")
    return schema


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_OTHER_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_ENTRY = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parameter_docstrings(docstring: str | None) -> dict[str, str]:
    """Parameter name -> description from a Google-style docstring's `Args:` section."""
    found: dict[str, str] = {}
    if not docstring:
        return found
    lines = inspect.cleandoc(docstring).splitlines()
    inside = False
    indent = None
    current = None
    for line in lines:
        stripped = line.strip()
        if _SECTION.match(stripped) and not line.startswith(" "):
            inside, indent, current = True, None, None
            continue
        if not inside:
            continue
        if stripped and not line.startswith(" ") and _OTHER_SECTION.match(stripped):
            inside = False
            continue
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        entry = _ENTRY.match(stripped) if depth == indent else None
        if entry:
            current = entry.group(1)
            found[current] = entry.group(3).strip()
        elif current is not None and depth > indent:
            found[current] = f"{found[current]}\n{stripped}" if found[current] else stripped
    return found
