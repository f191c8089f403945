"""A flow entrypoint ("flows/etl.py:etl") parsed and checked from its source text, never run.

The server validates deployments and must not execute user code, so everything here
reads the module's syntax tree (`ast`): the flow is a module-level `def`/`async def`
NAME (decorated with @flow or not), or NAME bound by `NAME = flow(fn)`,
`NAME = flow(name=...)(fn)` or `NAME = other_flow.with_options(...)`. Anything
computed at run time (a name= built from variables, a flow made in a loop) cannot be
seen without running the file; such flows get the defaults nbflow's `Flow` uses.
"""

from __future__ import annotations

import ast
import json
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbflow.errors import NbflowError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_KINDS = {"int", "float", "bool", "str", "list", "dict", "tuple"}
_EXAMPLES = {"int": "3", "float": "0.5", "bool": "true", "list": "[1, 2]", "dict": '{"a": 1}',
             "tuple": "[1, 2]"}


class EntrypointError(NbflowError, ValueError):
    """A flow entrypoint that cannot be found or read, or parameters its flow does not take."""

    def __init__(self, message: str, *, field: str = "entrypoint", parameter: str | None = None) -> None:
        super().__init__(message)
        #: which part of the deployment is wrong: "entrypoint" or "parameters"
        self.field = field
        self.parameter = parameter


@dataclass
class _Target:
    """The function a flow entrypoint resolves to, and the literal name= given to @flow."""

    fn: ast.FunctionDef | ast.AsyncFunctionDef
    name_option: str | None = None


