"""Post-processing of labels (seed 004 sec. 3.6.2), always with a diff for a before/after view.

Every step works per instance inside its bounding box: a global morphology on the binary mask
would merge touching cells or let one cell eat its neighbour. Growing steps (fill, close,
smooth) only take background pixels; shrinking steps only give pixels back to background.
Nothing here saves: the UI shows `result.diff`, the expert accepts, and the caller stores the
label as a `postprocess` version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from appliance.errors import ApplianceError
from appliance.labels import Label

__all__ = [
    "STEPS",
    "LabelDiff",
    "PostResult",
    "closing",
    "diff",
    "fill_holes",
    "instance_boxes",
    "opening",
    "remove_small",
    "smooth",
    "split_touching",
]


@dataclass(frozen=True)
class LabelDiff:
    """What a step changed: pixel masks for drawing and instance ids for listing."""

    added: np.ndarray  # bool H×W: background before, foreground after
    removed: np.ndarray  # bool H×W: foreground before, background after
    changed_ids: tuple[int, ...]  # instances whose pixels changed (before or after ids)
    new_ids: tuple[int, ...]
    removed_ids: tuple[int, ...]

    @property
    def unchanged(self) -> bool:
        """True when the step changed no instance and no pixel."""
        return not (self.changed_ids or self.added.any() or self.removed.any())


@dataclass(frozen=True)
class PostResult:
    """A post-processing step's new label and its difference from the old one."""

    label: Label
    diff: LabelDiff


def diff(before: Label, after: Label) -> LabelDiff:
    """Pixel and instance differences between two labels of the same image."""
    a, b = before.instances, after.instances
    if a.shape != b.shape:
        raise ApplianceError(f"cannot compare labels of shapes {a.shape} and {b.shape}")
    changed = a != b
    ids = set(np.unique(a[changed]).tolist()) | set(np.unique(b[changed]).tolist())
    ids.discard(0)
    old, new = set(before.ids().tolist()), set(after.ids().tolist())
    return LabelDiff(
        added=(a == 0) & (b > 0),
        removed=(a > 0) & (b == 0),
        changed_ids=tuple(sorted(int(i) for i in ids)),
        new_ids=tuple(sorted(int(i) for i in new - old)),
        removed_ids=tuple(sorted(int(i) for i in old - new)),
    )


def _result(before: Label, instances: np.ndarray, classes: dict[int, int]) -> PostResult:
    present = set(np.unique(instances).tolist()) - {0}
    after = Label(instances, {i: c for i, c in classes.items() if i in present})
    return PostResult(after, diff(before, after))


def instance_boxes(inst: np.ndarray) -> dict[int, tuple[slice, slice]]:
    """Bounding-box slices per instance id of an (H, W) integer map, from one pass over it."""
    n = int(inst.max()) if inst.size else 0
    if n == 0:
        return {}
    return {i + 1: s for i, s in enumerate(ndi.find_objects(inst, max_label=n)) if s is not None}


def _per_instance(label: Label, fn: Callable[[np.ndarray], np.ndarray], pad: int) -> PostResult:
    """Apply `fn(mask) -> mask` to each instance in its box grown by `pad`.

    Pixels the new mask drops go to background; pixels it adds are taken only from background
    (in id order, so two instances never fight over a pixel twice).
    """
    src = label.instances
    out = src.copy()
    h, w = src.shape
    for i, (ys, xs) in instance_boxes(src).items():
        y0, y1 = max(0, ys.start - pad), min(h, ys.stop + pad)
        x0, x1 = max(0, xs.start - pad), min(w, xs.stop + pad)
        crop = src[y0:y1, x0:x1]
        mask = crop == i
        new = fn(mask)
        view = out[y0:y1, x0:x1]
        view[mask & ~new & (view == i)] = 0
        view[new & ~mask & (view == 0)] = i
    return _result(label, out, label.classes)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _check_radius(radius: int) -> None:
    if radius < 1:
        raise ApplianceError(f"radius must be at least 1 pixel, got {radius}")


