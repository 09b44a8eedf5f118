"""Editing a project's classes after creation: add, rename, recolour (the `classes` table).

Class ids never change once labels use them, so renaming or recolouring is safe for every
stored label version; removing a class is deliberately not offered (labels would dangle).
Colours are `#rrggbb`; a class without one is drawn in the default palette colour of its id.
"""

from __future__ import annotations

import re
from typing import Any

from appliance.errors import ApplianceError

__all__ = ["HEX", "add_class", "colours", "rename_class", "set_colour"]

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _clean(project: Any, name: str, other_than: int | None = None) -> str:
    name = " ".join(str(name).split())
    if not name or len(name) > 60:
        raise ApplianceError("a class name needs 1 to 60 characters")
    for cid, existing in project.classes().items():
        if existing.lower() == name.lower() and cid != other_than:
            raise ApplianceError(f"{project.root}: a class named {existing!r} exists already")
    return name


def add_class(project: Any, name: str) -> int:
    """A new class with the next free id; returns the id."""
    name = _clean(project, name)
    with project.transaction():
        row = project.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM classes").fetchone()
        project.db.execute("INSERT INTO classes (id, name) VALUES (?, ?)", (row[0], name))
    return int(row[0])


def rename_class(project: Any, class_id: int, name: str) -> None:
    name = _clean(project, name, other_than=class_id)
    _require(project, class_id)
    with project.transaction():
        project.db.execute("UPDATE classes SET name = ? WHERE id = ?", (name, class_id))


def set_colour(project: Any, class_id: int, colour: str) -> None:
    """Store `#rrggbb` as the class's display colour."""
    if not HEX.match(colour):
        raise ApplianceError(f"colour {colour!r} is not #rrggbb")
    _require(project, class_id)
    with project.transaction():
        project.db.execute("UPDATE classes SET color = ? WHERE id = ?", (colour, class_id))


def colours(project: Any) -> dict[int, tuple[int, int, int]]:
    """Class id -> RGB for classes with a chosen colour."""
    out = {}
    for cid, colour in project.db.execute("SELECT id, color FROM classes WHERE color IS NOT NULL"):
        if HEX.match(colour):
            out[int(cid)] = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    return out


def _require(project: Any, class_id: int) -> None:
    if class_id not in project.classes():
        raise ApplianceError(f"{project.root}: no class {class_id}")