def parse_entrypoint(entrypoint: str, base_dir: Path | None = None) -> tuple[Path, str]:
    """Split "FILE.py:NAME" into (absolute path of an existing file, NAME); relative to base_dir or cwd."""
    if not isinstance(entrypoint, str) or ":" not in entrypoint:
        raise EntrypointError(
            f"Flow entrypoint {entrypoint!r} has no ':'; write it as FILE.py:FUNCTION, "
            "for example flows/etl.py:etl.")
    path_text, name = (part.strip() for part in entrypoint.rsplit(":", 1))
    if not name.isidentifier() or keyword.iskeyword(name):
        raise EntrypointError(
            f"Flow entrypoint {entrypoint!r}: {name!r} is not a Python function name; after the ':' "
            "give the name of the @flow function defined in the file, for example etl.py:etl.")
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = (Path(base_dir) if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    if path.suffix != ".py":
        raise EntrypointError(
            f"Flow entrypoint {entrypoint!r} does not name a .py file ({path.name}); a flow "
            "entrypoint is a Python file and a function in it, for example flows/etl.py:etl. "
            "For a notebook, give the deployment a notebook instead of an entrypoint.")
    if not path.is_file():
        raise EntrypointError(
            f"Flow entrypoint {entrypoint!r}: there is no file {path}. Give the path of an existing "
            ".py file, absolute or relative to the directory the deployment is made from.")
    return path, name


def flow_signature(path: Path, name: str) -> dict[str, dict]:
    """The parameters a deployment may pass: {name: {"required", "annotation", "default"}}.

    `*args`/`**kwargs` are not listed (a `**kwargs` flow accepts any name; see
    check_flow_parameters). Defaults that are not literals are given as None.
    """
    return _signature(Path(path), name)[0]


def flow_parameter_schema(path: Path, name: str) -> dict[str, Any]:
    """The flow's parameter schema, as `Flow.parameters` gives it, from its source (hints it cannot read
    without running the file, such as a pydantic model, read as any value)."""
    from nbflow.deployments.source_hints import signature_from_source
    from nbflow.engine.parameter_schema import generate_parameter_schema, parameter_docstrings  # loads pydantic

    tree = _module(Path(path))
    fn = _resolve(tree, name, Path(path)).fn
    signature = signature_from_source(tree, fn)
    named = [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    schema = generate_parameter_schema(signature.replace(parameters=named),  # a run passes names only
                                       parameter_docstrings(ast.get_docstring(fn)))
    return schema.model_dump_for_openapi()


def flow_name_of(path: Path, name: str) -> str:
    """The flow's name as nbflow's `Flow` sets it: a literal @flow(name=...), else fn name with _ -> -."""
    target = _resolve(_module(Path(path)), name, Path(path))
    return target.name_option or target.fn.name.replace("_", "-")


def find_flows(path: Path) -> list[str]:
    """The module-level names in a .py file that are flows (`@flow def`, `x = flow(fn)`,
    `x = other.with_options(...)`), in file order, for a form that lets the user pick one."""
    bindings = _bindings(_module(Path(path)))
    found = []
    for name, node in bindings.items():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            if any(_is_flow(d) for d in decorators):
                found.append(name)
        elif isinstance(node, ast.Call):
            func = node.func
            made = _is_flow(func) or (isinstance(func, ast.Call) and _is_flow(func.func))
            renamed = isinstance(func, ast.Attribute) and func.attr == "with_options" \
                and isinstance(func.value, ast.Name) and func.value.id in found
            if made or renamed:
                found.append(name)
    return found


def check_flow_parameters(path: Path, name: str, values: dict) -> dict:
    """Check parameter names against the flow's signature and convert text values by annotation."""
    for key in values:
        if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
            raise EntrypointError(
                f"Parameter name {key!r} is not a Python identifier; flow parameters are argument "
                "names such as n_rows or start_date.", field="parameters", parameter=str(key))
    params, any_name = _signature(Path(path), name)
    label = f"The flow {name} in {Path(path).name}"
    accepted = ", ".join(params) or "none"
    unknown = [key for key in values if key not in params]
    if unknown and not any_name:
        raise EntrypointError(
            f"{label} does not take parameter(s) {', '.join(unknown)}; it takes: {accepted}. "
            "Remove them or fix their spelling.", field="parameters", parameter=unknown[0])
    missing = [key for key, info in params.items() if info["required"] and key not in values]
    if missing:
        raise EntrypointError(
            f"{label} needs parameter(s) {', '.join(missing)}, which have no default; give a value "
            "for each in the deployment's or the run's parameters.", field="parameters",
            parameter=missing[0])
    return {key: _convert(label, key, value, params.get(key)) for key, value in values.items()}


# -- reading the module ------------------------------------------------------------------------

def _module(path: Path) -> ast.Module:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EntrypointError(f"Could not read the flow file {path}: {exc}. Check that it exists and "
                              "is a UTF-8 Python file.") from None
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise EntrypointError(f"The flow file {path} is not valid Python (line {exc.lineno}: {exc.msg}); "
                              "fix the syntax error and deploy again.") from None


def _bindings(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level names -> the statement that binds them last (as Python would at import)."""
    found: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            found[stmt.targets[0].id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            found[stmt.target.id] = stmt.value
    return found


def _resolve(tree: ast.Module, name: str, path: Path) -> _Target:
    bindings = _bindings(tree)
    return _follow(bindings, name, path, seen=set())


def _follow(bindings: dict[str, ast.AST], name: str, path: Path, seen: set[str]) -> _Target:
    node = bindings.get(name)
    if node is None or name in seen:
        functions = [n for n, v in bindings.items() if isinstance(v, (ast.FunctionDef, ast.AsyncFunctionDef))]
        raise EntrypointError(
            f"{path.name} has no module-level function or flow named {name!r}; its top-level functions "
            f"are: {', '.join(functions) or 'none'}. Put the function's name after the ':'.")
    seen.add(name)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        option = None
        for deco in node.decorator_list:
            if isinstance(deco, ast.Call) and _is_flow(deco.func):
                option = _name_keyword(deco)
        return _Target(node, option)
    if isinstance(node, ast.Name):  # an alias: etl = other
        return _follow(bindings, node.id, path, seen)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "with_options" \
                and isinstance(func.value, ast.Name):
            inner = _follow(bindings, func.value.id, path, seen)
            return _Target(inner.fn, _name_keyword(node) or inner.name_option)
        if isinstance(func, ast.Call) and _is_flow(func.func) and len(node.args) == 1 \
                and isinstance(node.args[0], ast.Name):  # flow(name=...)(fn)
            return _Target(_follow(bindings, node.args[0].id, path, seen).fn, _name_keyword(func))
        if _is_flow(func) and node.args and isinstance(node.args[0], ast.Name):  # flow(fn, name=...)
            return _Target(_follow(bindings, node.args[0].id, path, seen).fn, _name_keyword(node))
    raise EntrypointError(
        f"In {path.name}, {name!r} is made by an expression nbflow cannot read without running the file "
        f"({ast.unparse(node)[:80]}). Define the flow with `@flow def {name}(...)`, or "
        f"`{name} = flow(fn)` / `{name} = other.with_options(...)`.")


def _is_flow(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "flow") or \
        (isinstance(node, ast.Attribute) and node.attr == "flow")


def _name_keyword(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    return None


def _signature(path: Path, name: str) -> tuple[dict[str, dict], bool]:
    """(parameters by name, whether **kwargs accepts any other name)."""
    fn = _resolve(_module(path), name, path).fn
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    stuck = [a.arg for a, d in zip(args.posonlyargs, defaults) if d is None]
    if stuck:
        raise EntrypointError(
            f"The flow {name} in {path.name} has positional-only parameter(s) {', '.join(stuck)} without "
            "defaults; a deployment passes parameters by name, so remove the '/' from its signature.")
    pairs = [*list(zip(positional, defaults))[len(args.posonlyargs):],
             *zip(args.kwonlyargs, args.kw_defaults)]
    params = {arg.arg: {"required": default is None, "annotation": _annotation(arg.annotation),
                        "default": _literal(default)} for arg, default in pairs}
    return params, args.kwarg is not None


def _annotation(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation: "int"
        return node.value
    return ast.unparse(node)


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None  # an expression such as datetime.now(): known only when the flow runs


# -- converting text values ----------------------------------------------------------------------

def _kind(info: dict | None) -> str | None:
    """int, float, bool, str, list, dict or tuple from the annotation, else from the default."""
    if info is None:
        return None
    text = info.get("annotation")
    if text:
        text = text.replace("typing.", "").replace(" ", "")
        if text.startswith("Optional[") and text.endswith("]"):
            text = text[len("Optional["):-1]
        options = [part for part in text.split("|") if part != "None"]
        if len(options) != 1:
            return None
        base = options[0].split("[", 1)[0].lower()
        return base if base in _KINDS else None
    default = info.get("default")
    kind = type(default).__name__
    return kind if default is not None and kind in _KINDS else None


def _convert(label: str, name: str, value: Any, info: dict | None) -> Any:
    """Text from a command line or form, as the type the flow's annotation or default says."""
    kind = _kind(info)
    if not isinstance(value, str) or kind in (None, "str"):
        return value
    text = value.strip()
    if kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        parsed: Any = value
    elif kind in ("int", "float"):
        try:
            parsed = int(text) if kind == "int" else float(text)
        except ValueError:
            parsed = value
    else:
        parsed = _parse_literal(text)
        if kind == "tuple" and isinstance(parsed, list):
            parsed = tuple(parsed)
    expected = {"bool": bool, "int": int, "float": float, "list": list, "dict": dict, "tuple": tuple}[kind]
    if isinstance(parsed, expected):
        return parsed
    example = _EXAMPLES[kind]
    raise EntrypointError(
        f"{label} expects parameter '{name}' to be a {kind} (annotation {info.get('annotation')}, "
        f"default {info.get('default')!r}); got {value!r}. Pass a {kind} such as {example}.",
        field="parameters", parameter=name)


def _parse_literal(text: str) -> Any:
    """JSON first (true/null as a form sends them), then a Python literal; else the text."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
