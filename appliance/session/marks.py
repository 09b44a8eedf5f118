"""Points and boxes under the pen, without Kivy: whether a pen gesture places, moves, resizes
or selects one.

Shared by the annotate screen's Point and Box tools and the slide viewer, whose one pen
gesture is `MARK` (a tap places a point, a drag draws a box): both call `grab`, `shaped` and
`finish`. What the pen meant is decided by
distances on the screen (`TAP_MM`, `GRAB_MM`, `SELECT_MM`), so that a mark is as easy to hit at
every zoom; callers turn millimetres into image pixels with their zoom.

- Point tool: a tap places a point of the active class where the pen lifts (a drag that
  began on the image and leaves it, at the border, as it was shown). A pen landing on a
  point (within `GRAB_MM`) takes hold of it: a drag moves it, a tap selects it (a second point
  on top of the first is never what the expert meant).
- Box tool: a drag draws a box of the active class (at least `MIN_BOX_SIDE` image pixels a
  side, else it is a tap). A pen landing on a box's corner resizes it (the opposite corner
  stays), on its edge moves it. A tap selects the point or box under it.
- Mark (slide viewer): a pen landing on a point, a box's corner or edge takes hold of it as
  above; elsewhere a tap places a point and a drag draws a box (a drag too thin for a box is a
  slip: nothing).

Every change is one undo step of the label's `EditSession`, in the same history as the masks'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.editing import MIN_BOX_SIDE, EditSession, Rect
from appliance.labels import Box, CellObject, Point

__all__ = [
    "BOX",
    "GRAB_MM",
    "MARK",
    "MARKER_MM",
    "MARK_TOOLS",
    "POINT",
    "SELECT_MM",
    "TAP_MM",
    "MarkDrag",
    "finish",
    "grab",
    "is_tap",
    "mark_at",
    "shaped",
]

POINT, BOX, MARK = "point", "box", "mark"
MARK_TOOLS = (POINT, BOX)
TAP_MM = 2.0  # a pen that moves less than this between down and up tapped
GRAB_MM = 2.0  # a pen this close to a point, a box's corner or edge takes hold of it
SELECT_MM = 4.0  # a finger tap this close to a point selects it (a finger is less exact)
MARKER_MM = 1.2  # radius of a point's marker: 2.4 mm across at every zoom


def is_tap(a: tuple[float, float], b: tuple[float, float], tap: float) -> bool:
    """Whether a pen that went down at `a` and up at `b` (screen units) tapped.

    >>> is_tap((0, 0), (3, 4), 5.5), is_tap((0, 0), (3, 4), 5.0)
    (True, False)
    """
    return math.dist(a, b) < tap


@dataclass(frozen=True)
class MarkDrag:
    """A pen on the image with the Point or Box tool, from down to up."""

    tool: str  # POINT, BOX or MARK
    start: tuple[float, float]  # the image point where the pen landed
    index: int | None = None  # the point or box taken hold of; None: a new one is shaped
    anchor: tuple[float, float] | None = None  # resizing a box: the corner that stays


def grab(
    objects: tuple[CellObject, ...], tool: str, x: float, y: float, tolerance: float
) -> MarkDrag:
    """What a pen landing at image point (x, y) takes hold of: with the Point tool the nearest
    point within `tolerance` image px, with the Box tool a box's corner (to resize it) or edge
    (to move it), the newest box first; else nothing (a new mark).

    >>> boxes = (Box(10, 10, 50, 30),)
    >>> grab(boxes, BOX, 49, 31, 2)
    MarkDrag(tool='box', start=(49, 31), index=0, anchor=(10.0, 10.0))
    >>> grab(boxes, BOX, 30, 11, 2).anchor, grab(boxes, BOX, 30, 20, 2).index
    (None, None)
    """
    if tool == MARK:
        for each in MARK_TOOLS:
            held = grab(objects, each, x, y, tolerance)
            if held.index is not None:
                return MarkDrag(MARK, held.start, held.index, held.anchor)
        return MarkDrag(MARK, (x, y))
    if tool == POINT:
        found = [
            (math.hypot(o.x - x, o.y - y), k)
            for k, o in enumerate(objects)
            if isinstance(o, Point) and math.hypot(o.x - x, o.y - y) <= tolerance
        ]
        return MarkDrag(tool, (x, y), min(found)[1] if found else None)
    boxes = [(k, o) for k, o in enumerate(objects) if isinstance(o, Box)][::-1]
    for k, b in boxes:
        for cx, cy, ax, ay in (
            (b.x0, b.y0, b.x1, b.y1),
            (b.x1, b.y0, b.x0, b.y1),
            (b.x0, b.y1, b.x1, b.y0),
            (b.x1, b.y1, b.x0, b.y0),
        ):
            if math.hypot(cx - x, cy - y) <= tolerance:
                return MarkDrag(tool, (x, y), k, (ax, ay))
    for k, b in boxes:
        t = tolerance
        near = b.x0 - t <= x <= b.x1 + t and b.y0 - t <= y <= b.y1 + t
        inner = b.x0 + t < x < b.x1 - t and b.y0 + t < y < b.y1 - t
        if near and not inner:
            return MarkDrag(tool, (x, y), k)
    return MarkDrag(tool, (x, y))


def mark_at(objects: tuple[CellObject, ...], x: float, y: float, tolerance: float) -> int | None:
    """Index of the point within `tolerance` of image point (x, y), else of the box whose
    outline passes within it (what Pick, Delete and Set class take before a mask under the
    pen; a box is also taken from inside where no mask is, `EditSession.object_at`).

    >>> box = Box(0, 0, 40, 40)
    >>> both = (box, Point(20, 20))
    >>> mark_at(both, 21, 21, 2), mark_at((box,), 20, 20, 2), mark_at((box,), 1, 9, 2)
    (1, None, 0)
    """
    for tool in MARK_TOOLS:
        index = grab(objects, tool, x, y, tolerance).index
        if index is not None:
            return index
    return None


def _clamp(v: float, low: float, high: float) -> float:
    return min(max(v, low), high)


def shaped(drag: MarkDrag, session: EditSession, x: float, y: float) -> CellObject | None:
    """The point or box the pen shapes with the drag now at image point (x, y), kept on the
    image: the grabbed one moved or resized, or a new one of the active class (None while a
    new or resized box is thinner than `MIN_BOX_SIDE`)."""
    h, w = session.shape
    x, y = _clamp(x, 0.0, w), _clamp(y, 0.0, h)
    if drag.index is None:
        if drag.tool == POINT:
            return Point(x, y, session.active_class)
        return _box(*drag.start, x, y, session.active_class)  # Box, or Mark's drag
    obj = session.objects[drag.index]
    if isinstance(obj, Point):
        return Point(x, y, obj.class_id)
    if drag.anchor is not None:
        return _box(*drag.anchor, x, y, obj.class_id)
    dx = _clamp(x - drag.start[0], -obj.x0, w - obj.x1)
    dy = _clamp(y - drag.start[1], -obj.y0, h - obj.y1)
    return obj.shifted(dx, dy)


def _box(x0: float, y0: float, x1: float, y1: float, class_id: int) -> Box | None:
    if abs(x1 - x0) < MIN_BOX_SIDE or abs(y1 - y0) < MIN_BOX_SIDE:
        return None
    return Box(x0, y0, x1, y1, class_id)


def finish(
    session: EditSession, drag: MarkDrag, x: float, y: float, tapped: bool, tolerance: float
) -> tuple[Rect | None, int | None]:
    """End the drag with the pen up at image point (x, y): returns the rectangle the label
    changed in (None: no change) and the index of the point or box to select (None: none)."""
    if drag.index is not None:
        if tapped:
            return None, drag.index
        obj = shaped(drag, session, x, y)
        rect = None if obj is None else session.set_object(drag.index, obj)
        return rect, drag.index
    if drag.tool == MARK:
        if tapped:
            return session.place_point(x, y), None
        return session.draw_box(*drag.start, x, y), None
    if drag.tool == POINT:
        h, w = session.shape
        if not tapped and 0 <= drag.start[0] <= w and 0 <= drag.start[1] <= h:
            x, y = _clamp(x, 0.0, w), _clamp(y, 0.0, h)  # where the drag showed it
        return session.place_point(x, y), None
    if not tapped:
        rect = session.draw_box(*drag.start, x, y)
        if rect is not None:
            return rect, None
    return None, session.object_at(x, y, tolerance)
