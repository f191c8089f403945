"""Content fingerprints of Python values: the INPUTS part of a cache key.

``fingerprint(value)`` is the sha256 of an unambiguous, type-tagged encoding of what a
value *is*, the same in every process and run (no ``hash()``, no ``id()``, no reprs), so
``1``, ``1.0``, ``True`` and ``"1"`` differ, ``(1,)`` and ``[1]`` differ, and dicts and
sets are equal whatever their order (``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` have
one fingerprint). Values are encoded by ``functools.singledispatch`` handlers: builtins,
datetimes, ``Decimal``, paths, enums, functions (their code via ``source_fingerprint``
plus closure values and defaults) and classes (user classes by their code, others by
name); numpy and pandas are registered on first need, never imported here. Any other
object is encoded through the protocol pickle uses (``__reduce_ex__``): its class plus
the state it pickles, each part by these handlers, so instances of notebook classes and
dataclasses are stable across kernel restarts. What pickle refuses (locks, generators,
open files, sockets) raises ``FingerprintError``. Add a type with ``register_fingerprint``.
"""

from __future__ import annotations

import _thread
import datetime as dt
import decimal
import enum
import functools
import hashlib
import io
import pathlib
import reprlib
import sys
import threading
import types
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

from nbflow.engine.source_fingerprint import is_user_object, source_fingerprint
from nbflow.errors import FingerprintError

#: Payloads longer than this are folded to their sha256 instead of copied into the encoding.
_INLINE_LIMIT = 1 << 16


def fingerprint(value: Any, *, name: str = "value") -> str:
    """Hex sha256 of ``value``'s content; ``name`` labels the value in error messages."""
    buf = bytearray()
    _encode_named(value, buf, name)
    return hashlib.sha256(buf).hexdigest()


def fingerprint_arguments(arguments: Mapping[str, Any], *, known: Mapping[str, str] | None = None) -> str:
    """Hex fingerprint of named arguments, whatever their order.

    An argument that cannot be fingerprinted uses its entry in ``known`` (e.g. the cache
    key of the task run that produced it) when there is one, else raises FingerprintError.
    """
    buf = bytearray(b"arguments\0")
    for name in sorted(arguments):
        _encode_str(name, buf)
        mark = len(buf)
        try:
            _encode_named(arguments[name], buf, name)
        except FingerprintError:
            if not known or name not in known:
                raise
            del buf[mark:]
            _put(buf, b"known\0", known[name].encode())
    return hashlib.sha256(buf).hexdigest()


def register_fingerprint(cls: type, to_content: Callable[[Any], Any]) -> None:
    """Fingerprint instances of ``cls`` by ``to_content(value)``, a value the handlers know
    (e.g. a tuple of the fields that define it)."""
    tag = _type_name(cls).encode() + b"\0"

    def encode(value: Any, buf: bytearray) -> None:
        buf += b"custom\0" + tag
        _encode(to_content(value), buf)

    _encode_dispatch.register(cls, encode)


