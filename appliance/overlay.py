"""Colour overlay of a label: instance map region → RGBA bytes, one colour family per class.

The tablet re-renders only the rectangle a brush dab changed (plus a one-pixel margin, because
an outline depends on the neighbours), so rendering is vectorised over the region with no Python
loop per pixel or per instance. Instances of one class share a hue and differ in brightness, so
touching cells of the same class stay distinguishable; outlines are opaque so that a faint fill
(low opacity) still shows every boundary.
"""

from __future__ import annotations

import numpy as np

from appliance.editing import Rect
from appliance.labels import DEFAULT_CLASS
from appliance.settings import OPACITY

__all__ = [
    "DENSE_LIMIT",
    "PALETTE",
    "SELECTED_OUTLINE",
    "OverlayRenderer",
    "boundary",
    "class_colour",
    "colour_tables",
    "display_rect",
    "hex_colour",
    "most_opaque",
]

# Okabe-Ito colours (colour-blind safe), in class order 1, 2, ...; repeated beyond seven classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (213, 94, 0),
    (204, 121, 167),
    (0, 114, 178),
)
SELECTED_OUTLINE = (255, 255, 255)
_SHADES = np.array([1.0, 0.78, 0.9, 0.68, 0.84], np.float32)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The display colour of a class id (1-based)."""
    return PALETTE[(max(int(class_id), 1) - 1) % len(PALETTE)]


def hex_colour(class_id: int) -> str:
    """`#rrggbb` of a class, for widgets that want a colour string."""
    return "#{:02x}{:02x}{:02x}".format(*class_colour(class_id))


class OverlayRenderer:
    """Renders regions of an instance map through packed-RGBA lookup tables indexed by id.

    Two tables (fill and outline colour, alpha included, one uint32 per id) turn a region
    into pixels with two gathers and a select, so a dab costs microseconds and a full 2048²
    render tens of milliseconds. They are rebuilt only when `classes_version` (from
    `EditSession`), the opacity or the selection change. Ids too large for a dense table
    (imported labels with hashed ids) go through `np.unique` on the region instead.
    """

    def __init__(self, opacity: float = OPACITY.default, outlines: bool = True) -> None:
        self.opacity = opacity
        self.outlines = outlines
        self.colours: dict[int, tuple[int, int, int]] = {}  # class id -> chosen RGB
        self.hidden: frozenset[int] = frozenset()  # classes not drawn at all
        self._key: tuple | None = None
        self._fill = np.zeros(1, np.uint32)
        self._edge = np.zeros(1, np.uint32)

    def render(
        self,
        instances: np.ndarray,
        classes: dict[int, int],
        rect: Rect,
        classes_version: int | None = None,
        selected: int = 0,
    ) -> np.ndarray:
        """RGBA (rect.height × rect.width × 4, uint8, C-contiguous, first row = top row)."""
        region = instances[rect.slices]
        top = int(region.max(initial=0))
        if top < DENSE_LIMIT:
            key = (
                classes_version,
                self.opacity,
                selected,
                tuple(self.colours.items()),
                self.hidden,
            )
            if classes_version is None or key != self._key or top >= self._fill.size:
                self._fill, self._edge = self._tables(classes, None, top, selected)
                self._key = key
            fill, edge_rgba, index = self._fill, self._edge, region
        else:
            ids, inverse = np.unique(region, return_inverse=True)
            fill, edge_rgba = self._tables(classes, ids, 0, selected)
            index = inverse.reshape(region.shape)
        packed = fill[index]
        if self.outlines:
            packed = np.where(boundary(instances, rect), edge_rgba[index], packed)
        return np.ascontiguousarray(packed).view(np.uint8).reshape(*region.shape, 4)

    def _tables(
        self, classes: dict[int, int], ids: np.ndarray | None, top: int, selected: int
    ) -> tuple[np.ndarray, np.ndarray]:
        fill_rgb, edge_rgb, ids = colour_tables(classes, top, ids, self.colours)
        off = ids == 0
        if self.hidden:
            off = off | np.isin(class_of_ids(classes, ids), list(self.hidden))
        alpha = np.where(off, 0, round(self.opacity * 255)).astype(np.uint32)
        edge_alpha = np.where(off, 0, 255).astype(np.uint32)
        if selected:
            chosen = ids == selected
            alpha[chosen] = min(255, round((self.opacity + 0.25) * 255))
            edge_rgb[chosen] = SELECTED_OUTLINE
        return _pack(fill_rgb, alpha), _pack(edge_rgb, edge_alpha)


DENSE_LIMIT = 1 << 20


def _pack(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB (n×3 uint8) and alpha → uint32 whose little-endian bytes are r, g, b, a."""
    c = rgb.astype(np.uint32)
    return c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | (alpha << 24)


