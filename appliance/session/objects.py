"""The object list of the open image (no Kivy): one row per object, the expert's and suggested.

CVAT and Label Studio users look for a list of the objects on the image: which are there, of
what class, how big, and a way to reach a tiny one without hunting for it. The rows are built
here from the instance maps alone, so that the annotate screen only draws them; the presenter
turns a tapped row into a selection, a deletion or a change of class (`AnnotatePresenter`).

Objects of a pre-label on offer are *suggested*: listed after the expert's own, marked as such,
and not editable from the list until the pre-label is accepted (they are not in the label yet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.editing import Rect
from appliance.labels import Label
from appliance.overlay import class_colour

__all__ = ["ObjectRow", "areas", "object_box", "object_rows"]

DENSE_IDS = 1 << 22  # above this, areas are counted by sorting instead of by a dense table


@dataclass(frozen=True)
class ObjectRow:
    """One object as the list shows it."""

    instance_id: int
    class_id: int
    class_name: str
    colour: tuple[int, int, int]  # the class's colour on the overlay (chosen or palette)
    area: int  # pixels
    suggested: bool  # part of a pre-label on offer, not yet accepted

    @property
    def key(self) -> str:
        """The row's id for widgets and selection: `object:<id>` or `suggested:<id>` (the two
        maps number their objects independently)."""
        return f"{'suggested' if self.suggested else 'object'}:{self.instance_id}"


def areas(instances: np.ndarray) -> dict[int, int]:
    """Pixel count of every instance id present (background left out).

    >>> areas(np.array([[0, 2, 2], [5, 5, 5]], np.uint32))
    {2: 2, 5: 3}
    """
    top = int(instances.max(initial=0))
    if top < DENSE_IDS:
        counts = np.bincount(instances.ravel(), minlength=top + 1)
        ids = np.flatnonzero(counts)
        found = counts[ids]
    else:
        ids, found = np.unique(instances, return_counts=True)
    return {int(i): int(n) for i, n in zip(ids, found, strict=True) if i}


def object_rows(
    label: Label,
    names: dict[int, str],
    colours: dict[int, tuple[int, int, int]],
    offer: Label | None = None,
) -> list[ObjectRow]:
    """The expert's objects by id, then the suggested ones of `offer` by id.

    `names` and `colours` are per class id (a class without a chosen colour gets its palette
    colour, as on the overlay; an unknown class shows its number).
    """

    def rows(source: Label, suggested: bool) -> list[ObjectRow]:
        out = []
        for iid, area in areas(source.instances).items():
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

    return rows(label, False) + (rows(offer, True) if offer is not None else [])


def object_box(label: Label, instance_id: int) -> Rect | None:
    """Bounding box of one object (None when it is gone)."""
    return Rect.of_mask(label.instances == instance_id)
