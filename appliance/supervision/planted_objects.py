"""Planted errors on point and box truth (seed 002 on a detector's pre-label).

Where the pre-label is the cell detector's points and boxes, a planted control's pre-label is
its point/box truth with recorded mistakes, as `planted.plant` does for masks: a cell left
out (`deleted`), a cell that is not there (`false`, a copy of a truth mark's size at a free
place), a wrong class (`class_flip`) and a mark moved off its cell (`shifted`). Merges and
outline errors have no meaning for a point and are skipped, as any kind that cannot be
planted is. Each error records the index of the truth object (`truth_ids`) and of the
pre-label object (`prelabel_ids`) it concerns, with `detail["on"] = "objects"`.

Levels: an easy error concerns a large box (the largest third by area; points have no size,
so any point), a shifted point leaves the matching radius by more when easy (2×, 1.6×, 1.2×
`metrics.POINT_RADIUS`), a shifted box moves by a share of its shorter side (0.6, 0.4, 0.25, as
boundary errors move outlines). Caught (`object_caught`): the truth mark is matched again
(deleted; a shifted point), matched with its true class (class_flip), matched at least halfway
back from the planted IoU to a perfect one (a shifted box), or no saved mark of its kind matches
the false one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance import perturb
from appliance.labels import Box, CellObject, Label, Point
from appliance.metrics import POINT_RADIUS, box_ious, match_boxes, match_points
from appliance.supervision.planted import (
    _BOUNDARY_SCALE,
    _SIZE_THIRD,
    PlantedError,
    Planting,
    check_plan,
    plant,
)

__all__ = [
    "OBJECT_KINDS",
    "is_object_error",
    "object_caught",
    "object_partners",
    "plant_label",
    "plant_objects",
]

OBJECT_KINDS = ("deleted", "false", "class_flip", "shifted")
_POINT_SHIFT = {"easy": 2.0, "medium": 1.6, "hard": 1.2}  # × POINT_RADIUS
_TRIES = 200  # random places tried for a false mark


def is_object_error(error: PlantedError) -> bool:
    return error.detail.get("on") == "objects"


def _area(obj: CellObject) -> float:
    x0, y0, x1, y1 = obj.bounds()
    return (x1 - x0) * (y1 - y0)


def _moved(obj: CellObject, dx: float, dy: float, shape: tuple[int, int]) -> CellObject:
    """`obj` moved by (dx, dy), kept on the image."""
    h, w = shape
    x0, y0, x1, y1 = obj.bounds()
    dx = float(np.clip(dx, -x0, w - x1 - (1e-3 if isinstance(obj, Point) else 0)))
    dy = float(np.clip(dy, -y0, h - y1 - (1e-3 if isinstance(obj, Point) else 0)))
    return obj.shifted(dx, dy)


class _ObjectPlanter:
    """Errors one at a time on a list of the truth's marks, never touching a mark twice."""

    def __init__(self, truth: Label, n_classes: int, rng: np.random.Generator) -> None:
        self.truth, self.n_classes, self.rng = truth, n_classes, rng
        self.slots: list[CellObject | None] = list(truth.objects)
        self.used: set[int] = set()

    def pick(self, level: str) -> int | None:
        free = [k for k in range(len(self.truth.objects)) if k not in self.used]
        if not free:
            return None
        ranked = sorted(free, key=lambda k: (_area(self.truth.objects[k]), k))
        n, third = len(ranked), _SIZE_THIRD[level]
        part = ranked[third * n // 3 : (third + 1) * n // 3] or ranked
        k = int(self.rng.choice(part))
        self.used.add(k)
        return k

    def plant(self, kind: str, level: str) -> tuple[str, int | None, int, dict[str, Any]] | None:
        """(kind, truth index, slot of the pre-label mark, detail) of one planted error."""
        if kind == "false":
            return self._false(level)
        if kind == "class_flip" and self.n_classes < 2:
            return None
        k = self.pick(level)
        if k is None:
            return None
        obj = self.truth.objects[k]
        if kind == "deleted":
            self.slots[k] = None
            return kind, k, -1, {}
        if kind == "class_flip":
            flipped = perturb.class_flip({1: obj.class_id}, [1], self.n_classes, self.rng)[1]
            self.slots[k] = obj.with_class(flipped)
            return kind, k, k, {"true_class": obj.class_id, "planted_class": flipped}
        angle = float(self.rng.uniform(0, 2 * np.pi))
        if isinstance(obj, Point):
            step = _POINT_SHIFT[level] * POINT_RADIUS
        else:
            step = _BOUNDARY_SCALE[level] * min(obj.x1 - obj.x0, obj.y1 - obj.y0)
        moved = _moved(obj, step * np.cos(angle), step * np.sin(angle), self.truth.shape)
        self.slots[k] = moved
        detail: dict[str, Any] = {"pixels": round(step, 2)}
        if isinstance(obj, Box):
            ious = box_ious(np.array([obj.bounds()]), np.array([moved.bounds()]))
            detail["iou"] = round(float(ious[0, 0]), 4)
        return kind, k, k, detail

    def _false(self, level: str) -> tuple[str, int | None, int, dict[str, Any]] | None:
        """A mark of a truth mark's size (chosen by level) where no mark is near."""
        if not self.truth.objects:
            return None
        ranked = sorted(self.truth.objects, key=_area)
        third = _SIZE_THIRD[level]
        n = len(ranked)
        like = (ranked[third * n // 3 : (third + 1) * n // 3] or ranked)[0]
        x0, y0, x1, y1 = like.bounds()
        h, w = self.truth.shape
        taken = [o for o in (*self.truth.objects, *self.slots) if o is not None]
        centres = np.array([_centre(o) for o in taken])
        for _ in range(_TRIES):
            x = float(self.rng.uniform(0, w - (x1 - x0) - 1e-3))
            y = float(self.rng.uniform(0, h - (y1 - y0) - 1e-3))
            new: CellObject = like.shifted(x - x0, y - y0)
            if np.min(np.hypot(*(centres - _centre(new)).T)) > 2 * POINT_RADIUS:
                new = new.with_class(int(self.rng.integers(1, self.n_classes + 1)))
                self.slots.append(new)
                return "false", None, len(self.slots) - 1, {}
        return None


def _centre(obj: CellObject) -> tuple[float, float]:
    return (obj.x, obj.y) if isinstance(obj, Point) else obj.centre


def plant_objects(
    truth: Label, plan: dict[str, int], level: str, n_classes: int, rng: np.random.Generator
) -> Planting:
    """Plant `plan[kind]` errors of each object kind at `level` into the point/box `truth`
    (`plant_label` sends such a truth here); record each one."""
    check_plan(plan, level)
    planter = _ObjectPlanter(truth, n_classes, rng)
    done = []
    for kind in ("class_flip", "shifted", "false", "deleted"):
        for _ in range(int(plan.get(kind, 0))):
            found = planter.plant(kind, level)
            if found is not None:
                done.append(found)
    index: dict[int, int] = {}
    objects: list[CellObject] = []
    for slot, obj in enumerate(planter.slots):
        if obj is not None:
            index[slot] = len(objects)
            objects.append(obj)
    errors = tuple(
        PlantedError(
            kind,
            level,
            () if k is None else (k,),
            () if slot < 0 else (index[slot],),
            {"on": "objects", **detail},
        )
        for kind, k, slot, detail in done
    )
    empty = np.zeros(truth.shape, np.uint32)
    return Planting(Label(empty, {}, tuple(objects)), errors)


def plant_label(
    truth: Label, plan: dict[str, int], level: str, n_classes: int, rng: np.random.Generator
) -> Planting:
    """Planted errors on a truth's masks (`planted.plant`), or on its points and boxes when
    it has no masks."""
    if truth.objects and not truth.ids().size:
        return plant_objects(truth, plan, level, n_classes, rng)
    return plant(truth, plan, level, n_classes, rng)


def object_partners(truth: Label, label: Label) -> dict[int, tuple[int, float]]:
    """Truth object index → (saved object index, IoU for boxes, 1.0 for points) of the
    one-to-one matching scoring uses (points within a distance, boxes at IoU > 0.5)."""
    out: dict[int, tuple[int, float]] = {}
    for kind, matcher, width in ((Point, match_points, 2), (Box, match_boxes, 4)):
        t = [k for k, o in enumerate(truth.objects) if isinstance(o, kind)]
        a = [k for k, o in enumerate(label.objects) if isinstance(o, kind)]
        if not t or not a:
            continue
        m = matcher(
            np.array([truth.objects[k].bounds()[:width] for k in t]),
            np.array([label.objects[k].bounds()[:width] for k in a]),
        )
        for (i, j), iou in zip(m.pairs, m.ious, strict=True):
            out[t[i]] = (a[j], float(iou) if kind is Box else 1.0)
    return out


def object_caught(
    error: PlantedError,
    partner: dict[int, tuple[int, float]],
    truth: Label,
    label: Label,
    prelabel: tuple[CellObject, ...],
) -> bool:
    """Whether the saved `label` fixed one planted point/box error (module docstring)."""
    if error.kind == "false":
        false = prelabel[error.prelabel_ids[0]]
        same = [o for o in label.objects if type(o) is type(false)]
        if not same:
            return True
        width = 2 if isinstance(false, Point) else 4
        matcher = match_points if isinstance(false, Point) else match_boxes
        found = matcher(
            np.array([false.bounds()[:width]]), np.array([o.bounds()[:width] for o in same])
        )
        return not found.pairs
    k = error.truth_ids[0]
    if k not in partner:
        return False
    j, iou = partner[k]
    if error.kind == "class_flip":
        return label.objects[j].class_id == truth.objects[k].class_id
    if error.kind == "shifted" and "iou" in error.detail:
        planted_iou = float(error.detail["iou"])
        return iou >= planted_iou + 0.5 * (1.0 - planted_iou)
    return True  # deleted, or a shifted point: matched again
