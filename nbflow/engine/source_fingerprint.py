"""Fingerprints of code: a function's normalised source plus what it reaches in the user's code.

TASK_SOURCE keys on this, so editing a task, a helper it calls (also one in an imported
module of your own) or a constant it reads (a global, or a closure variable such as a
factory's parameter) misses the cache, while editing a comment, a docstring, the task's
decorator or its name does not. State the function keeps is not code: a variable it rebinds
(``nonlocal n; n += 1``, ``global n``) or a mutable object in its closure (a dict it fills)
is left out, as Prefect leaves it out. Code from the standard library, from
site-packages and from nbflow itself is identified by name only (its version is not
part of the key).
"""

from __future__ import annotations

import ast
import dis
import functools
import hashlib
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterator
from typing import Any

_MISSING = object()

#: Values read from user globals that are folded into the key by content: immutable, so
#: an unchanged identity means unchanged content.
_CONSTANT_TYPES = (type(None), bool, int, float, complex, str, bytes)

#: A check that a name still resolves to what it did: (getter, key, expected object).
_Dep = tuple[Callable[[Any, Any], Any], Any, Any]

#: root function -> (deps, hex digest); re-validated on every look-up.
_MEMO: dict[Callable[..., Any], tuple[list[_Dep], str]] = {}
_MEMO_LIMIT = 4096
_REBINDING = frozenset({"STORE_DEREF", "DELETE_DEREF", "STORE_GLOBAL", "DELETE_GLOBAL"})
#: id(code) -> (code, the free variables and globals it rebinds).
_REBOUND: dict[int, tuple[types.CodeType, frozenset[str]]] = {}
#: (id(code), is the root function) -> (code, digest of its normalised source).
_OWN: dict[tuple[int, bool], tuple[types.CodeType, bytes]] = {}
#: id(code) -> (code, every global name it or its nested code objects look up).
_NAMES: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}


def source_fingerprint(fn: Callable[..., Any]) -> str:
    """Hex digest of a function's source (decorators and docstrings dropped), or a class's
    methods, and of the user functions, classes and constants it reaches.

    Memoised per function and re-checked on each call: every global name the walk looked
    up must still name the same object, so redefining a helper in a notebook cell changes
    the key of the tasks that call it.
    """
    memo = _MEMO.get(fn)
    if memo is not None:
        deps, digest = memo
        for getter, key, expected in deps:
            if getter(key, _MISSING) is not expected:
                break
        else:
            return digest
    walk = _Walk()
    if isinstance(fn, types.FunctionType):
        walk.function(fn, root=True)
    elif isinstance(fn, type):
        walk.cls(fn)
    else:
        raise TypeError(f"source_fingerprint() takes a Python function or class, not {type(fn).__qualname__}")
    digest = walk.digest.hexdigest()
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[fn] = (walk.deps, digest)
    return digest


def is_user_object(obj: Any) -> bool:
    """True when ``obj`` was defined in the user's code, not the stdlib, site-packages or nbflow.

    Functions and classes are judged by the file their code came from (``__module__``
    can say ``__main__`` for code exec'd from anywhere); anything else by its module's file.
    """
    module = getattr(obj, "__module__", None)
    if module is not None and module.partition(".")[0] == "nbflow":
        return False
    code = getattr(obj, "__code__", None)
    if isinstance(obj, type):  # a class: where its methods' code came from
        code = next((f.__code__ for v in vars(obj).values() for f in _class_member_functions(v)), None)
    if isinstance(code, types.CodeType):
        return _is_user_file(code.co_filename)
    return _is_user_module(module)


@functools.lru_cache(maxsize=None)
def _is_user_module(name: str | None) -> bool:
    if name is None:
        return True  # exec'd code without a module
    top = name.partition(".")[0]
    if top in ("builtins", "nbflow") or top in sys.stdlib_module_names:
        return False
    path = getattr(sys.modules.get(name), "__file__", None)
    return True if path is None else _is_user_file(path)  # no file: a notebook's or REPL's __main__


