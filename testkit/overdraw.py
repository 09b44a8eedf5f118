"""How many pixels a Kivy canvas rasterises per frame: the fill cost of a frame (issue 25).

A software renderer (Mesa's llvmpipe under Xvfb) spends its time per rasterised pixel, and a
tablet's GPU spends memory bandwidth, i.e. battery, the same way. Kivy redraws the whole window
for any change (a spinner turning, a list row updating), so every instruction counts in every
frame: a full-window rectangle under opaque panels, a transparent layer (alpha 0 is still
rasterised; so is a canvas at opacity 0) or a stencil clip pass (two quads the size of the
clipped widget) all cost as much as a visible picture of their size.

`rasterised(canvas, window_size)` walks the instructions in drawing order, clips each shape to
the window and to the scissor rectangles in force (scissor clipping is free: nothing outside
it is rasterised) and sums the areas; `largest` names the biggest contributors, for a test's
failure message. Shapes are measured by their geometry: rectangles (textured or not, text
included), the disc sprites of `Point`, the triangles of a `Mesh`, lines as long thin quads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kivy.graphics import (
    BorderImage,
    Ellipse,
    InstructionGroup,
    Line,
    Mesh,
    Point,
    Rectangle,
    RoundedRectangle,
    ScissorPop,
    ScissorPush,
)

__all__ = ["Tally", "rasterised"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass
class Tally:
    """Pixels rasterised, in all and per kind of instruction (the largest first)."""

    pixels: float = 0.0
    shapes: list[tuple[float, str]] = field(default_factory=list)

    def largest(self, n: int = 8) -> list[tuple[float, str]]:
        return sorted(self.shapes, reverse=True)[:n]


def rasterised(canvas: InstructionGroup, window_size: tuple[float, float]) -> Tally:
    """The pixels that drawing `canvas` (a window's, usually) rasterises; see the module doc."""
    tally = Tally()
    _walk(canvas, [(0.0, 0.0, float(window_size[0]), float(window_size[1]))], tally)
    return tally


def _walk(group: InstructionGroup, clips: list[Box], tally: Tally) -> None:
    for ins in group.children:
        if isinstance(ins, ScissorPush):
            x, y = ins.pos
            w, h = ins.size
            clips.append(_clip((x, y, x + w, y + h), clips[-1]))
        elif isinstance(ins, ScissorPop):
            clips.pop()
        elif isinstance(ins, InstructionGroup):
            _walk(ins, clips, tally)
        else:
            area = _area(ins, clips[-1])
            if area > 0:
                tally.pixels += area
                size = getattr(ins, "size", None) if not isinstance(ins, Point) else None
                name = type(ins).__name__
                tally.shapes.append((area, f"{name} {size[0]:.0f}×{size[1]:.0f}" if size else name))


def _clip(box: Box, clip: Box) -> Box:
    return (max(box[0], clip[0]), max(box[1], clip[1]), min(box[2], clip[2]), min(box[3], clip[3]))


def _box_area(box: Box, clip: Box) -> float:
    x0, y0, x1, y1 = _clip(box, clip)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def _area(ins: object, clip: Box) -> float:
    if isinstance(ins, Rectangle | BorderImage | RoundedRectangle | Ellipse):
        (x, y), (w, h) = ins.pos, ins.size
        return _box_area((x, y, x + w, y + h), clip)
    if isinstance(ins, Point):
        pts, r = ins.points, ins.pointsize
        return sum(
            _box_area((pts[i] - r, pts[i + 1] - r, pts[i] + r, pts[i + 1] + r), clip)
            for i in range(0, len(pts) - 1, 2)
        )
    if isinstance(ins, Mesh):
        v, idx = ins.vertices, ins.indices
        total = 0.0
        for k in range(0, len(idx) - 2, 3):
            (ax, ay), (bx, by), (cx, cy) = (
                _clamp(v[4 * i], v[4 * i + 1], clip) for i in idx[k : k + 3]
            )
            total += abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / 2
        return total
    if isinstance(ins, Line):
        pts, width = ins.points, max(1.0, 2 * ins.width)
        total = 0.0
        for i in range(0, len(pts) - 3, 2):
            (ax, ay), (bx, by) = (
                _clamp(pts[i], pts[i + 1], clip),
                _clamp(pts[i + 2], pts[i + 3], clip),
            )
            total += ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5 * width
        return total
    return 0.0


def _clamp(x: float, y: float, clip: Box) -> tuple[float, float]:
    return min(max(x, clip[0]), clip[2]), min(max(y, clip[1]), clip[3])