class _Unfingerprintable(Exception):
    """Raised inside the encoder; ``path`` grows as it unwinds through containers."""

    def __init__(self, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.value_type = _type_name(type(value))
        self.value_repr = _safe_repr(value)
        self.reason = reason
        self.path: list[str] = []


def _encode_named(value: Any, buf: bytearray, name: str, *, fix: str | None = None,
                  via: Callable[[Any, bytearray], None] | None = None) -> None:
    """Encode ``value``, turning a failure into a FingerprintError that names where it was."""
    try:
        (via or _encode)(value, buf)
    except (_Unfingerprintable, RecursionError) as exc:
        raise _error(exc, name, fix) from None


def _error(exc: Exception, name: str, fix: str | None) -> FingerprintError:
    fix = fix or (f"give the task a cache_key_fn that leaves it out, or exclude it from the cache "
                  f"policy (cache_policy=INPUTS - {name!r}), or pass a value with content (one "
                  f"that pickle accepts)")
    if isinstance(exc, _Unfingerprintable):
        where = name + "".join(reversed(exc.path))
        what = (f"Cannot fingerprint {where} = {exc.value_repr} (a {exc.value_type}): {exc.reason}, "
                f"so no cache key can be computed from it.")
    else:
        what = (f"Cannot fingerprint {name}: it is nested deeper than Python's recursion limit (or refers "
                f"to itself in a way that cannot be followed).")
    error = FingerprintError(f"{what} To fix it: {fix}.")
    #: what went wrong without the advice, and the argument it concerns (for callers that advise)
    error.what, error.argument = what, name
    return error


def _encode(value: Any, buf: bytearray) -> None:
    handler = _EXACT.get(value.__class__)
    if handler is None:
        handler = _encode_dispatch.dispatch(value.__class__)
    handler(value, buf)


# -- scalars ---------------------------------------------------------------------------

def _put(buf: bytearray, tag: bytes, payload: bytes | bytearray | memoryview) -> None:
    """Append ``tag`` and a length-prefixed payload; big payloads are folded to a digest."""
    if len(payload) > _INLINE_LIMIT:
        payload = hashlib.sha256(payload).digest()
        tag = tag[:-1] + b"#\0"
    buf += tag
    buf += len(payload).to_bytes(8, "little")
    buf += payload


def _subclass(value: Any, tag: bytes, buf: bytearray) -> bytes | None:
    """The tag of a builtin's subclass instance: its class name, after its extra attributes.

    Enum members (IntEnum, StrEnum, ...) are encoded whole here instead, and None returned.
    """
    if isinstance(value, enum.Enum):
        _encode_enum(value, buf)
        return None
    extra = getattr(value, "__dict__", None)
    tag = tag[:-1] + b":" + _type_name(type(value)).encode() + b"\0"
    if extra:
        buf += b"attrs\0"
        _encode(dict(extra), buf)
    return tag


def _encode_none(value: None, buf: bytearray) -> None:
    buf += b"none\0"


def _encode_bool(value: bool, buf: bytearray) -> None:
    buf += b"true\0" if value else b"false\0"


def _encode_int(value: int, buf: bytearray) -> None:
    tag = b"int\0" if value.__class__ is int else _subclass(value, b"int\0", buf)
    if tag is not None:
        _put(buf, tag, int.to_bytes(value, (int.bit_length(value) + 8) // 8, "little", signed=True))


def _encode_float(value: float, buf: bytearray) -> None:
    tag = b"float\0" if value.__class__ is float else _subclass(value, b"float\0", buf)
    if tag is not None:
        _put(buf, tag, float.hex(value).encode())


def _encode_complex(value: complex, buf: bytearray) -> None:
    tag = b"complex\0" if value.__class__ is complex else _subclass(value, b"complex\0", buf)
    if tag is not None:
        _put(buf, tag, f"{float.hex(value.real)},{float.hex(value.imag)}".encode())


def _encode_str(value: str, buf: bytearray) -> None:
    tag = b"str\0" if value.__class__ is str else _subclass(value, b"str\0", buf)
    if tag is not None:
        _put(buf, tag, value.encode("utf-8", "surrogatepass"))


def _encode_bytes(value: bytes | bytearray | memoryview, buf: bytearray) -> None:
    base = {bytes: b"bytes\0", bytearray: b"bytearray\0", memoryview: b"memoryview\0"}
    tag = base.get(value.__class__) or _subclass(value, b"bytes\0", buf)
    if tag is None:
        return
    if isinstance(value, memoryview):
        buf += f"{value.format}|{value.shape}\0".encode()
        value = value.tobytes()
    _put(buf, tag, value)


def _encode_enum(value: enum.Enum, buf: bytearray) -> None:
    _put(buf, b"enum\0", f"{_type_name(type(value))}.{value._name_}".encode())
    _encode(value._value_, buf)


# -- containers ------------------------------------------------------------------------

def _encode_sequence(value: list | tuple, buf: bytearray) -> None:
    cls = value.__class__
    tag = b"list\0" if cls is list else b"tuple\0" if cls is tuple else _subclass(value, b"seq\0", buf)
    if tag is None:
        return
    buf += tag
    buf += len(value).to_bytes(8, "little")
    i = 0
    try:
        for i, item in enumerate(value):
            _encode(item, buf)
    except _Unfingerprintable as exc:
        exc.path.append(f"[{i}]")
        raise


def _encode_mapping(value: dict, buf: bytearray, attributes: bool = False) -> None:
    tag = b"dict\0" if value.__class__ is dict else _subclass(value, b"dict\0", buf)
    if tag is None:
        return
    items = []
    key = None
    try:
        for key, item in value.items():
            k, v = bytearray(), bytearray()
            _encode(key, k)
            _encode(item, v)
            items.append((k, v))
    except _Unfingerprintable as exc:
        exc.path.append(f".{key}" if attributes and isinstance(key, str) else f"[{key!r}]")
        raise
    items.sort()  # key order does not matter: {a: 1, b: 2} == {b: 2, a: 1}
    buf += tag
    buf += len(items).to_bytes(8, "little")
    for k, v in items:
        buf += k
        buf += v


def _encode_set(value: set | frozenset, buf: bytearray) -> None:
    base = {set: b"set\0", frozenset: b"frozenset\0"}
    tag = base.get(value.__class__) or _subclass(value, b"set\0", buf)
    if tag is None:
        return
    items = []
    for item in value:
        encoded = bytearray()
        try:
            _encode(item, encoded)
        except _Unfingerprintable as exc:
            exc.path.append(f"{{{_safe_repr(item)}}}")
            raise
        items.append(encoded)
    items.sort()  # iteration order follows str hashing, which is salted per process
    buf += tag
    buf += len(items).to_bytes(8, "little")
    for encoded in items:
        buf += encoded


# -- stdlib values ---------------------------------------------------------------------

def _encode_datetime(value: dt.datetime | dt.time, buf: bytearray) -> None:
    # the zone's name too: two zones can share an offset today and differ tomorrow
    _put(buf, b"datetime\0" if isinstance(value, dt.datetime) else b"time\0",
         f"{value.isoformat()}|{value.tzinfo}|{value.fold}|{_type_name(type(value))}".encode())


def _encode_date(value: dt.date, buf: bytearray) -> None:
    _put(buf, b"date\0", f"{value.isoformat()}|{_type_name(type(value))}".encode())


def _encode_timedelta(value: dt.timedelta, buf: bytearray) -> None:
    _put(buf, b"timedelta\0", f"{value.days},{value.seconds},{value.microseconds}".encode())


def _encode_decimal(value: decimal.Decimal, buf: bytearray) -> None:
    _put(buf, b"decimal\0", str(value).encode())


def _encode_path(value: pathlib.PurePath, buf: bytearray) -> None:
    # the path itself, not the file's content
    _put(buf, b"path\0", f"{_type_name(type(value))}|{value}".encode("utf-8", "surrogatepass"))


def _encode_module(value: types.ModuleType, buf: bytearray) -> None:
    _put(buf, b"module\0", value.__name__.encode())


def _encode_type(value: type, buf: bytearray) -> None:
    if is_user_object(value) or not _importable(value):
        _put(buf, b"class\0", f"{_type_name(value)}|{source_fingerprint(value)}".encode())
    else:
        _put(buf, b"class-ref\0", _type_name(value).encode())


def _encode_function(fn: types.FunctionType, buf: bytearray) -> None:
    """A library function by its importable name; a user function by its code, closure and defaults."""
    if not is_user_object(fn) and _importable(fn):
        _put(buf, b"function-ref\0", _type_name(fn).encode())
        return
    with _active(fn, buf) as first:
        if first:
            _put(buf, b"function\0", source_fingerprint(fn).encode())
            _encode_closure(fn, buf)
            _encode_sequence(fn.__defaults__ or (), buf)
            _encode_mapping(fn.__kwdefaults__ or {}, buf)


def closure_fingerprint(fn: Callable[..., Any]) -> str | None:
    """Hex fingerprint of the values a function's closure holds; None when it has no closure."""
    if not getattr(fn, "__closure__", None):
        return None
    buf = bytearray()
    fix = ("pass that value to the task as an argument instead of closing over it, or give the "
           "task a cache_key_fn")
    _encode_named(fn, buf, fn.__qualname__, fix=fix, via=_encode_closure)
    return hashlib.sha256(buf).hexdigest()


def _encode_closure(fn: types.FunctionType, buf: bytearray) -> None:
    """Closure values are data the code reads, so they are part of the function."""
    cells = fn.__closure__ or ()
    buf += b"closure\0" + len(cells).to_bytes(8, "little")
    for name, cell in zip(fn.__code__.co_freevars, cells):
        _encode_str(name, buf)
        try:
            contents = cell.cell_contents
        except ValueError:
            buf += b"empty-cell\0"
            continue
        try:
            _encode(contents, buf)
        except _Unfingerprintable as exc:
            exc.path.append(f".<closure {name}>")
            raise


def _refuse(reason: str) -> Callable[[Any, bytearray], None]:
    def encode(value: Any, buf: bytearray) -> None:
        raise _Unfingerprintable(value, reason)
    return encode


# -- everything else: the pickle protocol ----------------------------------------------

_local = threading.local()


class _active:
    """Guard against cycles: an object met again inside itself is encoded as a back-reference."""

    def __init__(self, obj: Any, buf: bytearray) -> None:
        self.obj, self.buf = obj, buf

    def __enter__(self) -> bool:
        stack = _local.__dict__.setdefault("stack", [])
        for depth, other in enumerate(stack):
            if other is self.obj:
                self.buf += b"backref\0%d\0" % depth
                self.entered = False
                return False
        stack.append(self.obj)
        self.entered = True
        return True

    def __exit__(self, *exc: object) -> None:
        if self.entered:
            _local.stack.pop()


def _encode_object(value: Any, buf: bytearray) -> None:
    """An object by its class and the state it pickles (``__reduce_ex__``)."""
    if _register_lazy_handlers():
        return _encode(value, buf)
    try:
        reduced = value.__reduce_ex__(4)
    except Exception as exc:
        raise _Unfingerprintable(value, f"it cannot be pickled ({exc})") from None
    if isinstance(reduced, str):  # a module-level singleton, pickled by name
        module = getattr(value, "__module__", None) or type(value).__module__
        _put(buf, b"global\0", f"{module}.{reduced}".encode())
        return
    with _active(value, buf) as first:
        if not first:
            return
        # (callable, args, state, list items, dict items), always all five so the encoding
        # of what follows cannot shift
        func, args, state, items, pairs = (tuple(reduced) + (None,) * 5)[:5]
        buf += b"object\0"
        _encode(func, buf)
        _encode(args, buf)
        if state.__class__ is dict:
            _encode_mapping(state, buf, attributes=True)  # errors name `.attr`, not `['attr']`
        else:
            _encode(state, buf)
        _encode(None if items is None else list(items), buf)
        _encode(None if pairs is None else list(pairs), buf)


def _importable(obj: Any) -> bool:
    """True when ``module.qualname`` resolves to ``obj``, so its name identifies it."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    target: Any = module
    for part in getattr(obj, "__qualname__", "<>").split("."):
        target = getattr(target, part, None)
    return target is obj


def _type_name(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"


_repr = reprlib.Repr()
_repr.maxother = _repr.maxstring = 80


def _safe_repr(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception:
        return f"<{type(value).__qualname__}>"


# -- numpy and pandas, registered the first time one of their values is met -----------

_lazy_done: set[str] = set()


def _register_lazy_handlers() -> bool:
    """Register numpy/pandas handlers once their modules are imported; True if any was added."""
    added = False
    for library in ("numpy", "pandas"):  # pandas' handlers use numpy's
        if library not in _lazy_done and _imported(library):
            from nbflow.engine import fingerprint_arrays

            getattr(fingerprint_arrays, f"register_{library}")(_kit)
            _lazy_done.add(library)
            added = True
    return added


def _imported(name: str) -> bool:
    """True once module ``name`` has finished importing (another thread, such as the store's
    writer, may be halfway through importing pandas: its classes do not exist yet)."""
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


_encode_dispatch = functools.singledispatch(_encode_object)
for _cls, _handler in [
    (type(None), _encode_none), (bool, _encode_bool), (int, _encode_int), (float, _encode_float),
    (complex, _encode_complex), (str, _encode_str), (bytes, _encode_bytes),
    (bytearray, _encode_bytes), (memoryview, _encode_bytes), (list, _encode_sequence),
    (tuple, _encode_sequence), (dict, _encode_mapping), (set, _encode_set),
    (frozenset, _encode_set), (dt.datetime, _encode_datetime), (dt.time, _encode_datetime),
    (dt.date, _encode_date), (dt.timedelta, _encode_timedelta), (decimal.Decimal, _encode_decimal),
    (pathlib.PurePath, _encode_path), (enum.Enum, _encode_enum), (types.ModuleType, _encode_module),
    (type, _encode_type), (types.FunctionType, _encode_function),
    (types.GeneratorType, _refuse("a generator is consumed by reading it")),
    (types.AsyncGeneratorType, _refuse("an async generator is consumed by reading it")),
    (types.CoroutineType, _refuse("a coroutine is a computation, not a value; await it first")),
    (io.IOBase, _refuse("an open file or stream has a position, not a fixed content")),
    (_thread.LockType, _refuse("a lock has no content")),
    (_thread.RLock, _refuse("a lock has no content")),
    (types.FrameType, _refuse("a stack frame has no fixed content")),
]:
    _encode_dispatch.register(_cls, _handler)

#: What the numpy and pandas handlers (nbflow.engine.fingerprint_arrays) build on.
_kit = SimpleNamespace(dispatch=_encode_dispatch, encode=_encode, put=_put,
                       encode_object=_encode_object, Unfingerprintable=_Unfingerprintable)

#: Exact builtin types skip singledispatch's MRO look-up (the cache-key hot path).
_EXACT: dict[type, Callable[[Any, bytearray], None]] = {
    cls: _encode_dispatch.dispatch(cls)
    for cls in (type(None), bool, int, float, str, bytes, list, tuple, dict, set, frozenset)
}
