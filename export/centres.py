"""Targets for the cell detector, and point and box objects as coarse masks (numpy only).

The detector (docs/training.md) learns CenterNet's targets at full resolution: per cell class a
heatmap with a Gaussian bump at each cell's centre (exactly 1 at the centre pixel, which is what
the focal loss counts as positive), and, where a box says how large the cell is, its log width
and log height on the pixels around the centre. Decoding them (`appliance.assist.detection`)
gives back the objects they were drawn from.

`objects_as_masks` is `--targets masks`: where the lab asks for masks but the experts placed
points and drew boxes, each box becomes the ellipse inscribed in it and each point a small
disc, coarse masks the upgrade model refines (or a segmentation model learns as they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.labels import Box, CellObject, Label, Point

__all__ = [
    "DEFAULT_POINT_SIGMA",
    "SIZE_CORE",
    "CentreTargets",
    "centre_targets",
    "class_weights",
    "label_objects",
    "objects_as_masks",
]

# Gaussian sigma (px) of a point's bump: a point says where a cell is, not how large; 4 px keeps
# a bump inside the smallest cell of seed 000 (a lymphocyte, ~7 µm = 28 px at 0.25 µm/px).
DEFAULT_POINT_SIGMA = 4.0
# A box's sigma is its shorter side over this (CenterNet's radius/3 for a cell that fills its
# box): the bump covers the cell's middle third.
BOX_SIGMA_DIVISOR = 6.0
# The size target is set where the bump exceeds this: the pixels a peak may land on.
SIZE_CORE = 0.5


@dataclass(frozen=True)
class CentreTargets:
    """(K-1)×H×W heatmaps in [0, 1], 2×H×W log box size, H×W mask of where the size counts."""

    heat: np.ndarray
    size: np.ndarray
    size_mask: np.ndarray


def label_objects(label: Label) -> list[CellObject]:
    """The cells a label marks: its points and boxes, and each mask instance as its box.

    A mask says more than a box, so a job whose experts segmented some cells and boxed others
    trains the detector on both.
    """
    found: list[CellObject] = list(label.objects)
    for p in label.props():
        y0, x0, y1, x1 = p.bbox
        found.append(Box(x0, y0, x1, y1, p.class_id))
    return found


def _sigma(obj: CellObject, point_sigma: float) -> float:
    if isinstance(obj, Point):
        return point_sigma
    return max(1.0, min(obj.x1 - obj.x0, obj.y1 - obj.y0) / BOX_SIGMA_DIVISOR)


def centre_targets(
    objects: Sequence[CellObject],
    shape: tuple[int, int],
    n_classes: int,
    point_sigma: float = DEFAULT_POINT_SIGMA,
) -> CentreTargets:
    """The detector's targets for one image (`n_classes` counts the background)."""
    h, w = shape
    heat = np.zeros((n_classes - 1, h, w), np.float32)
    size = np.zeros((2, h, w), np.float32)
    size_mask = np.zeros((h, w), np.float32)
    for obj in objects:
        if not 1 <= obj.class_id < n_classes:
            continue
        if isinstance(obj, Point):
            cx, cy = obj.x, obj.y
        else:
            cx, cy = obj.centre
        if not (0 <= cx <= w and 0 <= cy <= h):  # its centre lies off this image (a crop)
            continue
        px, py = min(int(cx), w - 1), min(int(cy), h - 1)
        sigma = _sigma(obj, point_sigma)
        r = int(np.ceil(3 * sigma))
        y0, y1, x0, x1 = max(0, py - r), min(h, py + r + 1), max(0, px - r), min(w, px + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        bump = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * sigma**2)).astype(np.float32)
        plane = heat[obj.class_id - 1]
        plane[y0:y1, x0:x1] = np.maximum(plane[y0:y1, x0:x1], bump)
        plane[py, px] = 1.0
        if isinstance(obj, Box):
            core = bump >= SIZE_CORE
            logs = np.log([obj.x1 - obj.x0, obj.y1 - obj.y0]).astype(np.float32)
            for c in range(2):
                size[c, y0:y1, x0:x1][core] = logs[c]
            size_mask[y0:y1, x0:x1][core] = 1.0
    return CentreTargets(heat, size, size_mask)


def class_weights(counts: Sequence[int], cap: float = 10.0) -> np.ndarray:
    """Per-class loss weights against class imbalance (seed 000 balances its seven BAL cell
    classes with class weights): n / (k · n_c), the "balanced" rule, capped so a class with a
    handful of cells cannot dominate; a class without cells weighs 1.

    >>> class_weights([90, 10]).round(2).tolist()
    [0.56, 5.0]
    """
    n = np.asarray(counts, np.float64)
    k = int(np.count_nonzero(n))
    if k == 0:
        return np.ones(len(n), np.float32)
    w = np.where(n > 0, n.sum() / (k * np.maximum(n, 1)), 1.0)
    return np.minimum(w, cap).astype(np.float32)


def objects_as_masks(label: Label, point_radius: int) -> Label:
    """The label with each box as its inscribed ellipse and each point as a disc of
    `point_radius` pixels, new instances under the masks already drawn (never over them)."""
    instances = label.instances.copy()
    classes = dict(label.classes)
    next_id = int(instances.max(initial=0)) + 1
    h, w = instances.shape
    for obj in label.objects:
        canvas = np.zeros((h, w), np.uint8)
        if isinstance(obj, Point):
            centre = (int(obj.x), int(obj.y))
            cv2.circle(canvas, centre, max(1, int(point_radius)), 1, thickness=-1)
        else:
            cx, cy = obj.centre
            axes = (max(1, round((obj.x1 - obj.x0) / 2)), max(1, round((obj.y1 - obj.y0) / 2)))
            cv2.ellipse(canvas, (int(cx), int(cy)), axes, 0, 0, 360, 1, thickness=-1)
        free = (canvas > 0) & (instances == 0)
        if free.any():
            instances[free] = next_id
            classes[next_id] = obj.class_id
            next_id += 1
    return Label(instances, classes)
