"""Controls from RGB regions whose cells are marked by points and boxes (seeds 000 and 002).

Seed 000's plan is synthetic cells placed on a slide region. A job of slide regions carries
the regions' own pixels and the expert's marks (the truth of the real cells), so a control is
that region with a few more cells planted on it (`appliance.generators.compose`): no cell on
a marked one, the marks kept, each planted cell's truth its box (its centre where the region
has points only). The cells are virtual-microscope shapes (`export.cell_source.CellSource`)
coloured like the marked cells of their class in that region (the darker part of each mark,
where the nucleus is; rimmed by the mark's surroundings), sized like that class's boxes, or,
with points only, like a cell of `CELL_UM` µm at the region's µm per pixel.

The bundle item keeps the region's place (`ControlItem.region`), and the tablet makes it a
region of the slide it holds with that hash, at the same place; so it is meant for a tablet
that holds the slide but not that region (another annotator's project): one that already holds
a region there refuses the item, as two regions showing one place with and without the planted
cells would give the control away.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.generators.compose import Composite, channel_scale, compose_control
from appliance.generators.runtime import Cell
from appliance.labels import Box, Label, Point
from export.cell_source import CellSource

__all__ = ["CELL_UM", "compose_on_region", "marked_only"]

CELL_UM = 10.0  # µm: a leukocyte's size, when a region's marks are points (they give none)
POINT_RADIUS = 6  # px around a point read for its cell's colour
DARK = 0.3  # the darkest share of a mark's pixels: its nucleus


def marked_only(label: Label) -> bool:
    """Whether a label marks cells by points or boxes only (no masks)."""
    return bool(label.objects) and not label.ids().size


def _mark_pixels(image: np.ndarray, obj: Point | Box) -> np.ndarray:
    """N×3 pixels of a mark: inside a box, or a disc around a point."""
    h, w = image.shape[:2]
    if isinstance(obj, Box):
        x0, y0 = int(obj.x0), int(obj.y0)
        return image[y0 : int(np.ceil(obj.y1)), x0 : int(np.ceil(obj.x1))].reshape(-1, 3)
    disc = np.zeros((h, w), np.uint8)
    cv2.circle(disc, (int(obj.x), int(obj.y)), POINT_RADIUS, 1, thickness=-1)
    return image[disc > 0]


def _colours(image: np.ndarray, marks: list[Point | Box]) -> tuple[np.ndarray, np.ndarray]:
    """(nucleus, rim) RGB of marked cells: the mean of their darkest `DARK` share of pixels
    and the median of the rest."""
    pix = np.concatenate([_mark_pixels(image, m) for m in marks]).astype(np.float64)
    grey = pix.mean(axis=1)
    dark = grey <= np.quantile(grey, DARK)
    rest = pix[~dark] if (~dark).any() else pix
    return pix[dark].mean(axis=0), np.median(rest, axis=0)


def _side(marks: list[Point | Box], all_marks: list[Point | Box], mpp: float | None) -> float:
    """Longest side a planted cell of this class gets: the median of the class's boxes, else
    of all boxes, else `CELL_UM` at `mpp` (0: keep the shape's own size)."""
    for pool in (marks, all_marks):
        sides = [max(b.x1 - b.x0, b.y1 - b.y0) for b in pool if isinstance(b, Box)]
        if sides:
            return float(np.median(sides))
    return CELL_UM / mpp if mpp else 0.0


def _cell(
    source: CellSource,
    class_index: int,
    nucleus: np.ndarray,
    rim: np.ndarray,
    side: float,
    scale: tuple[np.ndarray, np.ndarray],
    name: str,
) -> Cell:
    """A virtual-microscope shape drawn in the given colours, its longest side `side`, in the
    [0, 1] scale `compose_control` maps onto the region's percentiles."""
    shape = source.draw(class_index)
    mask, signal = shape.mask, shape.signal
    if side > 0:
        f = side / max(mask.shape)
        size = (max(3, round(mask.shape[1] * f)), max(3, round(mask.shape[0] * f)))
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        signal = cv2.resize(np.ascontiguousarray(signal), size, interpolation=cv2.INTER_LINEAR)
    inside = signal[mask]
    texture = np.where(mask, signal / max(float(inside.mean()) if inside.size else 1.0, 1e-9), 1.0)
    texture = np.clip(texture, 0.5, 1.5)[..., None]
    rgb = np.where(mask[..., None], rim + (nucleus - rim) * texture, rim)
    lo, hi = scale
    return Cell(np.clip((rgb - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), mask, name)


def compose_on_region(
    image: np.ndarray,
    label: Label,
    class_names: list[str],
    rng: np.random.Generator,
    source: CellSource,
    mpp: float | None = None,
    n_cells: int | None = None,
) -> Composite:
    """A control: `image` (RGB uint8) with cells planted among its marked ones (see the module
    docstring). `class_names` as in the job (index 0 background). By default a quarter of the
    marked count is planted (one to five), classes drawn in the marks' proportions."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ApplianceError("a point/box control needs an RGB region")
    if not marked_only(label):
        raise ApplianceError("the region's cells must be marked by points or boxes only")
    marks = list(label.objects)
    n = n_cells or int(np.clip(round(len(marks) / 4), 1, 5))
    scale = channel_scale(image)
    classed = [m.class_id for m in marks if m.class_id >= 1]
    if not classed:
        raise ApplianceError("the region's marks have no class")
    cells = []
    for cid in rng.choice(classed, size=n):
        of_class = [m for m in marks if m.class_id == int(cid)]
        nucleus, rim = _colours(image, of_class)
        side = _side(of_class, marks, mpp)
        cells.append(_cell(source, int(cid) - 1, nucleus, rim, side, scale, class_names[cid]))
    ids = {name: k for k, name in enumerate(class_names) if k}
    return compose_control(image, cells, ids, rng, label=label, match=False)
