"""Viewport maths of the drawing surface as pure functions (no Kivy), unit-tested on their own.

A `View` is the zoom (screen pixels per image pixel) and the offset of the image's bottom-left
corner from the widget's bottom-left, in screen pixels. Image coordinates are (column, row) with
row 0 at the top, as in numpy; window coordinates have y up, as in Kivy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "View",
    "clamp_zoom",
    "fit",
    "focus",
    "margins",
    "min_zoom",
    "pan",
    "place",
    "texture_step",
    "to_image",
    "to_widget",
    "toggle_fit",
    "visible",
    "zoom_about",
]

MAX_ZOOM = 32.0


@dataclass(frozen=True)
class View:
    zoom: float
    offset: tuple[float, float]


def min_zoom(shape: tuple[int, int], size: tuple[float, float]) -> float:
    """Fit the whole image, but never below 1× for images smaller than the widget."""
    h, w = shape
    return min(1.0, size[0] / w, size[1] / h)


def clamp_zoom(zoom: float, shape: tuple[int, int], size: tuple[float, float]) -> float:
    return min(MAX_ZOOM, max(min_zoom(shape, size), zoom))


def fit(shape: tuple[int, int], size: tuple[float, float]) -> View:
    """The whole image visible and centred."""
    h, w = shape
    zoom = min(size[0] / w, size[1] / h)
    return View(zoom, ((size[0] - w * zoom) / 2, (size[1] - h * zoom) / 2))


def to_image(view: View, height: int, x: float, y: float) -> tuple[float, float]:
    """Widget-relative point → continuous image coordinates (column, row)."""
    return (x - view.offset[0]) / view.zoom, height - (y - view.offset[1]) / view.zoom


def to_widget(view: View, height: int, ix: float, iy: float) -> tuple[float, float]:
    """Continuous image coordinates → widget-relative point."""
    return view.offset[0] + ix * view.zoom, view.offset[1] + (height - iy) * view.zoom


def place(zoom: float, height: int, ix: float, iy: float, x: float, y: float) -> View:
    """The view at `zoom` that puts image point (ix, iy) under widget point (x, y)."""
    return View(zoom, (x - ix * zoom, y - (height - iy) * zoom))


def zoom_about(
    view: View, shape: tuple[int, int], size: tuple[float, float], zoom: float, x: float, y: float
) -> View:
    """Zoom (clamped) keeping the image point under widget point (x, y) in place."""
    ix, iy = to_image(view, shape[0], x, y)
    return place(clamp_zoom(zoom, shape, size), shape[0], ix, iy, x, y)


def pan(view: View, dx: float, dy: float) -> View:
    return View(view.zoom, (view.offset[0] + dx, view.offset[1] + dy))


def visible(view: View, shape: tuple[int, int], size: tuple[float, float]) -> tuple[float, ...]:
    """The image rectangle (x0, y0, x1, y1, image coordinates, clipped) the widget shows."""
    h, w = shape
    ax, ay = to_image(view, h, 0.0, size[1])
    bx, by = to_image(view, h, size[0], 0.0)
    return max(0.0, ax), max(0.0, ay), min(float(w), bx), min(float(h), by)


def toggle_fit(
    view: View, shape: tuple[int, int], size: tuple[float, float], x: float, y: float
) -> View:
    """Double tap: from the fitted view to 1:1 about the tapped point, from anything else to
    the fitted view."""
    fitted = fit(shape, size)
    if abs(view.zoom - fitted.zoom) < 1e-6 * fitted.zoom:
        return zoom_about(view, shape, size, 1.0 if fitted.zoom != 1.0 else 2.0, x, y)
    return fitted


FOCUS_FILL = 0.4  # a focused object is zoomed up to this fraction of the view ...
FOCUS_MAX_ZOOM = 8.0  # ... but not beyond this zoom (a 3-pixel speck stays recognisable)
FOCUS_MARGIN = 0.8  # the whole object fits in this fraction of the view


def focus(
    view: View, shape: tuple[int, int], size: tuple[float, float], box: tuple[float, ...]
) -> View:
    """Centre the image box (x0, y0, x1, y1) in the widget at a sane zoom: the current one if
    the box is neither cut off nor tiny; zoomed out until the box fits; zoomed in until it
    fills `FOCUS_FILL` of the view, up to `FOCUS_MAX_ZOOM` (never out to do that).

    >>> v = focus(View(1.0, (0.0, 0.0)), (1000, 1000), (500.0, 500.0), (100, 100, 200, 200))
    >>> v.zoom, to_widget(v, 1000, 150, 150)
    (2.0, (250.0, 250.0))
    """
    x0, y0, x1, y1 = box
    bw, bh = max(1.0, x1 - x0), max(1.0, y1 - y0)
    fits = min(size[0] * FOCUS_MARGIN / bw, size[1] * FOCUS_MARGIN / bh)
    wanted = min(size[0] * FOCUS_FILL / bw, size[1] * FOCUS_FILL / bh, FOCUS_MAX_ZOOM)
    zoom = clamp_zoom(min(fits, max(view.zoom, wanted)), shape, size)
    return place(zoom, shape[0], (x0 + x1) / 2, (y0 + y1) / 2, size[0] / 2, size[1] / 2)


def margins(
    view: View, shape: tuple[int, int], size: tuple[float, float]
) -> list[tuple[float, float, float, float]]:
    """The parts of the widget the image leaves uncovered at this view, as (x, y, w, h) in
    widget coordinates: the only places the background needs painting (the image is opaque).

    >>> margins(fit((100, 200), (400.0, 300.0)), (100, 200), (400.0, 300.0))
    [(0.0, 0.0, 400.0, 50.0), (0.0, 250.0, 400.0, 50.0)]
    """
    w, h = size
    ox, oy = view.offset
    x0, y0 = max(0.0, ox), max(0.0, oy)
    x1, y1 = min(w, ox + shape[1] * view.zoom), min(h, oy + shape[0] * view.zoom)
    if x0 >= x1 or y0 >= y1:  # panned off: nothing of the image in sight
        return [(0.0, 0.0, w, h)]
    bands = [
        (0.0, 0.0, w, y0),  # below the image
        (0.0, y1, w, h - y1),  # above
        (0.0, y0, x0, y1 - y0),  # left of it
        (x1, y0, w - x1, y1 - y0),  # right of it
    ]
    return [band for band in bands if band[2] > 0 and band[3] > 0]


def texture_step(zoom: float) -> int:
    """The coarsest power-of-two level of the image to draw at this zoom without magnifying
    it: 1 (the full image) from zoom 0.5 up, 2 (a half-size, area-averaged copy) from 0.25 to
    0.5, and so on. Minifying a big texture by 2× or more costs a renderer cache-missing texel
    fetches (about 1.6× the time per pixel under Mesa's llvmpipe) and aliases; the level is
    sampled about 1:1.

    >>> [texture_step(z) for z in (2.0, 0.6, 0.5, 0.458, 0.25, 0.11, 0.0)]
    [1, 1, 2, 2, 4, 8, 1]
    """
    step = 1
    while 0.0 < zoom * step * 2 <= 1.0:  # no zoom yet (a widget not laid out): the image
        step *= 2
    return step


MINIMAP_SHARE = 0.2  # the minimap's side: at most this fraction of the view's
MINIMAP_MARGIN = 12.0  # screen px between the minimap and the view's top-right corner


def minimap(shape: tuple[int, int], size: tuple[float, float]) -> tuple[float, float, float]:
    """Where the minimap sits in the widget: its bottom-left (x, y) and image-to-minimap
    scale; its width and height are the image's times the scale."""
    h, w = shape
    scale = min(size[0] * MINIMAP_SHARE / w, size[1] * MINIMAP_SHARE / h)
    return size[0] - w * scale - MINIMAP_MARGIN, size[1] - h * scale - MINIMAP_MARGIN, scale


def on_minimap(shape: tuple[int, int], size: tuple[float, float], x: float, y: float) -> bool:
    """Whether widget point (x, y) lies on the minimap (a touch there navigates, never draws)."""
    mx, my, scale = minimap(shape, size)
    return mx <= x <= mx + shape[1] * scale and my <= y <= my + shape[0] * scale


def centre_on_minimap(
    view: View, shape: tuple[int, int], size: tuple[float, float], x: float, y: float
) -> View:
    """The view, at its zoom, centred on the image point under minimap point (x, y).

    >>> v = centre_on_minimap(View(4.0, (0.0, 0.0)), (100, 100), (500.0, 500.0), 438.0, 438.0)
    >>> to_image(v, 100, 250.0, 250.0)
    (50.0, 50.0)
    """
    mx, my, scale = minimap(shape, size)
    h = shape[0]
    ix = min(max((x - mx) / scale, 0.0), float(shape[1]))
    iy = min(max(h - (y - my) / scale, 0.0), float(h))
    return place(view.zoom, h, ix, iy, size[0] / 2, size[1] / 2)
