"""Typed reading of a parsed JSON document, with errors that name the file and the field path.

Each reader takes the value and where it sits (:class:`At`: the file and a path such as
``after.by_category.bad.n`` or ``examples[2].prompt``), checks its type, and returns it
unchanged (an int stays an int where a number is expected, so writing it back gives the same
JSON). A value of the wrong type raises :class:`~alignscope.errors.InputError`, e.g.
``results.json, field 'after.n': expected an object``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from alignscope.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class At:
    """Where a JSON value sits: the file and the field path inside it ('' for the document itself)."""

    path: str
    field: str = ""

    def __truediv__(self, key: str | int) -> At:
        if isinstance(key, int):
            return At(self.path, f"{self.field}[{key}]")
        return At(self.path, f"{self.field}.{key}" if self.field else key)

    def fail(self, message: str) -> NoReturn:
        """Raise the :class:`InputError` for this place."""
        raise InputError(message, path=self.path, field=self.field or None)


def obj(value: Any, at: At, required: Sequence[str] = (), optional: Sequence[str] | None = ()) -> dict[str, Any]:
    """A JSON object with every ``required`` key and no key outside ``required`` + ``optional`` (None: any key)."""
    if not isinstance(value, dict):
        at.fail("expected an object")
    for key in required:
        if key not in value:
            (at / key).fail("required field is missing")
    if optional is not None:
        allowed = (*required, *optional)
        for key in value:
            if key not in allowed:
                (at / str(key)).fail(f"unexpected field (expected {', '.join(allowed)})")
    return value


def mapping(value: Any, at: At, item: Callable[[Any, At], T]) -> dict[str, T]:
    """A JSON object whose every value ``item`` reads; keys in file order."""
    return {key: item(v, at / key) for key, v in obj(value, at, optional=None).items()}


def seq(value: Any, at: At, item: Callable[[Any, At], T]) -> tuple[T, ...]:
    """A JSON array whose every element ``item`` reads."""
    if not isinstance(value, list):
        at.fail("expected an array")
    return tuple(item(v, at / i) for i, v in enumerate(value))


def optional(read: Callable[[Any, At], T]) -> Callable[[Any, At], T | None]:
    """``read`` that also accepts null."""
    def reader(value: Any, at: At) -> T | None:
        return None if value is None else read(value, at)

    return reader


def field(d: dict[str, Any], key: str, at: At, read: Callable[[Any, At], T]) -> T:
    """``read`` of ``d[key]`` (the key was checked by :func:`obj`)."""
    return read(d[key], at / key)


def maybe(d: dict[str, Any], key: str, at: At, read: Callable[[Any, At], T]) -> T | None:
    """``read`` of ``d[key]``, or None when the key is absent."""
    return read(d[key], at / key) if key in d else None


def integer(value: Any, at: At) -> int:
    """A JSON integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        at.fail("expected an integer")
    return value


def number(value: Any, at: At) -> float:
    """A JSON number (int or float, not a boolean), returned as found."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        at.fail("expected a number")
    return value


def string(value: Any, at: At) -> str:
    """A JSON string."""
    if not isinstance(value, str):
        at.fail("expected a string")
    return value


def boolean(value: Any, at: At) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        at.fail("expected true or false")
    return value


def json_object(value: Any, at: At) -> dict[str, Any]:
    """Any JSON object, kept as it is (a payload whose fields the caller does not read)."""
    return obj(value, at, optional=None)


opt_number = optional(number)
opt_string = optional(string)


def interval(value: Any, at: At) -> tuple[float, float]:
    """A ``[lo, hi]`` pair of numbers."""
    pair = seq(value, at, number)
    if len(pair) != 2:
        at.fail(f"expected [lo, hi] (2 numbers), got {len(pair)}")
    return pair[0], pair[1]


def opt_interval(value: Any, at: At) -> tuple[float | None, float | None]:
    """A ``[lo, hi]`` pair of numbers or nulls (an interval of nothing)."""
    pair = seq(value, at, opt_number)
    if len(pair) != 2:
        at.fail(f"expected [lo, hi] (2 numbers or nulls), got {len(pair)}")
    return pair[0], pair[1]
