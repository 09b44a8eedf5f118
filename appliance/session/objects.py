"""The object list of the open image (no Kivy): one row per object, the expert's and suggested.

CVAT and Label Studio users look for a list of the objects on the image: which are there, of
what class, how big, and a way to reach a tiny one without hunting for it. The rows are built
here from the instance maps alone, so that the annotate screen only draws them; the presenter
turns a tapped row into a selection, a deletion or a change of class (`AnnotatePresenter`).

Objects of a pre-label on offer are *suggested*: listed after the expert's own, marked as such,
and not editable from the list until the pre-label is accepted (they are not in the label yet).

Point and box objects of the label (cells marked by a pen tap or drag, or imported from QuPath
GeoJSON) have rows too, after the masks, numbered P1, P2, ... and B1, ... in the order placed; their
row says a point's position or a box's size instead of an area.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.editing import Rect, areas
from appliance.labels import Box, Label, Point
from appliance.overlay import class_colour

__all__ = ["ObjectRow", "areas", "mark_index", "mark_rows", "object_box", "object_rows"]


@dataclass(frozen=True)
class ObjectRow:
    """One object as the list shows it."""

    instance_id: int
    class_id: int
    class_name: str
    colour: tuple[int, int, int]  # the class's colour on the overlay (chosen or palette)
    area: int  # pixels
    suggested: bool  # part of a pre-label on offer, not yet accepted
    kind: str = "mask"  # or "point", "box": then `instance_id` is the index in `Label.objects`
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # a point's or box's
    number: int = 0  # a point's or box's place among its kind, from 1 (P1, P2, B1, ...)

    @property
    def key(self) -> str:
        """The row's id for widgets and selection: `object:<id>` or `suggested:<id>` (the two
        maps number their objects independently), `point:<index>` or `box:<index>` (an offer's:
        `suggested-point:<index>`, `suggested-box:<index>`)."""
        if self.kind != "mask":
            return f"{'suggested-' if self.suggested else ''}{self.kind}:{self.instance_id}"
        return f"{'suggested' if self.suggested else 'object'}:{self.instance_id}"

    @property
    def name(self) -> str:
        """How buttons name the object: `object 5`, `point 2`, `box 1` (marks from 1)."""
        if self.kind == "mask":
            return f"object {self.instance_id}"
        return f"{self.kind} {self.number}"

    @property
    def text(self) -> str:
        """What the row says: number, class and area; a point's number (P1, P2, ...), class
        and position, or a box's (B1, ...), class and size.

        >>> where = (10.4, 7.0, 10.4, 7.0)
        >>> row = ObjectRow(0, 2, "mitosis", (0, 0, 0), 0, False, "point", where, 1)
        >>> row.key, row.text
        ('point:0', 'P1   mitosis · 10, 7')
        """
        if self.kind == "mask":
            return f"{self.instance_id}   {self.class_name} · {self.area} px"
        x0, y0, x1, y1 = self.bounds
        if self.kind == "point":  # short: the list is narrow on an 8-inch tablet
            return f"P{self.number}   {self.class_name} · {x0:.0f}, {y0:.0f}"
        return f"B{self.number}   {self.class_name} · {x1 - x0:.0f}×{y1 - y0:.0f}"


def object_rows(
    label: Label,
    names: dict[int, str],
    colours: dict[int, tuple[int, int, int]],
    offer: Label | None = None,
    label_areas: dict[int, int] | None = None,
    offer_areas: dict[int, int] | None = None,
) -> list[ObjectRow]:
    """The expert's objects by id, then the suggested ones of `offer` by id.

    `names` and `colours` are per class id (a class without a chosen colour gets its palette
    colour, as on the overlay; an unknown class shows its number). `label_areas` and
    `offer_areas`: the areas when already known (`EditSession.areas`), else counted here.
    """

    def rows(source: Label, suggested: bool, known: dict[int, int] | None) -> list[ObjectRow]:
        out = []
        counted = areas(source.instances) if known is None else known
        for iid, area in sorted(counted.items()):
            cid = source.class_of(iid)
            out.append(
                ObjectRow(
                    iid,
                    cid,
                    names.get(cid, f"class {cid}"),
                    colours.get(cid, class_colour(cid)),
                    area,
                    suggested,
                )
            )
        return out

    own = rows(label, False, label_areas) + mark_rows(label, names, colours)
    if offer is None:
        return own
    return own + rows(offer, True, offer_areas) + mark_rows(offer, names, colours, suggested=True)


def mark_rows(
    label: Label,
    names: dict[int, str],
    colours: dict[int, tuple[int, int, int]],
    suggested: bool = False,
) -> list[ObjectRow]:
    """Rows of the label's points, then its boxes, each in the order placed (`suggested`: of
    a pre-label on offer, e.g. the previous frame's)."""
    out = []
    for kind, cls in (("point", Point), ("box", Box)):
        number = 0
        for index, obj in enumerate(label.objects):
            if isinstance(obj, cls):
                number += 1
                cid = obj.class_id
                out.append(
                    ObjectRow(
                        index,
                        cid,
                        names.get(cid, f"class {cid}"),
                        colours.get(cid, class_colour(cid)),
                        round(obj.area) if isinstance(obj, Box) else 0,
                        suggested,
                        kind,
                        obj.bounds(),
                        number,
                    )
                )
    return out


def object_box(label: Label, instance_id: int) -> Rect | None:
    """Bounding box of one object (None when it is gone)."""
    return Rect.of_mask(label.instances == instance_id)


def mark_index(key: str) -> int | None:
    """The index in `Label.objects` of a `point:<index>` or `box:<index>` row key, else None.

    >>> mark_index("box:3"), mark_index("object:3")
    (3, None)
    """
    kind, _, number = key.partition(":")
    return int(number) if kind in ("point", "box") and number.isdigit() else None
