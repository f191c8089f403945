"""Annotations on task inputs, as Prefect's: `unmapped`, `allow_failure`, `quote`, `opaque`.

Each wraps one value (a one-element tuple, so it is immutable and cheap); `.unwrap()` gives it back.
- `unmapped(x)`: passed whole to every call of `.map()`, not iterated.
- `allow_failure(future)`: the task runs even if that upstream run failed; it gets the
  upstream's exception as the value.
- `quote(x)`: passed as is: futures inside are neither waited for nor replaced.
- `opaque(x)`: a future is waited for and replaced by its result, but nothing inside the
  result (or inside `x`) is looked into — for large values.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BaseAnnotation(tuple, Generic[T]):
    """A value wrapped for the engine; `unwrap()` returns it."""

    __slots__ = ()

    def __new__(cls, value: T) -> "BaseAnnotation[T]":
        return tuple.__new__(cls, (value,))

    def unwrap(self) -> T:
        return tuple.__getitem__(self, 0)

    def rewrap(self, value: T) -> "BaseAnnotation[T]":
        return type(self)(value)

    @property
    def value(self) -> T:
        return tuple.__getitem__(self, 0)

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self.unwrap() == other.unwrap()

    def __ne__(self, other: Any) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.unwrap()!r})"


class unmapped(BaseAnnotation[T]):  # noqa: N801 - Prefect's name
    """Passed whole to every call of `.map()`, not iterated."""

    __slots__ = ()

    def __getitem__(self, _: Any) -> T:  # type: ignore[override]
        return self.unwrap()  # every mapped call gets the same value


class allow_failure(BaseAnnotation[T]):  # noqa: N801
    """The task runs even if this upstream run failed; it then receives the upstream's exception."""

    __slots__ = ()


class quote(BaseAnnotation[T]):  # noqa: N801
    """Passed as is: futures inside are neither waited for nor replaced by their results."""

    __slots__ = ()

    def unquote(self) -> T:
        return self.unwrap()


class opaque(BaseAnnotation[T]):  # noqa: N801
    """A future is replaced by its result, but nothing inside the value is looked into."""

    __slots__ = ()
