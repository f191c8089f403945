"""The cache key of a %%task cell: its code, the user code it calls, and its input values.

The source is normalised through the AST (comments, blank lines and formatting don't
matter); functions and classes the cell calls that the user defined (in the notebook
or in their own modules) add their source; inputs add value fingerprints (DataFrames
hashed column by column). An input without a fingerprint makes the cell run uncached,
with a warning — never a false hit.
"""

from __future__ import annotations

import ast
import hashlib
import types
from typing import Any

from nbflow.engine.cache_policies import CachePolicy
from nbflow.engine.fingerprint import fingerprint
from nbflow.engine.source_fingerprint import is_user_object, source_fingerprint
from nbflow.errors import FingerprintError

KEY_VERSION = b"nbflow-cell-v1\0"


def normalised_source(python_source: str) -> str:
    """The cell's code without comments or formatting: a dump of its AST."""
    try:
        return ast.dump(ast.parse(python_source))
    except SyntaxError:
        return python_source.strip()


def input_fingerprints(namespace: dict[str, Any], names: frozenset[str] | set[str]) -> dict[str, str]:
    """Fingerprint each named value of the namespace (modules by name, callables by code)."""
    prints = {}
    for name in sorted(names):
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            prints[name] = "module:" + value.__name__
        elif callable(value) and is_user_object(value) and isinstance(value, (types.FunctionType, type)):
            prints[name] = "code:" + source_fingerprint(value)
        else:
            try:
                prints[name] = fingerprint(value, name=name)
            except FingerprintError as exc:
                raise FingerprintError(
                    f"input variable '{name}' of this cell has no fingerprint ({exc}); the cell runs "
                    "uncached. Pass only values nbflow can fingerprint, or leave it out with "
                    f"--inputs.") from None
    return prints


class CellCachePolicy(CachePolicy):
    """Keys a cell run on its normalised code, called user code and input values."""

    def __init__(self, python_source: str, namespace: dict[str, Any], inputs: frozenset[str],
                 called: frozenset[str]) -> None:
        self.code = normalised_source(python_source)
        self.namespace = namespace
        self.inputs = inputs
        self.called = called
        #: the input fingerprints of the last key computed: compared after the run to catch
        #: a cell that changed one of its inputs in place.
        self.last_inputs: dict[str, str] = {}
        self.last_key: str | None = None

    __eq__ = object.__eq__  # each cell run's policy is its own (not the dataclass field equality)
    __hash__ = object.__hash__

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any] | None, flow_parameters: dict[str, Any] | None,
                    **kwargs: Any) -> str:
        digest = hashlib.sha256(KEY_VERSION)
        digest.update(self.code.encode())
        for name in sorted(self.called - self.inputs):
            value = self.namespace.get(name)
            if isinstance(value, (types.FunctionType, type)) and is_user_object(value):
                digest.update(f"\0call:{name}:{source_fingerprint(value)}".encode())
        self.last_inputs = input_fingerprints(self.namespace, self.inputs)
        for name, value_print in self.last_inputs.items():
            digest.update(f"\0in:{name}={value_print}".encode())
        self.last_key = digest.hexdigest()
        return self.last_key

    def key_or_none(self) -> str | None:
        """The key now, or None when an input has no fingerprint."""
        try:
            return self.compute_key(None, {}, {})
        except FingerprintError:
            return None

    def __repr__(self) -> str:
        return f"CellCachePolicy(inputs={sorted(self.inputs)})"