@functools.lru_cache(maxsize=None)
def _is_user_file(filename: str) -> bool:
    if filename.startswith("<"):
        return not filename.startswith("<frozen")  # <string>, <stdin>: exec'd user code
    path = os.path.realpath(filename)
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path.startswith(prefix) for prefix in _library_dirs())


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    paths = {sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(getattr(site, "getsitepackages", list)())
    paths.add(getattr(site, "getusersitepackages", lambda: None)())
    return tuple(os.path.realpath(p) + os.sep for p in paths if p)


class _Walk:
    """One traversal from a root function through the user code it reaches."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.deps: list[_Dep] = []
        self.seen: set[int] = set()

    def emit(self, kind: bytes, name: str, payload: bytes) -> None:
        self.digest.update(b"%s\0%s\0%d\0" % (kind, name.encode("utf-8", "surrogatepass"), len(payload)))
        self.digest.update(payload)

    def function(self, fn: types.FunctionType, *, root: bool = False) -> None:
        if id(fn) in self.seen:
            return
        self.seen.add(id(fn))
        code = fn.__code__
        self.deps.append((functools.partial(getattr, fn), "__code__", code))
        # The task's own name is not part of its code: a renamed task with the same body computes
        # the same results (Prefect's task_input_hash keys on the body too).
        self.emit(b"function", "" if root else fn.__qualname__, _own_digest(code, root=root))
        names = _global_names(code)
        namespace = fn.__globals__
        rebound = _rebound_names(code)
        for name in names:
            value = namespace.get(name, _MISSING)
            if name in rebound and (isinstance(value, _CONSTANT_TYPES) or _is_constant_tuple(value)):
                continue  # `global n; n += 1`: state the function keeps, not code
            self.deps.append((namespace.get, name, value))
            if value is not _MISSING:
                self.reference(name, value, names)
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            value = _cell_get(cell, None)
            if callable(value) or isinstance(value, types.ModuleType):
                self.deps.append((_cell_get, cell, value))
                self.reference(name, value, names)
            elif name not in rebound and (isinstance(value, _CONSTANT_TYPES) or _is_constant_tuple(value)):
                # a constant the function only reads (a factory's parameter) is part of its code;
                # state it keeps (a counter it rebinds, a dict it fills) is not, as in Prefect
                self.deps.append((_cell_get, cell, value))
                self.emit(b"closure-constant", name, _constant_bytes(value))

    def reference(self, name: str, value: Any, names: tuple[str, ...]) -> None:
        """Follow what a global name (or closure cell) of user code refers to."""
        if isinstance(value, _CONSTANT_TYPES) or _is_constant_tuple(value):
            self.emit(b"constant", name, _constant_bytes(value))
        elif isinstance(value, types.FunctionType):
            if is_user_object(value):
                self.function(value)
            self.wrapped(name, value, getattr(value, "__wrapped__", None), names)
        elif isinstance(value, type):
            if is_user_object(value):
                self.cls(value)
        elif isinstance(value, types.ModuleType):
            self.module(value, names)
        elif isinstance(value, types.MethodType):
            self.reference(name, value.__func__, names)
        elif isinstance(value, functools.partial):
            self.reference(name, value.func, names)
        elif callable(value):
            # decorators that keep ``__wrapped__`` (functools.wraps, lru_cache), nbflow tasks (``.fn``)
            inner = getattr(value, "__wrapped__", None)
            if inner is None and type(value).__module__.startswith("nbflow."):
                inner = getattr(value, "fn", None)
            self.wrapped(name, value, inner, names)

    def wrapped(self, name: str, wrapper: Any, inner: Any, names: tuple[str, ...]) -> None:
        """Follow a wrapper to the code it wraps: only to code, and each wrapper once."""
        if id(wrapper) in self.seen or not isinstance(inner, (types.FunctionType, type, types.MethodType)):
            return
        self.seen.add(id(wrapper))  # a global, so alive for the whole walk
        self.reference(name, inner, names)

    def module(self, module: types.ModuleType, names: tuple[str, ...]) -> None:
        """A user module used as ``module.attr``: follow every attribute the code could name."""
        if id(module) in self.seen or not _is_user_module(module.__name__):
            return
        self.seen.add(id(module))
        namespace = vars(module)
        for name in names:
            value = namespace.get(name, _MISSING)
            self.deps.append((namespace.get, name, value))
            if value is not _MISSING:
                self.reference(name, value, names)

    def cls(self, cls: type) -> None:
        """A user class: its bases, attribute names, constants and methods' code."""
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        bases = ",".join(f"{b.__module__}.{b.__qualname__}" for b in cls.__bases__)
        self.emit(b"class", cls.__qualname__, bases.encode())
        namespace = vars(cls)
        for name in sorted(namespace):
            if name in _CLASS_NOISE:
                continue
            value = namespace[name]
            self.deps.append((namespace.get, name, value))
            for fn in _class_member_functions(value):
                self.function(fn)
            if isinstance(value, _CONSTANT_TYPES) or _is_constant_tuple(value):
                self.emit(b"attribute", name, _constant_bytes(value))
            else:
                self.emit(b"attribute", name, type(value).__qualname__.encode())
        for base in cls.__bases__:
            if is_user_object(base):
                self.cls(base)


_CLASS_NOISE = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__",
                          "__dataclass_fields__", "__dataclass_params__", "__match_args__"})