def fill_holes(label: Label) -> PostResult:
    """Background regions enclosed by a single instance join that instance.

    A gap enclosed by several touching cells is not a hole of any of them and stays.

    Examples
    --------
    >>> ring = np.array([[0, 0, 0, 0, 0], [0, 3, 3, 3, 0], [0, 3, 0, 3, 0], [0, 3, 3, 3, 0],
    ...                  [0, 0, 0, 0, 0]], np.uint32)
    >>> result = fill_holes(Label(ring, {3: 1}))
    >>> int(result.label.instances[2, 2]), int(result.diff.added.sum()), result.diff.changed_ids
    (3, 1, (3,))
    """
    src = label.instances
    if not src.any():
        return _result(label, src.copy(), label.classes)
    holes = connected(src == 0, connectivity=1)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    out = src.copy()
    for k, (ys, xs) in enumerate(ndi.find_objects(holes), start=1):
        if ys is None or k in border:
            continue
        y0, x0 = max(0, ys.start - 1), max(0, xs.start - 1)
        crop = holes[y0 : ys.stop + 1, x0 : xs.stop + 1] == k
        ring = cv2.dilate(crop.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~crop
        around = np.unique(src[y0 : ys.stop + 1, x0 : xs.stop + 1][ring])
        if around.size == 1 and around[0] != 0:
            out[y0 : ys.stop + 1, x0 : xs.stop + 1][crop] = around[0]
    return _result(label, out, label.classes)


def remove_small(label: Label, min_area: int) -> PostResult:
    """Connected pieces smaller than `min_area` pixels vanish (small cells and stray fragments).

    Examples
    --------
    >>> lab = Label(np.array([[1, 1, 0, 2], [1, 1, 0, 0]], np.uint32), {1: 1, 2: 1})
    >>> result = remove_small(lab, min_area=2)
    >>> result.label.instances.tolist(), result.diff.removed_ids
    ([[1, 1, 0, 0], [1, 1, 0, 0]], (2,))
    """
    if min_area < 1:
        raise ApplianceError(f"min_area must be at least 1 pixel, got {min_area}")
    src = label.instances
    if not src.any():
        return _result(label, src.copy(), label.classes)
    pieces = connected(src, background=0, connectivity=2)  # equal ids that touch form a piece
    area = np.bincount(pieces.ravel())
    small = area < min_area
    small[0] = False
    out = src.copy()
    out[small[pieces]] = 0
    return _result(label, out, label.classes)


def opening(label: Label, radius: int = 1) -> PostResult:
    """Morphological opening per instance: removes spurs and thin bridges."""
    _check_radius(radius)
    k = _disk(radius)
    return _per_instance(
        label, lambda m: cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, k) > 0, radius
    )


def closing(label: Label, radius: int = 1) -> PostResult:
    """Morphological closing per instance: closes notches and small gaps (seed 004 Fig. 9b)."""
    _check_radius(radius)
    k = _disk(radius)

    def close(m: np.ndarray) -> np.ndarray:
        padded = np.pad(m.astype(np.uint8), radius)  # closing must not stick to the box edge
        closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, k)
        return closed[radius:-radius, radius:-radius] > 0

    return _per_instance(label, close, radius)


def smooth(label: Label, sigma: float = 1.5) -> PostResult:
    """Boundary smoothing: Gaussian-blurred mask thresholded at one half, per instance."""
    if sigma <= 0:
        raise ApplianceError(f"sigma must be positive, got {sigma}")
    pad = int(np.ceil(3 * sigma))

    def blur(m: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigmaX=sigma) > 0.5

    return _per_instance(label, blur, pad)


def split_touching(label: Label, min_depth: float = 2.0) -> PostResult:
    """Distance-transform watershed inside each instance: touching cells become separate ones.

    Markers are the regional maxima of the distance to background that stand at least
    `min_depth` pixels above the neck joining them (h-maxima). Plain local maxima would cut a
    rod-shaped cell into pieces along its flat ridge; h-maxima give a ridge one marker. The
    first piece keeps the old id; others get new ids with the same class.
    """
    if min_depth <= 0:
        raise ApplianceError(f"min_depth must be positive, got {min_depth}")
    src = label.instances
    out = src.copy()
    classes = dict(label.classes)
    next_id = int(src.max()) + 1 if src.size else 1
    for i, (ys, xs) in instance_boxes(src).items():
        mask = np.pad(src[ys, xs] == i, 1)
        dist = ndi.distance_transform_edt(mask)
        markers, n = ndi.label(h_maxima(dist, min_depth))
        if n < 2:
            continue
        parts = watershed(-dist, markers, mask=mask)[1:-1, 1:-1]
        view = out[ys, xs]
        for k in range(2, n + 1):
            sel = parts == k
            if sel.any():
                view[sel] = next_id
                classes[next_id] = label.class_of(i)
                next_id += 1
    return _result(label, out, classes)


STEPS: dict[str, Callable[..., PostResult]] = {
    "fill_holes": fill_holes,
    "remove_small": remove_small,
    "opening": opening,
    "closing": closing,
    "smooth": smooth,
    "split_touching": split_touching,
}
