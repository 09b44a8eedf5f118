"""Label agreement measures shared by model checks, benchmarks and annotator scores.

Objects are compared as instances, not as foreground: a model that merges two touching nuclei
into one blob has a high Dice and a poor instance F1, and the instance figure is the one an
annotator feels (every merged cell is fixed by hand).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "POINT_RADIUS",
    "InstanceMatch",
    "box_ious",
    "dice",
    "instance_f1",
    "match_boxes",
    "match_instances",
    "match_points",
]

# pixels: a tapped point counts as the truth cell's within this distance of it (a cell's
# radius at 40x, 0.25 µm/px; MIDOG scores mitotic figures at 7.5 µm, twice as lenient)
POINT_RADIUS = 15.0


def dice(truth: np.ndarray, guess: np.ndarray) -> float:
    """Dice of two foreground masks (anything > 0); two empty masks agree perfectly.

    Parameters
    ----------
    truth, guess : ndarray, shape (H, W), any integer or bool dtype

    >>> dice(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))
    0.6666666666666666
    """
    a, b = np.asarray(truth) > 0, np.asarray(guess) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


@dataclass(frozen=True)
class InstanceMatch:
    """Pairs of (truth id, guess id) matched at IoU above the threshold, with their IoUs."""

    pairs: list[tuple[int, int]]
    ious: list[float]
    n_truth: int
    n_guess: int

    @property
    def f1(self) -> float:
        """2·TP / (|truth| + |guess|); 1.0 when both are empty."""
        total = self.n_truth + self.n_guess
        return 1.0 if total == 0 else 2.0 * len(self.pairs) / total


def match_instances(truth: np.ndarray, guess: np.ndarray, threshold: float = 0.5) -> InstanceMatch:
    """Match instances of two instance maps by IoU > `threshold` (≥ 0.5).

    Above an IoU of 0.5 an object can overlap at most one object of the other map that much,
    so the matching is unique and needs no assignment solver. The IoU table is built from one
    `np.unique` over the overlapping pixel pairs, so it costs O(pixels), not O(objects²).

    Parameters
    ----------
    truth, guess : ndarray, shape (H, W), unsigned integer instance ids (0 = background)
    threshold : float in [0.5, 1)

    >>> a = np.array([[1, 1, 0, 2, 2]]); b = np.array([[3, 3, 0, 0, 4]])
    >>> m = match_instances(a, b); m.pairs, round(m.f1, 3)
    ([(1, 3)], 0.5)
    """
    if threshold < 0.5:
        raise ValueError("matching is unique only for IoU thresholds of 0.5 and above")
    t = np.asarray(truth).ravel().astype(np.int64)
    g = np.asarray(guess).ravel().astype(np.int64)
    if t.shape != g.shape:
        raise ValueError(f"instance maps differ in size: {truth.shape} vs {guess.shape}")
    t_ids, t_area = np.unique(t[t > 0], return_counts=True)
    g_ids, g_area = np.unique(g[g > 0], return_counts=True)
    both = (t > 0) & (g > 0)
    pairs_flat, inter = np.unique(t[both] * (int(g.max()) + 1) + g[both], return_counts=True)
    pt, pg = np.divmod(pairs_flat, int(g.max()) + 1)
    ta = t_area[np.searchsorted(t_ids, pt)]
    ga = g_area[np.searchsorted(g_ids, pg)]
    iou = inter / (ta + ga - inter)
    keep = iou > threshold
    return InstanceMatch(
        pairs=[(int(a), int(b)) for a, b in zip(pt[keep], pg[keep], strict=True)],
        ious=[float(x) for x in iou[keep]],
        n_truth=len(t_ids),
        n_guess=len(g_ids),
    )


def instance_f1(truth: np.ndarray, guess: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of instances matched at IoU > `threshold` (see `match_instances`)."""
    return match_instances(truth, guess, threshold).f1


def _assign(gain: np.ndarray, ok: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one pairs (row, column) maximising `gain` among the allowed cells `ok`."""
    if not ok.any():
        return []
    cost = np.where(ok, gain, -1e9)
    rows, cols = linear_sum_assignment(cost, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


def match_points(
    truth: np.ndarray, guess: np.ndarray, radius: float = POINT_RADIUS
) -> InstanceMatch:
    """Match point objects one-to-one within `radius` pixels (Hungarian, nearest first).

    Parameters
    ----------
    truth, guess : ndarray, shape (N, 2) and (M, 2), (x, y) coordinates
    radius : float
        Largest distance of a matched pair.

    Returns
    -------
    InstanceMatch
        `pairs` are row indices (truth, guess); `ious` hold 1 - distance / radius.

    >>> m = match_points(np.array([[0, 0], [10, 0]]), np.array([[1, 0], [30, 30]]), radius=3)
    >>> m.pairs, round(m.f1, 3)
    ([(0, 0)], 0.5)
    """
    t = np.asarray(truth, np.float64).reshape(-1, 2)
    g = np.asarray(guess, np.float64).reshape(-1, 2)
    d = np.hypot(t[:, None, 0] - g[None, :, 0], t[:, None, 1] - g[None, :, 1])
    pairs = _assign(-d, d <= radius)
    return InstanceMatch(pairs, [1.0 - d[i, j] / radius for i, j in pairs], len(t), len(g))


def box_ious(truth: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """IoU of every truth box with every guess box; boxes are rows (x0, y0, x1, y1).

    >>> box_ious(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])).round(3)
    array([[0.333, 0.   ]])
    """
    t = np.asarray(truth, np.float64).reshape(-1, 4)[:, None, :]
    g = np.asarray(guess, np.float64).reshape(-1, 4)[None, :, :]
    w = np.clip(np.minimum(t[..., 2], g[..., 2]) - np.maximum(t[..., 0], g[..., 0]), 0, None)
    h = np.clip(np.minimum(t[..., 3], g[..., 3]) - np.maximum(t[..., 1], g[..., 1]), 0, None)
    inter = w * h
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    union = area_t + area_g - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_boxes(truth: np.ndarray, guess: np.ndarray, threshold: float = 0.5) -> InstanceMatch:
    """Match box objects one-to-one at IoU > `threshold` (seed 000 scores detections at 0.5).

    >>> m = match_boxes(np.array([[0, 0, 4, 4]]), np.array([[0, 0, 4, 3], [0, 0, 1, 1]]))
    >>> m.pairs, m.ious
    ([(0, 0)], [0.75])
    """
    iou = box_ious(truth, guess)
    pairs = _assign(iou, iou > threshold)
    return InstanceMatch(pairs, [float(iou[i, j]) for i, j in pairs], *iou.shape)