def _class_member_functions(value: Any) -> Iterator[types.FunctionType]:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        yield from (f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType))
    elif isinstance(value, types.FunctionType):
        yield value


def _cell_get(cell: types.CellType, _default: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell: the variable is not bound yet
        return _MISSING


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name ``code`` and the code objects nested in it look up (globals and attributes)."""
    cached = _NAMES.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(dict.fromkeys(current.co_names))
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    result = tuple(names)
    _NAMES[id(code)] = (code, result)
    return result


def _rebound_names(code: types.CodeType) -> frozenset[str]:
    """The free variables and globals ``code`` assigns or deletes (``nonlocal n; n += 1``)."""
    cached = _REBOUND.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    names = frozenset(ins.argval for ins in dis.get_instructions(code) if ins.opname in _REBINDING)
    _REBOUND[id(code)] = (code, names)
    return names


def _own_digest(code: types.CodeType, *, root: bool) -> bytes:
    """Digest of one function's own code: its parsed source, else its code object."""
    cached = _OWN.get((id(code), root))
    if cached is not None and cached[0] is code:
        return cached[1]
    digest = _ast_digest(code, root) or _code_digest(code)
    _OWN[(id(code), root)] = (code, digest)
    return digest


def _ast_digest(code: types.CodeType, root: bool) -> bytes | None:
    """``ast.dump`` of the function's source: blind to comments, blank lines and docstrings
    (and, for the root function, to its decorators and name)."""
    if code.co_name == "<lambda>":
        return None  # getsource returns the whole line around a lambda
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name != code.co_name:
        return None
    if root:
        node.decorator_list = []
        node.name = ""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and sub.body:
            first = sub.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                sub.body = sub.body[1:] or [ast.Pass()]
    return b"ast\0" + hashlib.sha256(ast.dump(node).encode()).digest()


def _code_digest(code: types.CodeType) -> bytes:
    """Digest of a code object when its source cannot be read (lambdas, exec'd code).

    Line numbers are left out so moving a function does not change it.
    """
    h = hashlib.sha256(b"code\0")
    h.update(b"%d\0%d\0%d\0%d\0" % (code.co_argcount, code.co_posonlyargcount,
                                    code.co_kwonlyargcount, code.co_flags))
    for field in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        h.update(_constant_bytes(field))
    h.update(b"%d:" % len(code.co_code) + code.co_code)
    h.update(_constant_bytes(code.co_consts))
    return h.digest()


def _is_constant_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, frozenset)) and type(value) in (tuple, frozenset) and all(
        isinstance(v, _CONSTANT_TYPES) or _is_constant_tuple(v) for v in value)


def _constant_bytes(value: Any) -> bytes:
    """A stable, unambiguous encoding of a literal (code constants, user-module constants)."""
    if isinstance(value, types.CodeType):
        return b"C" + _code_digest(value)
    if isinstance(value, (tuple, frozenset)):
        parts = [_constant_bytes(v) for v in value]
        if isinstance(value, frozenset):
            parts.sort()  # frozenset order follows str hashing, which is salted per process
        body = b"".join(b"%d:" % len(p) + p for p in parts)
        return (b"T" if isinstance(value, tuple) else b"F") + b"%d:" % len(parts) + body
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, bytes):
        return b"b" + value
    if isinstance(value, float):
        return b"f" + float.hex(value).encode()
    if isinstance(value, complex):
        return b"c" + float.hex(value.real).encode() + b"," + float.hex(value.imag).encode()
    if isinstance(value, (bool, int, type(None))):
        return b"i" + f"{type(value).__name__}:{int(value or 0):x}".encode()
    return b"?" + f"{type(value).__module__}.{type(value).__qualname__}".encode()
