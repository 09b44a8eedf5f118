"""Drawing point and box objects over an image on a Kivy canvas (annotate canvas, slide viewer).

A point is a disc of its class's colour `MARKER_MM` in radius on the screen whatever the zoom
(so it can be seen and tapped at fit and at 32×), ringed in white then black so it stands out on
any stain and never looks like a small mask of its class on the overlay;
a box is its outline in the class colour over a thin black one. The selected mark gets a white
ring, or a white band around its outline. The marks of a pre-label on offer (the previous
frame's, say) are drawn `hollow`: points as rings, boxes' outlines see-through, as the offer's
masks are drawn as outlines only.

Speed: a QuPath import can hold thousands of cells, and the marks are drawn again at every pan
and zoom step. So they are batched: one `Point` instruction (textured with a disc) per class
for the points and one `Mesh` of outline quads per class for the boxes, whatever their number
(2,500 marks: about 15 instructions instead of 15,000).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
from kivy.graphics import Color, InstructionGroup, Mesh, SmoothLine
from kivy.graphics import Point as PointInstruction
from kivy.graphics.texture import Texture
from kivy.metrics import mm

from appliance.labels import Box, CellObject, Point
from appliance.overlay import class_colour
from appliance.session.marks import MARKER_MM

__all__ = ["draw_marks"]

DISC_PX = 64  # side of the disc texture the point markers are drawn with
MAX_POINTS = 16_000  # per Point instruction (Kivy's limit is 2**15 - 2)
MAX_BOXES = 4_000  # per Mesh (16 vertices each, below 65,535)
# widths on the screen, in mm (a 10-inch tablet has 224 dpi: dp(1) would be 0.1 mm)
OUTLINE_MM = 0.3  # a box's outline in its class colour
DARK_MM = 0.6  # the black outline under it
BAND_MM = 1.0  # the white band around the selected box (over a black one 0.3 mm wider)
RING_MM = 0.25  # the black ring around a point marker, the white ring of the selected one

_discs: dict[bool, Texture] = {}


def _disc_texture(ring: bool) -> Texture:
    """A white disc (`ring`: an annulus, its inner radius 60 % of the outer) with a soft
    one-pixel edge on transparent, made once."""
    if ring not in _discs:
        c = (DISC_PX - 1) / 2
        yy, xx = np.mgrid[0:DISC_PX, 0:DISC_PX]
        d = np.hypot(xx - c, yy - c)
        alpha = np.clip(DISC_PX / 2 - d, 0.0, 1.0)
        if ring:
            alpha = np.minimum(alpha, np.clip(d - DISC_PX * 0.3, 0.0, 1.0))
        rgba = np.full((DISC_PX, DISC_PX, 4), 255, np.uint8)
        rgba[..., 3] = (alpha * 255).astype(np.uint8)
        texture = Texture.create(size=(DISC_PX, DISC_PX), colorfmt="rgba")
        texture.blit_buffer(rgba.tobytes(), colorfmt="rgba", bufferfmt="ubyte")
        _discs[ring] = texture
    return _discs[ring]


def _points(group: InstructionGroup, xy: list[float], radius: float, ring: bool) -> None:
    disc = _disc_texture(ring)
    step = 2 * MAX_POINTS
    for k in range(0, len(xy), step):
        group.add(PointInstruction(points=xy[k : k + step], pointsize=radius, texture=disc))


def _outlines(group: InstructionGroup, rects: list[tuple[float, ...]], width: float) -> None:
    """Rectangle outlines (x, y, w, h) of `width`, centred on the edges, as quads in meshes."""
    h = width / 2
    for k in range(0, len(rects), MAX_BOXES):
        vertices: list[float] = []
        indices: list[int] = []
        for x, y, w, hh in rects[k : k + MAX_BOXES]:
            x0, y0, x1, y1 = x - h, y - h, x + w + h, y + hh + h
            for ax, ay, bx, by in (
                (x0, y0, x1, y0 + width),  # bottom
                (x0, y1 - width, x1, y1),  # top
                (x0, y0, x0 + width, y1),  # left
                (x1 - width, y0, x1, y1),  # right
            ):
                n = len(vertices) // 4
                vertices += [ax, ay, 0, 0, bx, ay, 0, 0, bx, by, 0, 0, ax, by, 0, 0]
                indices += [n, n + 1, n + 2, n, n + 2, n + 3]
        group.add(Mesh(vertices=vertices, indices=indices, mode="triangles"))


def draw_marks(
    group: InstructionGroup,
    objects: tuple[CellObject, ...],
    to_window: Callable[[float, float], tuple[float, float]],
    colours: dict[int, tuple[int, int, int]],
    selected: int | None = None,
    hidden: Collection[int] = (),
    hollow: bool = False,
) -> None:
    """Add the instructions that draw `objects` (image coordinates, `to_window` maps them) to
    `group`; classes in `hidden` are left out, `selected` (an index) is emphasised, `hollow`
    marks are a pre-label's (see the module doc)."""
    alpha = 0.7 if hollow else 1.0
    radius = mm(MARKER_MM)
    points: dict[int, list[float]] = {}
    boxes: dict[int, list[tuple[float, ...]]] = {}
    chosen: CellObject | None = None
    chosen_at: tuple[float, ...] = ()
    for k, obj in enumerate(objects):
        if obj.class_id in hidden:
            continue
        if isinstance(obj, Point):
            at: tuple[float, ...] = to_window(obj.x, obj.y)
            points.setdefault(obj.class_id, []).extend(at)
        else:
            ax, ay = to_window(obj.x0, obj.y1)
            bx, by = to_window(obj.x1, obj.y0)
            at = (min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay))
            boxes.setdefault(obj.class_id, []).append(at)
        if k == selected:
            chosen, chosen_at = obj, at
    everything = [r for rects in boxes.values() for r in rects]
    if everything and not hollow:
        group.add(Color(0, 0, 0, 0.7))
        _outlines(group, everything, mm(DARK_MM))
    if isinstance(chosen, Box):  # a white band that keeps the class colour in its middle
        group.add(Color(0, 0, 0, 0.7))
        _outlines(group, [chosen_at], mm(BAND_MM + 0.3))
        group.add(Color(1, 1, 1, 1))
        _outlines(group, [chosen_at], mm(BAND_MM))
    for cid, rects in boxes.items():
        group.add(Color(*_rgb(cid, colours), alpha))
        _outlines(group, rects, mm(OUTLINE_MM))
    if points:
        every = [v for xy in points.values() for v in xy]
        group.add(Color(0, 0, 0, 0.85))
        _points(group, every, radius + mm(RING_MM) * (1 if hollow else 2), hollow)
        if not hollow:  # a white ring: a point never looks like a small mask of its class
            group.add(Color(1, 1, 1, 1))
            _points(group, every, radius + mm(RING_MM), False)
    for cid, xy in points.items():
        group.add(Color(*_rgb(cid, colours), 1))
        _points(group, xy, radius, hollow)
    if isinstance(chosen, Point):
        group.add(Color(1, 1, 1, 1))
        group.add(SmoothLine(circle=(*chosen_at, radius * 2), width=mm(RING_MM) + 1))  # no MSAA


def _rgb(class_id: int, colours: dict[int, tuple[int, int, int]]) -> tuple[float, ...]:
    return tuple(v / 255 for v in colours.get(class_id, class_colour(class_id)))
