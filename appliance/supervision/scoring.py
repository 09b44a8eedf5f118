"""Scores of one saved label against a control's truth (seeds 002 and 004).

Objects are matched one-to-one at IoU > 0.5 (seed 002's criterion) by
`appliance.metrics.match_instances`, the matching training and benchmarks use too. From the
matching come instance F1 and class accuracy (over matched pairs); Dice compares foreground
pixels; boundary F1 compares
outline pixels within a tolerance of a few pixels (seed 004 judges outlines drawn with a pen,
which no one places to the pixel); planted-error recall asks, per planted error, whether the
annotator fixed it (on points and boxes: `planted_objects.object_caught`). Point and box
objects (seeds 002 and 000) are matched kind by kind
(`appliance.metrics.match_points` within a distance, `match_boxes` at IoU > 0.5) and counted in
the same instance F1 and class accuracy as the masks.

Speed: one save of a 2048² label with 500 instances is scored in tens of milliseconds
(`bench/scoring.py`). Both maps are cut into joint row-major runs once (`appliance.metrics.Overlap`)
for the matching and Dice. Outlines are found by comparing shifted views and widened with one
OpenCV dilation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.labels import Box, CellObject, Label, Point
from appliance.metrics import InstanceMatch, Overlap, match_boxes, match_points
from appliance.supervision.planted import BOUNDARY_KINDS, PlantedError
from appliance.supervision.planted_objects import is_object_error, object_caught, object_partners

__all__ = [
    "BOUNDARY_TOLERANCE",
    "ControlScore",
    "boundary_f1",
    "outline",
    "planted_caught",
    "score",
]

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
BOUNDARY_TOLERANCE = 2  # pixels


@dataclass(frozen=True)
class ControlScore:
    """Everything one save of a control tells about its annotator."""

    n_truth: int
    n_label: int
    matched: int
    dice: float
    instance_f1: float
    boundary_f1: float
    class_correct: int
    planted: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (caught, n)
    seconds: float = 0.0

    @property
    def class_accuracy(self) -> float | None:
        return self.class_correct / self.matched if self.matched else None

    def planted_recall(self) -> dict[str, float]:
        return {k: c / n for k, (c, n) in self.planted.items() if n}


def outline(instances: np.ndarray) -> np.ndarray:
    """Cell pixels with a 4-neighbour of another id (background or another cell).

    The image border is not an outline. With ids below 65536 two OpenCV passes on uint16
    (the neighbourhood's max differs from its min) replace four shifted comparisons.
    """
    if int(instances.max(initial=0)) < 1 << 16:
        x = instances.astype(np.uint16)
        return (cv2.dilate(x, _CROSS) != cv2.erode(x, _CROSS)) & (x != 0)
    edge = np.zeros(instances.shape, bool)
    diff_x = instances[:, 1:] != instances[:, :-1]
    diff_y = instances[1:, :] != instances[:-1, :]
    edge[:, 1:] |= diff_x
    edge[:, :-1] |= diff_x
    edge[1:, :] |= diff_y
    edge[:-1, :] |= diff_y
    return edge & (instances != 0)


def boundary_f1(truth: np.ndarray, label: np.ndarray, tolerance: int = BOUNDARY_TOLERANCE) -> float:
    """F1 of outline pixels, each side counted as found within `tolerance` pixels of the other."""
    bt, bl = outline(truth), outline(label)
    nt, nl = int(np.count_nonzero(bt)), int(np.count_nonzero(bl))
    if nt == 0 and nl == 0:
        return 1.0
    if nt == 0 or nl == 0:
        return 0.0
    size = 2 * tolerance + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    near_t = cv2.dilate(bt.view(np.uint8), kernel).view(bool)
    near_l = cv2.dilate(bl.view(np.uint8), kernel).view(bool)
    precision = int(np.count_nonzero(bl & near_t)) / nl
    recall = int(np.count_nonzero(bt & near_l)) / nt
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def planted_caught(
    error: PlantedError,
    matching: InstanceMatch,
    truth: Label,
    label: Label,
    prelabel: np.ndarray | None,
) -> bool:
    """Whether the saved label fixed one planted error.

    - deleted: the truth cell is drawn again (matched at IoU > 0.5);
    - false: at most half of the false cell's pixels are still foreground;
    - class_flip: the truth cell is matched and has its true class again;
    - shifted / eroded / dilated: the matched outline is at least halfway back from the
      planted IoU to a perfect one;
    - merged: both truth cells are matched, each to its own instance.
    """
    partner = {t: (a, iou) for (t, a), iou in zip(matching.pairs, matching.ious, strict=True)}
    if error.kind == "deleted":
        return error.truth_ids[0] in partner
    if error.kind == "false":
        if prelabel is None:
            raise ApplianceError("scoring a false-cell error needs the planted pre-label")
        region = prelabel == error.prelabel_ids[0]
        area = int(np.count_nonzero(region))
        return area == 0 or bool(np.count_nonzero(label.instances[region]) <= 0.5 * area)
    if error.kind == "class_flip":
        tid = error.truth_ids[0]
        if tid not in partner:
            return False
        return label.class_of(partner[tid][0]) == truth.class_of(tid)
    if error.kind in BOUNDARY_KINDS:
        tid = error.truth_ids[0]
        if tid not in partner:
            return False
        planted_iou = float(error.detail.get("iou", 0.0))
        return partner[tid][1] >= planted_iou + 0.5 * (1.0 - planted_iou)
    if error.kind == "merged":
        return all(t in partner for t in error.truth_ids)
    raise ApplianceError(f"unknown planted error kind {error.kind!r}")


def score(
    truth: Label,
    label: Label,
    errors: tuple[PlantedError, ...] = (),
    prelabel: np.ndarray | None = None,
    seconds: float = 0.0,
    prelabel_objects: tuple[CellObject, ...] = (),
) -> ControlScore:
    """All scores of one saved label against the control's truth; `prelabel` and
    `prelabel_objects` are the planted pre-label's map and marks (false cells are judged on
    them)."""
    ov = Overlap.of(truth.instances, label.instances)
    matching = ov.match()
    n_t, n_l, tp = matching.n_truth, matching.n_guess, len(matching.pairs)
    correct = sum(1 for t, a in matching.pairs if truth.class_of(t) == label.class_of(a))
    obj_t, obj_l, obj_tp, obj_correct = _object_counts(truth, label)
    n_t, n_l, tp, correct = n_t + obj_t, n_l + obj_l, tp + obj_tp, correct + obj_correct
    planted: dict[str, list[int]] = {}
    partners = object_partners(truth, label) if any(map(is_object_error, errors)) else {}
    for err in errors:
        entry = planted.setdefault(err.kind, [0, 0])
        entry[1] += 1
        if is_object_error(err):
            entry[0] += int(object_caught(err, partners, truth, label, prelabel_objects))
        else:
            entry[0] += int(planted_caught(err, matching, truth, label, prelabel))
    return ControlScore(
        n_truth=int(n_t),
        n_label=int(n_l),
        matched=tp,
        dice=ov.dice,
        instance_f1=2.0 * tp / (n_t + n_l) if n_t + n_l else 1.0,  # masks, points and boxes
        boundary_f1=boundary_f1(truth.instances, label.instances),
        class_correct=correct,
        planted={k: (c, n) for k, (c, n) in planted.items()},
        seconds=float(seconds),
    )


def _object_counts(truth: Label, label: Label) -> tuple[int, int, int, int]:
    """(truth objects, label objects, matched pairs, pairs of the same class) over points
    matched by distance and boxes matched by IoU."""
    n_t = n_l = tp = correct = 0
    for kind, matcher in ((Point, match_points), (Box, match_boxes)):
        t = [o for o in truth.objects if isinstance(o, kind)]
        a = [o for o in label.objects if isinstance(o, kind)]
        if not t and not a:
            continue
        width = 2 if kind is Point else 4
        m = matcher(
            np.array([o.bounds()[:width] for o in t]), np.array([o.bounds()[:width] for o in a])
        )
        n_t, n_l, tp = n_t + len(t), n_l + len(a), tp + len(m.pairs)
        correct += sum(1 for i, j in m.pairs if t[i].class_id == a[j].class_id)
    return n_t, n_l, tp, correct
