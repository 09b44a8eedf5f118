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
    """Renders regions of an instance map; caches the class table as sorted lookup arrays.

    `classes_version` (from `EditSession`) tells when the cached lookup must be rebuilt, so a
    dab on a label with thousands of instances does not rebuild a table on every touch-move.
    """

    def __init__(self, opacity: float = 0.45, outlines: bool = True) -> None:
        self.opacity = opacity
        self.outlines = outlines
        self._version: int | None = None
        self._keys = np.zeros(0, np.uint32)
        self._vals = np.zeros(0, np.int64)

    def render(
        self,
        instances: np.ndarray,
        classes: dict[int, int],
        rect: Rect,
        classes_version: int | None = None,
        selected: int = 0,
    ) -> np.ndarray:
        """RGBA (rect.height × rect.width × 4, uint8, C-contiguous, first row = top row)."""
        self._update_lookup(classes, classes_version)
        region = instances[rect.slices]
        class_ids = self._class_ids(region)
        palette = np.asarray(PALETTE, np.float32)
        base = palette[(np.maximum(class_ids, 1) - 1) % len(PALETTE)]
        shade = _SHADES[(region.astype(np.uint64) * np.uint64(2654435761) >> np.uint64(7)) % 5]
        out = np.empty((*region.shape, 4), np.uint8)
        out[..., :3] = np.clip(base * shade[..., None], 0, 255).astype(np.uint8)
        fg = region != 0
        out[..., 3] = np.where(fg, np.uint8(round(self.opacity * 255)), np.uint8(0))
        if selected:
            out[region == selected, 3] = np.uint8(min(255, round((self.opacity + 0.25) * 255)))
        if self.outlines:
            edge = boundary(instances, rect)
            out[edge, :3] = base[edge].astype(np.uint8)
            out[edge, 3] = 255
            if selected:
                out[edge & (region == selected), :3] = SELECTED_OUTLINE
        return out

    def _update_lookup(self, classes: dict[int, int], version: int | None) -> None:
        if version is not None and version == self._version:
            return
        keys = np.fromiter(classes.keys(), np.uint32, len(classes))
        vals = np.fromiter(classes.values(), np.int64, len(classes))
        order = np.argsort(keys)
        self._keys, self._vals, self._version = keys[order], vals[order], version

    def _class_ids(self, region: np.ndarray) -> np.ndarray:
        """Class id per pixel; instances missing from the table get the default class."""
        if self._keys.size == 0:
            return np.full(region.shape, DEFAULT_CLASS, np.int64)
        idx = np.searchsorted(self._keys, region)
        idx = np.minimum(idx, self._keys.size - 1)
        found = self._keys[idx] == region
        return np.where(found, self._vals[idx], DEFAULT_CLASS)


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


def display_rect(changed: Rect, shape: tuple[int, int]) -> Rect:
    """The rectangle to re-render after `changed` pixels changed: outlines reach one further."""
    return changed.grow(1, shape)
