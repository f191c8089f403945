"""Result serializers, as Prefect's ``result_serializer``: "pickle", "json", "compressed/pickle",
"compressed/json", or an object with ``dumps(value) -> bytes`` and ``loads(bytes) -> value``.

Without one, nbflow picks the format per value (JSON for plain values, Parquet for
DataFrames, signed cloudpickle for the rest: see ``nbflow.store.results``). Pickled bytes,
compressed or not, are signed before they are written and checked before they are loaded.
"""

from __future__ import annotations

import json
import lzma
from typing import Any

from nbflow.errors import SerializationError

__all__ = ["CompressedJSONSerializer", "CompressedPickleSerializer", "CompressedSerializer",
           "JSONSerializer", "PickleSerializer", "Serializer", "resolve_serializer"]

#: The serializer names Prefect accepts as a string.
NAMES = ("pickle", "json", "compressed/pickle", "compressed/json")


class Serializer:
    """Turns a result into bytes and back; ``type`` names it (``"pickle"``, ``"json"``, ...)."""

    type: str = "custom"

    def dumps(self, obj: Any) -> bytes:
        """The bytes of ``obj``."""
        raise NotImplementedError

    def loads(self, blob: bytes) -> Any:
        """The value ``blob`` holds."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class PickleSerializer(Serializer):
    """cloudpickle (``picklelib="pickle"`` for the standard library's)."""

    type = "pickle"

    def __init__(self, picklelib: str = "cloudpickle") -> None:
        if picklelib not in ("cloudpickle", "pickle"):
            raise ValueError(f"picklelib must be 'cloudpickle' or 'pickle'; got {picklelib!r}.")
        self.picklelib = picklelib

    def dumps(self, obj: Any) -> bytes:
        lib = _picklelib(self.picklelib)
        try:
            return lib.dumps(obj, protocol=5)
        except Exception as exc:
            raise SerializationError(
                f"Cannot pickle a result of type {type(obj).__module__}.{type(obj).__qualname__}: "
                f"{type(exc).__name__}: {exc}.") from None

    def loads(self, blob: bytes) -> Any:
        return _picklelib(self.picklelib).loads(blob)


class JSONSerializer(Serializer):
    """JSON text, as the ``json`` module writes it (tuples become lists); ``dumps_kwargs`` and
    ``loads_kwargs`` go to ``json.dumps`` / ``json.loads``."""

    type = "json"

    def __init__(self, dumps_kwargs: dict[str, Any] | None = None, loads_kwargs: dict[str, Any] | None = None) -> None:
        self.dumps_kwargs = dict(dumps_kwargs or {})
        self.loads_kwargs = dict(loads_kwargs or {})

    def dumps(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj, **self.dumps_kwargs).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"Cannot write a result of type {type(obj).__module__}.{type(obj).__qualname__} as "
                f"JSON: {exc}. Return plain data (dicts, lists, str, numbers), or use "
                f"result_serializer='pickle'.") from None

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob, **self.loads_kwargs)


class CompressedSerializer(Serializer):
    """Another serializer's bytes, compressed with lzma."""

    def __init__(self, serializer: Serializer | str = "pickle", compressionlib: str = "lzma") -> None:
        if compressionlib != "lzma":
            raise ValueError(f"compressionlib must be 'lzma'; got {compressionlib!r}.")
        self.serializer = resolve_serializer(serializer)
        self.compressionlib = compressionlib

    @property
    def type(self) -> str:  # type: ignore[override]
        return f"compressed/{self.serializer.type}"

    def dumps(self, obj: Any) -> bytes:
        return lzma.compress(self.serializer.dumps(obj))

    def loads(self, blob: bytes) -> Any:
        return self.serializer.loads(lzma.decompress(blob))


class CompressedPickleSerializer(CompressedSerializer):
    """Compressed cloudpickle."""

    def __init__(self, compressionlib: str = "lzma") -> None:
        super().__init__(PickleSerializer(), compressionlib)


class CompressedJSONSerializer(CompressedSerializer):
    """Compressed JSON."""

    def __init__(self, compressionlib: str = "lzma") -> None:
        super().__init__(JSONSerializer(), compressionlib)


def resolve_serializer(value: Any) -> Serializer:
    """The serializer a ``result_serializer`` option names. Raises ValueError/TypeError with
    what is accepted."""
    if isinstance(value, str):
        if value == "pickle":
            return PickleSerializer()
        if value == "json":
            return JSONSerializer()
        if value == "compressed/pickle":
            return CompressedPickleSerializer()
        if value == "compressed/json":
            return CompressedJSONSerializer()
        raise ValueError(f"Unknown result_serializer {value!r}: use one of {', '.join(map(repr, NAMES))}, "
                         "or an object with dumps(value) -> bytes and loads(bytes) -> value.")
    if isinstance(value, Serializer) or (callable(getattr(value, "dumps", None))
                                          and callable(getattr(value, "loads", None))):
        return value
    raise TypeError(f"result_serializer must be one of {', '.join(map(repr, NAMES))} or an object with "
                    f"dumps(value) -> bytes and loads(bytes) -> value; got {value!r}.")


def standard_format(serializer: Any) -> str | None:
    """The result format of one of nbflow's own serializers with default options, else None."""
    if type(serializer) is PickleSerializer and serializer.picklelib == "cloudpickle":
        return "pickle"
    if type(serializer) is JSONSerializer and not serializer.dumps_kwargs and not serializer.loads_kwargs:
        return "json"
    if isinstance(serializer, CompressedSerializer) and standard_format(serializer.serializer):
        return "compressed/" + standard_format(serializer.serializer)  # type: ignore[operator]
    return None


def _picklelib(name: str) -> Any:
    if name == "cloudpickle":
        import cloudpickle

        return cloudpickle
    import pickle

    return pickle
