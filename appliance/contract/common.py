"""What both contracts share: the one-line error, the JSON document, and strict field types.

A contract is read the same way whatever model it describes: JSON text or a mapping, every
field of the declared JSON type (no string "3" for 3, no 3.7 for an integer, no 1 for true),
and no field the schema does not know, so a typo in a workstation's writer is refused at install
instead of silently meaning the default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from appliance.errors import ApplianceError

__all__ = ["ContractError", "Value", "document", "reject_unknown", "typed"]

Value = float | int | bool | str


class ContractError(ApplianceError):
    """A refused contract: which field and why, in one line."""

    def __init__(self, field_name: str, problem: str, source: str = "") -> None:
        self.field, self.problem, self.source = field_name, " ".join(problem.split()), source
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}model contract field {field_name!r}: {self.problem}")

    def at(self, source: str) -> ContractError:
        """The same problem, naming where the contract came from."""
        return ContractError(self.field, self.problem, source)


def document(data: str | bytes | Mapping[str, Any], source: str) -> dict[str, Any]:
    """The contract's JSON object (a copy), or a one-line error naming `source`."""
    try:
        raw = json.loads(data) if isinstance(data, str | bytes) else data
    except ValueError as exc:
        raise ContractError("(document)", f"is not JSON ({exc})", source) from exc
    if not isinstance(raw, Mapping):
        raise ContractError("(document)", "must be a JSON object", source)
    return dict(raw)


def reject_unknown(raw: Mapping[str, Any], known: Iterable[str], prefix: str = "") -> None:
    """Refuse the first field (alphabetically) the schema does not define."""
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ContractError(f"{prefix}{unknown[0]}", "is not a contract field")


_WORDS: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "an object",
    int | float: "a number",
}


def typed(name: str, value: object, kind: Any) -> Any:
    """`value` itself when it has the JSON type `kind` (bool is no number), else the error."""
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ContractError(name, f"must be {_WORDS[kind]}, got {value!r}")
    return value
