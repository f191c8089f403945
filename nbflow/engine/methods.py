"""Tasks and flows as methods: bound to an instance or a class as plain functions are.

`@task`/`@flow` over a function in a class body, over a `classmethod` or `staticmethod`
object, and `@classmethod`/`@staticmethod` over a task or flow all work as in Prefect 3.
Reading the method from an instance (or any access of a classmethod) hands back a copy of
the definition bound to that instance or class, which every call passes first; the definition
itself is never changed, so two instances never see each other's binding.
"""

from __future__ import annotations

import copy
from typing import Any


def unwrap_method(fn: Any) -> tuple[Any, str | None]:
    """The function inside a `classmethod`/`staticmethod` object, and which of the two it was."""
    if isinstance(fn, classmethod):
        return fn.__func__, "classmethod"
    if isinstance(fn, staticmethod):
        return fn.__func__, "staticmethod"
    return fn, None


class MethodBinding:
    """Descriptor behaviour shared by Task and Flow (the class attributes cost nothing unbound)."""

    #: "classmethod" or "staticmethod" when the decorated object was one, else None.
    _method_kind: str | None = None
    #: the instance (or class, for a classmethod) a bound copy passes as first argument.
    _bound_self: Any = None

    @property
    def ismethod(self) -> bool:
        """True for a copy bound to an instance (read from one)."""
        return self._bound_self is not None and self._method_kind is None

    @property
    def isclassmethod(self) -> bool:
        return self._method_kind == "classmethod"

    @property
    def isstaticmethod(self) -> bool:
        return self._method_kind == "staticmethod"

    def __get__(self, instance: Any, owner: Any) -> Any:
        if self._method_kind == "classmethod":
            target = owner if owner is not None else type(instance)
        elif instance is None or self._method_kind == "staticmethod":
            return self
        else:
            target = instance
        bound = copy.copy(self)
        bound._bound_self = target
        return bound

    def _carry_binding(self, other: Any) -> Any:
        """Give a copy made by with_options the same method kind and binding as this one."""
        other._method_kind = self._method_kind
        other._bound_self = self._bound_self
        return other

