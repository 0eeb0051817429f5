"""Strict JSON field types for the study's typed results, validated by pydantic, with errors that name the field path.

The typed results (:mod:`~alignscope.evals.study`, :mod:`~alignscope.evals.study_evals`) are
plain frozen dataclasses that derive from :class:`FileObject` and annotate their fields with the
strict types here; :func:`parse` validates a parsed JSON value into any such type (or a mapping,
tuple or optional of one) with a cached :class:`pydantic.TypeAdapter` and turns the first
:class:`pydantic.ValidationError` into an :class:`~alignscope.errors.InputError` naming the file
and the dotted field path, e.g. ``results.json, field 'after.n.harmful': expected an integer``.

Strictness: :data:`Int` rejects ``"3"``, ``3.5`` and booleans; :data:`Number` takes an int or a
float (NaN included) and keeps it as found, so writing it back gives the same JSON; :data:`Bool`
and :data:`Str` take only their JSON type. A JSON array reads into a tuple, an object into a
dataclass (every field present unless it has a default, no other key) or a mapping.

Example:
    >>> parse(tuple[Number, ...], [1, 2.5], "x.json")
    (1, 2.5)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from pydantic import GetCoreSchemaHandler, GetPydanticSchema, StrictBool, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, core_schema

from alignscope.errors import InputError

T = TypeVar("T")

Int = StrictInt
"""A JSON integer (not a boolean, a string or a float)."""
Bool = StrictBool
"""A JSON boolean."""
Str = StrictStr
"""A JSON string."""
JsonRow = Mapping[str, Any]
"""A JSON object kept as it is (a payload whose fields the caller does not read)."""

_NUMBER = core_schema.union_schema([core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)],
                                   custom_error_type="number_type", custom_error_message="expected a number")

Number = Annotated[float, GetPydanticSchema(lambda _t, _h: _NUMBER)]
"""A JSON number (int or float, NaN included, not a boolean), kept as found."""


def _pair(nulls: bool) -> core_schema.CoreSchema:
    item = core_schema.nullable_schema(_NUMBER) if nulls else _NUMBER
    what = "2 numbers or nulls" if nulls else "2 numbers"

    def two(value: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(value) != 2:
            raise PydanticCustomError("interval", "expected [lo, hi] ({what}), got {n}", {"what": what, "n": len(value)})
        return value

    return core_schema.no_info_after_validator_function(two, core_schema.tuple_schema([item], variadic_item_index=0))


Interval = Annotated[tuple[float, float], GetPydanticSchema(lambda _t, _h: _pair(False))]
"""A ``[lo, hi]`` pair of numbers."""
OptInterval = Annotated[tuple[float | None, float | None], GetPydanticSchema(lambda _t, _h: _pair(True))]
"""A ``[lo, hi]`` pair of numbers or nulls (an interval of nothing)."""


class FileObject:
    """Base of a dataclass read from a JSON object: a key that is not a field is an error that lists the fields.

    A subclass whose file form differs from its fields sets ``_file_form`` (the type of the value
    as written) and the classmethod ``_from_file`` (that value -> the instance).
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        form = getattr(source, "_file_form", None)
        if form is not None:
            return core_schema.no_info_after_validator_function(source._from_file, handler.generate_schema(form))
        names = [f.name for f in dataclasses.fields(source)]

        def known_keys(value: Any) -> Any:
            if isinstance(value, dict):
                for key in value:
                    if key not in names:
                        raise PydanticCustomError("unexpected_field", "unexpected field (expected {expected})",
                                                  {"key": str(key), "expected": ", ".join(names)})
            return value

        # The wrapper takes over the dataclass schema's ref, so a second use of the class (a ref to it) checks keys too.
        inner = dict(handler(source))
        ref = inner.pop("ref", None)
        return core_schema.no_info_before_validator_function(known_keys, cast(core_schema.CoreSchema, inner), ref=ref)


_MESSAGES = {
    "int_type": "expected an integer", "bool_type": "expected true or false", "string_type": "expected a string",
    "dict_type": "expected an object", "dataclass_type": "expected an object", "mapping_type": "expected an object",
    "list_type": "expected an array", "tuple_type": "expected an array",
    "missing": "required field is missing", "missing_argument": "required field is missing",
}


def _dotted(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for key in loc:
        out = f"{out}[{key}]" if isinstance(key, int) else f"{out}.{key}" if out else str(key)
    return out


@cache
def _adapter(tp: Hashable) -> TypeAdapter[Any]:
    return TypeAdapter(cast(Any, tp))


def parse(tp: type[T] | Any, value: Any, path: str | Path, at: str = "") -> T:
    """``value`` (parsed JSON) validated into ``tp``; errors name ``path`` and the field path below ``at``.

    Raises:
        InputError: the first field that is missing, unexpected or of the wrong type
            (``results.json, field 'after.n': expected an object``).
    """
    try:
        return cast(T, _adapter(cast(Hashable, tp)).validate_python(value))
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        loc = tuple(first["loc"])
        ctx = first.get("ctx") or {}
        if first["type"] in ("unexpected_field", "label_order"):
            loc = (*loc, ctx["key"])
        if first["type"] == "label_order":
            message = (f"expected the labels of {_dotted(at, (*loc[:-1], ctx['sibling']))} in the same order "
                       f"({ctx['labels']}), got {ctx['got']}")
        else:
            message = _MESSAGES.get(first["type"], first["msg"])
        field = _dotted(at, loc)
        raise InputError(message, path=str(path), field=field or None) from None
