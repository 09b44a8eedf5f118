"""A cell detector's raw output turned into point and box objects (numpy only, no torch).

The detector (`export.train.detector`, docs/training.md) answers per pixel, at full resolution,
like the U-Nets: K-1 centre-heatmap logits (one per cell class, CenterNet-style, a Gaussian peak
at each cell's centre) and two size logits (log width and log height of the cell's box, read at
its centre). Decoding is peak finding with non-maximum suppression:

1. Scores are the sigmoid of the heatmaps; a pixel's best class is where its score is highest.
2. A peak is a pixel whose best score reaches `threshold` and is the maximum of the best-score
   map within `nms_radius` pixels (a (2r+1)² max filter, as CenterNet's 3×3 max pool): one
   cell, one peak, whatever its class, because two cells never share a centre.
3. With `boxes`, each peak becomes a box of the predicted size, and boxes overlapping a
   higher-scoring one above `box_iou` are dropped (greedy NMS); without, a point.
4. At most `max_objects`, the highest scores first.

Objects carry the model's class index (1..K-1); the runtime maps them to project classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from appliance.contract import CENTRE_SIZE_CHANNELS as SIZE_CHANNELS
from appliance.labels import Box, CellObject, Point
from appliance.metrics import box_ious

__all__ = ["SIZE_CHANNELS", "Peak", "box_nms", "decode_objects", "find_peaks", "scores"]

Peak = tuple[int, int, int, float]  # (y, x, class index 1..K-1, score)


def scores(logits: np.ndarray, n_classes: int) -> np.ndarray:
    """(K-1)×H×W centre probabilities: the sigmoid of the heatmap channels."""
    heat = np.asarray(logits[: n_classes - 1], np.float32)
    return 1.0 / (1.0 + np.exp(-np.clip(heat, -60.0, 60.0)))


def find_peaks(score: np.ndarray, threshold: float, radius: int, limit: int) -> list[Peak]:
    """Local maxima of the best-class score map (see the module doc), best first."""
    best = score.max(axis=0)
    cls = score.argmax(axis=0)
    size = 2 * max(0, int(radius)) + 1
    top = ndimage.maximum_filter(best, size=size, mode="constant", cval=0.0)
    ys, xs = np.nonzero((best >= threshold) & (best == top))
    values = best[ys, xs]
    order = np.argsort(-values, kind="stable")
    peaks: list[Peak] = []
    taken = np.zeros(best.shape, bool)  # a flat top (equal neighbours) gives one peak
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        if taken[y, x]:
            continue
        taken[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = True
        peaks.append((y, x, int(cls[y, x]) + 1, float(values[i])))
        if len(peaks) >= limit:
            break
    return peaks


def box_nms(boxes: np.ndarray, order_scores: np.ndarray, iou: float) -> list[int]:
    """Indices of the boxes (rows x0, y0, x1, y1) kept by greedy NMS at IoU > `iou`."""
    order = list(np.argsort(-order_scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            overlap = box_ious(boxes[i : i + 1], boxes[order])[0]
            order = [j for j, o in zip(order, overlap, strict=True) if o <= iou]
    return keep


def decode_objects(
    logits: np.ndarray, n_classes: int, decoding: Mapping[str, float | int | bool | str]
) -> list[CellObject]:
    """Points (or boxes, when `decoding["boxes"]`) from a detector's raw (K+1)×H×W output."""
    expected = n_classes - 1 + SIZE_CHANNELS
    if logits.ndim != 3 or logits.shape[0] != expected:
        raise ValueError(f"detector output {logits.shape} needs {expected} channels")
    h, w = logits.shape[1:]
    peaks = find_peaks(
        scores(logits, n_classes),
        float(decoding["threshold"]),
        int(decoding["nms_radius"]),
        int(decoding["max_objects"]),
    )
    if not decoding["boxes"]:
        return [Point(x + 0.5, y + 0.5, c) for y, x, c, _ in peaks]
    if not peaks:
        return []
    ys, xs = np.array([p[0] for p in peaks]), np.array([p[1] for p in peaks])
    size = np.exp(np.clip(logits[n_classes - 1 :, ys, xs], -4.0, 10.0))  # 2×N: width, height
    cx, cy = xs + 0.5, ys + 0.5
    rows = np.stack(
        [
            np.clip(cx - size[0] / 2, 0, w),
            np.clip(cy - size[1] / 2, 0, h),
            np.clip(cx + size[0] / 2, 0, w),
            np.clip(cy + size[1] / 2, 0, h),
        ],
        axis=1,
    )
    ok = (rows[:, 2] > rows[:, 0]) & (rows[:, 3] > rows[:, 1])
    index = np.nonzero(ok)[0]
    kept = box_nms(rows[index], np.array([peaks[i][3] for i in index]), float(decoding["box_iou"]))
    out: list[CellObject] = []
    for k in sorted(kept):
        x0, y0, x1, y1 = (float(v) for v in rows[index[k]])
        out.append(Box(x0, y0, x1, y1, peaks[index[k]][2]))
    return out
