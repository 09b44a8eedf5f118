"""Label agreement: the one Dice and the one instance matching of the whole code base.

Training (validation and the shipped model's metrics), decoding choice, pre-labeler choice
(seed 004 eq. 4), annotator scores on control items, VotesLoss and the benchmarks all compare
labels through this module, so a number printed by a benchmark, a score shown to the lab and
a metric in a model bundle mean the same thing.

Objects are compared as instances, not as foreground: a model that merges two touching nuclei
into one blob has a high Dice and a poor instance F1, and the instance figure is the one an
annotator feels (every merged cell is fixed by hand). Two instances match when their IoU is
above 0.5 (DESIGN.md, seed 002): above 0.5 an object can overlap at most one object of the
other map that much, so the matching is one-to-one without an assignment solver, and an IoU of
exactly 0.5 is no match. Lower thresholds are refused: below 0.5 the pairs are no longer unique
and each solver (greedy, Hungarian) would give its own answer. Point and box objects have no
pixels: `match_points` pairs them within a distance and `match_boxes` at box IoU > 0.5, both
one-to-one by the Hungarian method.

Speed: both maps are cut into joint row-major runs in one pass (`Overlap`); areas,
intersections and Dice are then sums over some 10^4 runs instead of 4·10^6 pixels for a 2048²
label with 500 cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from appliance.errors import ApplianceError

__all__ = [
    "IOU_THRESHOLD",
    "POINT_RADIUS",
    "InstanceCounts",
    "InstanceMatch",
    "Overlap",
    "box_ious",
    "dice",
    "instance_f1",
    "match_boxes",
    "match_instances",
    "match_points",
    "pooled_dice",
    "pooled_f1",
]

IOU_THRESHOLD = 0.5
# pixels: a tapped point counts as the truth cell's within this distance of it (a cell's
# radius at 40x, 0.25 µm/px; MIDOG scores mitotic figures at 7.5 µm, twice as lenient)
POINT_RADIUS = 15.0
_LUT_IDS = 1 << 22  # ids (and id pairs) up to which counting uses tables instead of sorting


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


def _changes(flat: np.ndarray) -> np.ndarray:
    return np.flatnonzero(flat[1:] != flat[:-1]) + 1


def _areas(values: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted non-zero ids, their areas, dense index 0..n-1 per run; -1 for background)."""
    top = int(values.max(initial=0))
    if top < _LUT_IDS:  # the usual case: a lookup table instead of a sort
        area_by_id = np.bincount(values, weights=length, minlength=top + 1)
        present = np.bincount(values, minlength=top + 1) > 0
        present[0] = False
        ids = np.flatnonzero(present).astype(np.uint32)
        lut = np.full(top + 1, -1, np.int64)
        lut[ids] = np.arange(ids.size)
        return ids, area_by_id[ids], lut[values]
    ids, inv = np.unique(values, return_inverse=True)
    area = np.bincount(inv, weights=length, minlength=ids.size)
    if ids.size and ids[0] == 0:
        return ids[1:], area[1:], inv - 1
    return ids, area, inv


