"""Strict JSON types: the one way the core reads values it stored or was sent.

Settings, supervision options, pre-processing and inspection priors, the tablet's image source
and the model contracts all arrive as JSON. Each used to be read by its own hand-written code,
and one of them read a stored "false" as true (`bool("false")`). Here a value either has the
JSON type its field declares, exactly, or it is refused with the field's name: no string "3"
for 3, no 3.7 for an integer, no 1 or "false" for a boolean (bool is never a number either).
Ranges and choices stay with the dataclass that owns them (`__post_init__` or `check`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Pen:
...     width: float = 1.0
...     pressure: bool = False
>>> from_json(Pen, {"width": 2, "pressure": True}, "pen")
Pen(width=2.0, pressure=True)
>>> from_json(Pen, {"pressure": "false"}, "pen")
Traceback (most recent call last):
...
appliance.errors.ApplianceError: pen: pressure must be true or false, got 'false'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from appliance.errors import ApplianceError

__all__ = ["field_types", "from_json", "problem"]

D = TypeVar("D")

_WORDS: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
    int | float: "a number",
}


def problem(value: object, kind: Any) -> str | None:
    """Why `value` is not of the JSON type `kind` (None when it is).

    `kind` is str, int, float (an integer is a number too), bool, list, dict, or a `dict[K, V]`
    / `list[V]` whose values are checked in turn.
    """
    origin = typing.get_origin(kind)
    if origin in (dict, list):
        if not isinstance(value, origin):
            return f"must be {_WORDS[origin]}, got {value!r}"
        items = value.values() if isinstance(value, dict) else value
        inner = typing.get_args(kind)[-1]
        return next((f"holds {p}" for v in items if (p := problem(v, inner))), None)
    wanted: Any = (int, float) if kind in (float, int | float) else kind
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, wanted):
        return f"must be {_WORDS.get(kind, kind)}, got {value!r}"
    return None


def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their declared types (string annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _plain(kind: Any) -> Any:
    """`X | None` -> X: an optional field is checked as its type when it is given."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def from_json(cls: type[D], data: object, what: str, *, skip: tuple[str, ...] = ()) -> D:
    """An instance of dataclass `cls` from a JSON object: every given field of its declared
    type (floats given as integers become floats), missing ones at their defaults, unknown
    ones refused; `what` names the value in the one-line error. Fields in `skip` are left
    for the caller to convert (they must still be known)."""
    if not isinstance(data, Mapping):
        raise ApplianceError(f"{what}: must be an object, got {data!r}")
    kinds = field_types(cls)
    unknown = sorted(set(data) - set(kinds))
    if unknown:
        raise ApplianceError(f"{what}: unknown field {unknown[0]!r} (known: {', '.join(kinds)})")
    required = [
        f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in data]
    if missing:
        raise ApplianceError(f"{what}: {missing[0]} is missing")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in skip:
            continue
        kind = _plain(kinds[name])
        if value is None and kind is not kinds[name]:
            values[name] = None
            continue
        if why := problem(value, kind):
            raise ApplianceError(f"{what}: {name} {why}")
        values[name] = float(value) if kind is float else value
    return cls(**values)
