"""Two-finger gestures on the drawing surface as pure functions (no Kivy), unit-tested alone.

Two fingers either *navigate* (pinch-zoom about their midpoint, pan with the midpoint) or
*resize the brush* (both fingers dragged up or down together, their distance kept). The two
must not fight, so a gesture is classified once, when either finger has moved `threshold`
screen pixels from where the pair started, and keeps that meaning until a finger lifts:

- the finger distance changed by `threshold` or more: **zoom** (a pinch, whatever else moved);
- both fingers moved the same way vertically (each at least half the threshold), the
  midpoint went mostly up or down (at least twice as far as sideways) and the distance changed
  by less than half the midpoint's travel: **brush**;
- anything else (a sideways two-finger pan, a rotation): **zoom**, i.e. ordinary navigation.

Until then (`WAIT`) nothing moves, so a brush drag never zooms a little first. Touch drivers
report the fingers one at a time, so while one finger has moved and the other has not yet
(less than twice the threshold) the gesture waits for the other's report. In brush mode
the size follows the midpoint's vertical travel exponentially — up is bigger, every
`per_doubling` pixels double or halve it — so a small brush changes as finely as a big one.
Points are window pixels with y up, as in Kivy.
"""

from __future__ import annotations

import math

__all__ = ["brush_size", "classify"]

WAIT, ZOOM, BRUSH = "wait", "zoom", "brush"

Point = tuple[float, float]


def classify(a0: Point, b0: Point, a: Point, b: Point, threshold: float) -> str:
    """What two fingers that started at `a0`, `b0` and are now at `a`, `b` mean (module doc).

    >>> classify((0, 0), (100, 0), (0, 40), (100, 38), 30)  # both up, distance kept
    'brush'
    >>> classify((0, 0), (100, 0), (-20, 0), (120, 0), 30)  # spread apart
    'zoom'
    >>> classify((0, 0), (100, 0), (40, 0), (140, 0), 30)  # both sideways: a pan
    'zoom'
    >>> classify((0, 0), (100, 0), (0, 10), (100, 12), 30)  # not far enough yet
    'wait'
    >>> classify((0, 0), (100, 0), (0, 40), (100, 0), 30)  # the other finger's report lags
    'wait'
    """
    spread = abs(math.dist(a, b) - math.dist(a0, b0))
    if spread >= threshold:
        return ZOOM
    (ax, ay), (bx, by) = (a[0] - a0[0], a[1] - a0[1]), (b[0] - b0[0], b[1] - b0[1])
    moves = sorted((math.hypot(ax, ay), math.hypot(bx, by)))
    if moves[1] < threshold:
        return WAIT
    if moves[0] < threshold / 2 and moves[1] < 2 * threshold:
        return WAIT  # fingers report one at a time: the other one's move may not be in yet
    mid_x, mid_y = (ax + bx) / 2, (ay + by) / 2
    together = ay * by > 0 and min(abs(ay), abs(by)) >= threshold / 2
    vertical = abs(mid_y) >= 2 * abs(mid_x)
    if together and vertical and spread < abs(mid_y) / 2:
        return BRUSH
    return ZOOM


def brush_size(size0: float, dy: float, per_doubling: float, low: int, high: int) -> int:
    """The brush diameter after the fingers' midpoint moved `dy` pixels up (negative: down)
    from where the size was `size0`: doubled every `per_doubling` pixels, rounded, clamped.

    >>> brush_size(20, 100, 100, 1, 200), brush_size(20, -100, 100, 1, 200)
    (40, 10)
    >>> brush_size(20, 1000, 100, 1, 200), brush_size(20, -1000, 100, 1, 200)
    (200, 1)
    """
    return int(min(high, max(low, round(size0 * 2.0 ** (dy / per_doubling)))))
