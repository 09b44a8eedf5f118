"""Drawing point and box objects over an image on a Kivy canvas (annotate canvas, slide viewer).

A point is a disc of its class's colour `MARKER_MM` in radius on the screen whatever the zoom
(so it can be seen and tapped at fit and at 32×), ringed in black so it stands out on any stain;
a box is its outline in the class colour over a thin black one. The selected mark gets a white
ring, or a white band around its outline.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from kivy.graphics import Color, Ellipse, InstructionGroup, Line
from kivy.metrics import dp, mm

from appliance.labels import CellObject, Point
from appliance.overlay import class_colour
from appliance.session.marks import MARKER_MM

__all__ = ["draw_marks"]


def draw_marks(
    group: InstructionGroup,
    objects: tuple[CellObject, ...],
    to_window: Callable[[float, float], tuple[float, float]],
    colours: dict[int, tuple[int, int, int]],
    selected: int | None = None,
    hidden: Collection[int] = (),
) -> None:
    """Add the instructions that draw `objects` (image coordinates, `to_window` maps them) to
    `group`; classes in `hidden` are left out, `selected` (an index) is emphasised."""
    radius = mm(MARKER_MM)
    for k, obj in enumerate(objects):
        if obj.class_id in hidden:
            continue
        rgb = tuple(v / 255 for v in colours.get(obj.class_id, class_colour(obj.class_id)))
        chosen = k == selected
        if isinstance(obj, Point):
            px, py = to_window(obj.x, obj.y)
            ring = radius + dp(1.5)
            group.add(Color(0, 0, 0, 0.85))
            group.add(Ellipse(pos=(px - ring, py - ring), size=(2 * ring, 2 * ring)))
            group.add(Color(*rgb, 1))
            group.add(Ellipse(pos=(px - radius, py - radius), size=(2 * radius, 2 * radius)))
            if chosen:
                group.add(Color(1, 1, 1, 1))
                group.add(Line(circle=(px, py, radius * 2), width=dp(1.5)))
            continue
        ax, ay = to_window(obj.x0, obj.y1)
        bx, by = to_window(obj.x1, obj.y0)
        rect = (min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay))
        group.add(Color(0, 0, 0, 0.7))
        group.add(Line(rectangle=rect, width=dp(4 if chosen else 2.5)))
        if chosen:  # a white band that keeps the class colour in its middle
            group.add(Color(1, 1, 1, 1))
            group.add(Line(rectangle=rect, width=dp(3)))
        group.add(Color(*rgb, 1))
        group.add(Line(rectangle=rect, width=dp(1.2)))