def _pair_counts(keys: np.ndarray, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, summed weights) for keys in 0..n-1."""
    if n <= _LUT_IDS:
        counts = np.bincount(keys, weights=weights, minlength=n)
        present = np.flatnonzero(np.bincount(keys, minlength=n))
        return present, counts[present]
    distinct, inv = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inv, weights=weights, minlength=distinct.size)


@dataclass(frozen=True)
class Overlap:
    """Joint runs of two instance maps: per run the truth id, the guess id and the length.

    Built once per pair of maps (`Overlap.of`); Dice and the matching are then cheap, so a
    caller that needs both (annotator scores) pays for the pixels once.
    """

    truth: np.ndarray
    guess: np.ndarray
    length: np.ndarray

    @classmethod
    def of(cls, truth: np.ndarray, guess: np.ndarray) -> Overlap:
        """Cut both row-major maps (non-negative integer or bool, same shape) where either
        changes."""
        truth, guess = np.asarray(truth), np.asarray(guess)
        if truth.shape != guess.shape:
            raise ApplianceError(f"label shape {guess.shape} does not match truth {truth.shape}")
        tf = np.ascontiguousarray(truth, dtype=np.uint32).ravel()
        gf = np.ascontiguousarray(guess, dtype=np.uint32).ravel()
        if tf.size == 0:
            empty = np.zeros(0, np.uint32)
            return cls(empty, empty, np.zeros(0, np.int64))
        cuts = np.sort(np.concatenate(([0], _changes(tf), _changes(gf))), kind="stable")
        starts = cuts[np.concatenate(([True], cuts[1:] != cuts[:-1]))]
        length = np.diff(np.append(starts, tf.size))
        return cls(tf[starts], gf[starts], length)

    def foreground(self) -> tuple[int, int]:
        """(pixels foreground in both, foreground pixels of truth plus those of guess)."""
        t, g = self.truth != 0, self.guess != 0
        return int(self.length[t & g].sum()), int(self.length[t].sum() + self.length[g].sum())

    @property
    def dice(self) -> float:
        """Foreground Dice of the two maps (see `dice`)."""
        return _dice(*self.foreground())

    def match(self, threshold: float = IOU_THRESHOLD) -> InstanceMatch:
        """Instances paired one-to-one at IoU > `threshold` (0.5 or more, see the module)."""
        if threshold < IOU_THRESHOLD:
            raise ValueError(
                f"instances match at IoU > {IOU_THRESHOLD} or a stricter threshold, "
                f"got {threshold}: below it a match is no longer unique"
            )
        t_ids, t_area, t_idx = _areas(self.truth, self.length)
        g_ids, g_area, g_idx = _areas(self.guess, self.length)
        both = (t_idx >= 0) & (g_idx >= 0)
        n_g = max(g_ids.size, 1)
        keys, inter = _pair_counts(
            t_idx[both] * n_g + g_idx[both], self.length[both], max(t_ids.size, 1) * n_g
        )
        ti, gi = np.divmod(keys, n_g)
        iou = inter / (t_area[ti] + g_area[gi] - inter)
        keep = iou > threshold
        return InstanceMatch(
            pairs=[(int(a), int(b)) for a, b in zip(t_ids[ti[keep]], g_ids[gi[keep]], strict=True)],
            ious=[float(x) for x in iou[keep]],
            n_truth=int(t_ids.size),
            n_guess=int(g_ids.size),
        )


def _dice(inter: int, total: int) -> float:
    return 1.0 if total == 0 else 2.0 * inter / total


def pooled_dice(truths: Sequence[np.ndarray], guesses: Sequence[np.ndarray]) -> float:
    """Foreground Dice pooled over a set of images (seed 003's "over the entire test set"):
    the pixels of all images counted together, so large images weigh more."""
    inter = total = 0
    for truth, guess in zip(truths, guesses, strict=True):
        i, n = Overlap.of(truth, guess).foreground()
        inter, total = inter + i, total + n
    return _dice(inter, total)


def dice(truth: np.ndarray, guess: np.ndarray) -> float:
    """Dice of two foreground masks (anything > 0); two empty masks agree perfectly.

    Parameters
    ----------
    truth, guess : ndarray, shape (H, W), non-negative integer or bool

    >>> dice(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))
    0.6666666666666666
    """
    return pooled_dice([truth], [guess])


def match_instances(
    truth: np.ndarray, guess: np.ndarray, threshold: float = IOU_THRESHOLD
) -> InstanceMatch:
    """Match instances of two instance maps by IoU > `threshold` (≥ 0.5).

    Parameters
    ----------
    truth, guess : ndarray, shape (H, W), unsigned integer instance ids (0 = background)
    threshold : float in [0.5, 1)

    >>> a = np.array([[1, 1, 0, 2, 2]]); b = np.array([[3, 3, 0, 0, 4]])
    >>> m = match_instances(a, b); m.pairs, round(m.f1, 3)
    ([(1, 3)], 0.5)
    """
    return Overlap.of(truth, guess).match(threshold)


def instance_f1(truth: np.ndarray, guess: np.ndarray, threshold: float = IOU_THRESHOLD) -> float:
    """F1 of instances matched at IoU > `threshold` (see `match_instances`)."""
    return match_instances(truth, guess, threshold).f1


@dataclass
class InstanceCounts:
    """True positives, false positives and false negatives, pooled over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, truth: np.ndarray, guess: np.ndarray, threshold: float = IOU_THRESHOLD) -> None:
        m = match_instances(truth, guess, threshold)
        self.tp += len(m.pairs)
        self.fp += m.n_guess - len(m.pairs)
        self.fn += m.n_truth - len(m.pairs)

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 1.0 if denom == 0 else 2 * self.tp / denom


def pooled_f1(
    truths: Sequence[np.ndarray], guesses: Sequence[np.ndarray], threshold: float = IOU_THRESHOLD
) -> float:
    """Instance F1 pooled over images (a match needs IoU > `threshold`)."""
    counts = InstanceCounts()
    for truth, guess in zip(truths, guesses, strict=True):
        counts.add(truth, guess, threshold)
    return counts.f1


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


def match_boxes(
    truth: np.ndarray, guess: np.ndarray, threshold: float = IOU_THRESHOLD
) -> InstanceMatch:
    """Match box objects one-to-one at IoU > `threshold` (seed 000 scores detections at 0.5).

    >>> m = match_boxes(np.array([[0, 0, 4, 4]]), np.array([[0, 0, 4, 3], [0, 0, 1, 1]]))
    >>> m.pairs, m.ious
    ([(0, 0)], [0.75])
    """
    iou = box_ious(truth, guess)
    pairs = _assign(iou, iou > threshold)
    return InstanceMatch(pairs, [float(iou[i, j]) for i, j in pairs], *iou.shape)
