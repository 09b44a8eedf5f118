"""Synthetic controls: generated cells blended into a real image, with exact instance truth.

Seed 000 plants generated cells among real data so that an annotator can be scored on items
whose truth is known. `compose_control` takes a real background image, the cells to plant
(`appliance.generators.runtime.Cell`, e.g. from `Generator.sample`) and what is already in the
image (its label, or a mask of occupied pixels; without either, an Otsu foreground estimate).
Each cell goes to a plausible, cell-free place: its whole outline plus `margin` pixels lies on
unoccupied pixels, and the local background there is no brighter than the image's typical free
background (no planting on debris or glare). Pixels are mapped from the generators' normalised
scale to the background's with its own percentiles, then blended:

- `alpha`: inside the mask the generated pixels, a soft 1–2 pixel rim outside;
- `poisson`: gradient-domain (Pérez et al.) blending over the dilated outline, so the cell takes
  the local illumination; the outline itself stays the truth.

With `match=True` (the default) and a `label` that holds cells, each cell is made to measure
like a real cell of its class in that image (`appliance.generators.context`): resized to that
cell's area before placing, and, once blended, what blending changed is scaled so the cell's
contrast above its local background is that cell's contrast; so a planted cell is neither
smaller nor dimmer than its neighbours (seed 000's concern that
fakes show by "their differing background and size").

The result's label holds the background's instances (when given) plus one new instance per cell,
with the class ids asked for: the exact truth of the composed image. A background whose cells
are marked by points and boxes only (a slide region of seeds 000 and 002) keeps its objects, no
cell is planted on a marked one (a box, or a disc around a point), and each planted cell's truth
is its box, or its centre when the region's cells are marked by points only (scoring matches
points with points and boxes with boxes), so the control is scored as that task is
(`appliance.supervision.scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.generators.context import CellFeatures, cell_features
from appliance.generators.runtime import Cell
from appliance.imageio import percentile_normalise
from appliance.labels import Box, Label, Point

__all__ = [
    "BLENDS",
    "Composite",
    "channel_scale",
    "compose_control",
    "objects_occupied",
    "occupied_estimate",
]

BLENDS = ("alpha", "poisson")
_LOW, _HIGH = 1.0, 99.8


@dataclass(frozen=True)
class Composite:
    """The composed image (background's dtype and shape), its full truth, and what was added."""

    image: np.ndarray
    label: Label
    # instance ids of the planted cells, in `cells` order (indices into `label.objects` when
    # their truth is boxes)
    added: list[int]
    centres: list[tuple[int, int]]


def occupied_estimate(image: np.ndarray) -> np.ndarray:
    """Pixels that look like objects (Otsu on the normalised grey image), dilated a little."""
    grey = percentile_normalise(image)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    g8 = (grey * 255).astype(np.uint8)
    _, fg = cv2.threshold(g8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return cv2.dilate(fg, np.ones((3, 3), np.uint8)) > 0


def channel_scale(background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) percentiles: how [0, 1] generator pixels map to raw values."""
    chans = background[..., None] if background.ndim == 2 else background
    lo = np.percentile(chans.reshape(-1, chans.shape[-1]), _LOW, axis=0)
    hi = np.percentile(chans.reshape(-1, chans.shape[-1]), _HIGH, axis=0)
    return lo.astype(np.float64), np.maximum(hi, lo + 1e-6).astype(np.float64)


def _poisson(dst: np.ndarray, src: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Solve Δf = Δsrc in `region` with f = dst on its border (one channel, float64)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    h, w = dst.shape
    region = region.copy()
    region[0, :] = region[-1, :] = region[:, 0] = region[:, -1] = False
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return dst
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(ys.size)
    rows, cols, vals = [np.arange(ys.size)], [np.arange(ys.size)], [np.full(ys.size, 4.0)]
    b = 4 * src[ys, xs] - (src[ys - 1, xs] + src[ys + 1, xs] + src[ys, xs - 1] + src[ys, xs + 1])
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = index[ny, nx] >= 0
        rows.append(np.flatnonzero(inside))
        cols.append(index[ny, nx][inside])
        vals.append(-np.ones(int(inside.sum())))
        b = b + np.where(inside, 0.0, dst[ny, nx])
    a = coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(ys.size, ys.size),
    ).tocsr()
    out = dst.copy()
    out[ys, xs] = spsolve(a, b)
    return out


def _candidates(
    free: np.ndarray, bright_ok: np.ndarray, cell: np.ndarray, margin: int
) -> np.ndarray:
    """Top-left corners (k×2) where the cell's dilated outline covers only free, dim pixels."""
    kernel = cv2.dilate(cell.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8))
    bad = (~(free & bright_ok)).astype(np.float32)
    # a placement is bad if any outline pixel lands on a bad pixel: correlate bad with kernel
    hits = cv2.filter2D(
        bad, -1, kernel.astype(np.float32), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT
    )
    h, w = free.shape
    ch, cw = cell.shape
    valid = hits[: h - ch + 1, : w - cw + 1] < 0.5
    return np.argwhere(valid)


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels 2 to 4 away from the outline: where a cell's local background is read."""
    m = mask.astype(np.uint8)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    return (cv2.dilate(m, disk) > 0) & ~(cv2.dilate(m, np.ones((3, 3), np.uint8)) > 0)


def _resized(
    raw: np.ndarray, mask: np.ndarray, area: float, margin: int
) -> tuple[np.ndarray, np.ndarray]:
    """(raw pixels, mask) of a cell resized to `area` pixels; `margin` + 4 pixels (edge
    values) are kept around the outline."""
    scale = float(np.sqrt(area / max(int(mask.sum()), 1)))
    h, w = mask.shape
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    raw = cv2.resize(raw, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], -1)
    pad = margin + 4
    raw = np.pad(raw, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return raw, np.pad(mask, pad)


def _set_contrast(
    window: np.ndarray, before: np.ndarray, mask: np.ndarray, contrast: float
) -> None:
    """Scale what blending changed so the cell's mean level minus the median of its ring
    (as `cell_features` measures) equals `contrast`; in place."""
    ring = _ring(mask)
    grey = window.mean(axis=-1)
    got = float(grey[mask].mean()) - float(np.median(grey[ring])) if ring.any() else 0.0
    if got * contrast > 0:
        window[:] = before + (window - before) * (contrast / got)


def compose_control(
    background: np.ndarray,
    cells: list[Cell],
    class_ids: dict[str, int],
    rng: np.random.Generator,
    *,
    label: Label | None = None,
    occupied: np.ndarray | None = None,
    blend: str = "alpha",
    margin: int = 3,
    match: bool = True,
) -> Composite:
    """Plant `cells` into `background`; see the module docstring. `class_ids` maps each cell's
    class name to the project's class id. Cells that find no free place raise ApplianceError."""
    if blend not in BLENDS:
        raise ApplianceError(f"blend {blend!r} is not one of {', '.join(BLENDS)}")
    img = np.asarray(background)
    if img.ndim not in (2, 3):
        raise ApplianceError(f"background of shape {img.shape} is neither grey nor RGB")
    h, w = img.shape[:2]
    if label is not None and label.shape != (h, w):
        raise ApplianceError(f"label {label.shape} does not match the background {(h, w)}")
    if label is not None:
        taken = label.instances > 0
        cell_side = max((max(np.asarray(c.mask).shape) for c in cells), default=8)
        taken |= objects_occupied(label, cell_side // 2)
    else:
        taken = occupied_estimate(img) if occupied is None else np.asarray(occupied, bool)
    as_boxes = bool(label is not None and label.objects and not label.ids().size)
    marks = label.objects if label is not None else ()
    as_points = as_boxes and not any(isinstance(o, Box) for o in marks)
    lo, hi = channel_scale(img)
    grey = percentile_normalise(img)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    local = cv2.blur(grey, (9, 9))
    free_level = np.percentile(local[~taken], 75) if (~taken).any() else 1.0
    bright_ok = local <= free_level
    out = img.astype(np.float64).reshape(h, w, -1).copy()
    instances = (label.instances if label is not None else np.zeros((h, w), np.uint32)).copy()
    classes = dict(label.classes) if label is not None else {}
    next_id = int(instances.max()) + 1
    context: dict[int, list[CellFeatures]] = {}
    if match and label is not None:
        for f in cell_features(img, label) or cell_features(img, label, whole=False):
            context.setdefault(f.class_id, []).append(f)
    added, centres = [], []
    boxes: list[Box | Point] = []
    for cell in cells:
        if cell.class_name not in class_ids:
            raise ApplianceError(f"class {cell.class_name!r} is not a class of this project")
        mask = np.asarray(cell.mask, bool)
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        pad = margin + 2
        y0, x0 = max(0, y0 - pad), max(0, x0 - pad)
        y1, x1 = min(mask.shape[0], y1 + pad), min(mask.shape[1], x1 + pad)
        m = mask[y0:y1, x0:x1]
        pix = np.asarray(cell.pixels, np.float64)[y0:y1, x0:x1].reshape(m.shape[0], m.shape[1], -1)
        raw = lo + pix * (hi - lo)
        if raw.shape[-1] != out.shape[-1]:
            raw = np.repeat(raw.mean(axis=-1, keepdims=True), out.shape[-1], axis=-1)
        like = context.get(class_ids[cell.class_name])
        target = like[int(rng.integers(len(like)))] if like else None
        if target is not None:
            raw, m = _resized(raw, m, target.area, margin)
        spots = _candidates(~taken, bright_ok, m, margin)
        if len(spots) == 0:
            raise ApplianceError(
                f"no free, plausible place left for a {cell.class_name} in a {h}×{w} image"
            )
        ty, tx = spots[int(rng.integers(len(spots)))]
        ch, cw = m.shape
        window = out[ty : ty + ch, tx : tx + cw]
        before = window.copy()
        if blend == "alpha":
            soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), 1.0)
            alpha = np.maximum(m, np.clip(soft * 1.5, 0, 1))[..., None]
            window[:] = alpha * raw + (1 - alpha) * window
        else:
            region = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            for c in range(window.shape[-1]):
                window[..., c] = _poisson(window[..., c], raw[..., c], region)
        if target is not None:
            _set_contrast(window, before, m, target.contrast)
        if as_boxes:  # a point/box task: the planted cell's truth is its box (or centre)
            my, mx = np.nonzero(m)
            box = Box(tx + mx.min(), ty + my.min(), tx + mx.max() + 1, ty + my.max() + 1,
                      class_ids[cell.class_name])  # fmt: skip
            boxes.append(Point(*box.centre, box.class_id) if as_points else box)
        else:
            instances[ty : ty + ch, tx : tx + cw][m] = next_id
            classes[next_id] = class_ids[cell.class_name]
        taken[ty : ty + ch, tx : tx + cw] |= (
            cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        )
        assert label is not None or not as_boxes
        added.append(len(label.objects) + len(boxes) - 1 if label and as_boxes else next_id)
        centres.append((int(ty + ch // 2), int(tx + cw // 2)))
        next_id += 1
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        result = np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    else:
        result = out.astype(img.dtype)
    result = result.reshape(img.shape)
    objects = (*label.objects, *boxes) if label is not None else ()
    return Composite(result, Label(instances, classes, objects), added, centres)


def objects_occupied(label: Label, point_radius: int) -> np.ndarray:
    """Pixels a label's point and box objects claim: each box, and a disc of `point_radius`
    around each point (a point marks a cell whose extent it does not give)."""
    taken = np.zeros(label.shape, np.uint8)
    for obj in label.objects:
        if isinstance(obj, Point):
            cv2.circle(taken, (int(obj.x), int(obj.y)), max(1, point_radius), 1, thickness=-1)
        else:
            x0, y0 = int(obj.x0), int(obj.y0)
            taken[y0 : int(np.ceil(obj.y1)), x0 : int(np.ceil(obj.x1))] = 1
    return taken > 0