def colour_tables(
    classes: dict[int, int],
    top: int,
    ids: np.ndarray | None = None,
    colours: dict[int, tuple[int, int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill and outline RGB for `ids` (sparse) or for every id 0..top (dense), and the ids.

    The fill is the class colour in one of five brightness shades picked by a hash of the id,
    so touching instances of one class differ; the outline is the plain class colour.
    """
    if ids is None:
        ids = np.arange(max(top, max(classes, default=0)) + 1, dtype=np.uint64)
    ids = ids.astype(np.uint64)
    cls = class_of_ids(classes, ids)
    palette = np.asarray(PALETTE, np.float32)
    base = palette[(np.maximum(cls, 1) - 1) % len(PALETTE)]
    for cid, rgb in (colours or {}).items():  # colours chosen by the expert
        base[cls == cid] = rgb
    shade = _SHADES[((ids * np.uint64(2654435761)) >> np.uint64(7)) % np.uint64(5)]
    fill = np.clip(base * shade[:, None], 0, 255).astype(np.uint8)
    return fill, base.astype(np.uint8), ids


def class_of_ids(classes: dict[int, int], ids: np.ndarray) -> np.ndarray:
    """The class of each instance id (vectorised; unknown ids get the default class)."""
    ids = ids.astype(np.uint64)
    keys = np.fromiter(classes.keys(), np.uint64, len(classes))
    vals = np.fromiter(classes.values(), np.int64, len(classes))
    if not keys.size:
        return np.full(ids.shape, DEFAULT_CLASS, np.int64)
    order = np.argsort(keys)
    keys, vals = keys[order], vals[order]
    pos = np.minimum(np.searchsorted(keys, ids), keys.size - 1)
    return np.where(keys[pos] == ids, vals[pos], DEFAULT_CLASS)


def boundary(instances: np.ndarray, rect: Rect) -> np.ndarray:
    """Foreground pixels of `rect` with a 4-neighbour of another id (image edges don't count)."""
    h, w = instances.shape
    outer = rect.grow(1, (h, w))
    pad = instances[outer.slices]
    top, left = rect.y0 - outer.y0, rect.x0 - outer.x0
    bottom, right = outer.y1 - rect.y1, outer.x1 - rect.x1
    pad = np.pad(pad, ((1 - top, 1 - bottom), (1 - left, 1 - right)), mode="edge")
    centre = pad[1:-1, 1:-1]
    edge = (
        (centre != pad[:-2, 1:-1])
        | (centre != pad[2:, 1:-1])
        | (centre != pad[1:-1, :-2])
        | (centre != pad[1:-1, 2:])
    )
    return edge & (centre != 0)


def most_opaque(rgba: np.ndarray, step: int) -> np.ndarray:
    """A `step`-times smaller RGBA picture keeping, of each step×step block, its most opaque
    pixel: the level drawn zoomed out. Outlines are opaque and one pixel wide, so an average
    or a sampled pixel would fade or break them; this keeps every one (over a fill, a fill
    over nothing). Blocks that pass the edge are padded with transparent pixels.

    >>> px = np.zeros((2, 3, 4), np.uint8); px[1, 2] = (9, 9, 9, 255); px[0, 0, 3] = 80
    >>> most_opaque(px, 2)[..., 3].tolist()
    [[80, 255]]
    """
    h, w = rgba.shape[:2]
    ph, pw = -(-h // step) * step, -(-w // step) * step
    if (ph, pw) != (h, w):
        rgba = np.pad(rgba, ((0, ph - h), (0, pw - w), (0, 0)))
    # read as little-endian uint32 the alpha byte is the most significant: the largest value
    # of a block is its most opaque pixel (ties go to a colour, which cannot be told apart)
    packed = np.ascontiguousarray(rgba).view("<u4")[..., 0]
    top = packed[::step, ::step].copy()
    for dy in range(step):
        for dx in range(step):
            if dy or dx:
                np.maximum(top, packed[dy::step, dx::step], out=top)
    return top.view(np.uint8).reshape(ph // step, pw // step, 4)


def display_rect(changed: Rect, shape: tuple[int, int]) -> Rect:
    """The rectangle to re-render after `changed` pixels changed: outlines reach one further."""
    return changed.grow(1, shape)
