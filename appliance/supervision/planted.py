"""Planted errors (seed 002): a pre-label made from a known truth with recorded mistakes.

Seed 002 planted class flips, deleted cells, false cells and detector artefacts into the
pre-labels experts corrected, graded easy / medium / hard, and measured how many the experts
caught. Here the same kinds, plus the boundary errors a segmentation pre-label makes (shifted,
eroded, dilated outlines) and merged neighbours, are planted into a truth instance map, and each
planted error is recorded with the truth ids it concerns, so `scoring.planted_recall` can tell
later whether the annotator fixed it.

Levels grade how easy an error is to spot. Seed 002 graded by a classifier's score; without one
the size of what changes stands in for it: an easy error concerns a large cell or moves a
boundary far, a hard one a small cell or a boundary by a pixel or two. Boundary changes are
scaled by the cell's equivalent radius, so a level means the same on small and large cells.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from appliance import perturb
from appliance.errors import ApplianceError
from appliance.labels import Label

__all__ = [
    "BOUNDARY_KINDS",
    "DEFAULT_PLAN",
    "KINDS",
    "LEVELS",
    "PlantedError",
    "Planting",
    "check_plan",
    "errors_from_json",
    "parse_plan",
    "plant",
]

KINDS = ("deleted", "false", "class_flip", "shifted", "eroded", "dilated", "merged")
LEVELS = ("easy", "medium", "hard")
BOUNDARY_KINDS = ("shifted", "eroded", "dilated")
# fraction of the cell's equivalent radius a boundary error moves the outline, per level
_BOUNDARY_SCALE = {"easy": 0.6, "medium": 0.4, "hard": 0.25}
# which third of the cells (by area) an error that concerns a whole cell picks, per level
_SIZE_THIRD = {"easy": 2, "medium": 1, "hard": 0}


@dataclass(frozen=True)
class PlantedError:
    """One planted mistake: what kind, how hard, which truth cells and pre-label ids it concerns.

    `truth_ids` are ids in the truth map (none for a false cell); `prelabel_ids` are ids in the
    planted pre-label (none for a deleted cell). `detail` holds kind-specific facts (the true
    and planted class of a flip, the shift in pixels, the IoU the damaged outline keeps).
    """

    kind: str
    level: str
    truth_ids: tuple[int, ...]
    prelabel_ids: tuple[int, ...]
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["truth_ids"], d["prelabel_ids"] = list(self.truth_ids), list(self.prelabel_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlantedError:
        return cls(
            str(d["kind"]),
            str(d["level"]),
            tuple(int(i) for i in d["truth_ids"]),
            tuple(int(i) for i in d["prelabel_ids"]),
            dict(d.get("detail", {})),
        )


@dataclass(frozen=True)
class Planting:
    """The pre-label with its planted errors, and the record of each."""

    prelabel: Label
    errors: tuple[PlantedError, ...]

    def errors_json(self) -> str:
        return json.dumps([e.to_dict() for e in self.errors])


def errors_from_json(text: str | None) -> tuple[PlantedError, ...]:
    return tuple(PlantedError.from_dict(d) for d in json.loads(text or "[]"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def _by_size(areas: dict[int, int], candidates: list[int], level: str) -> list[int]:
    """Candidates in the level's third by area (largest third for easy), shuffled later."""
    ranked = sorted(candidates, key=lambda i: (areas[i], i))
    n = len(ranked)
    third = _SIZE_THIRD[level]
    part = ranked[third * n // 3 : (third + 1) * n // 3] or ranked
    return part


class _Planter:
    """Applies errors one at a time, never touching a truth cell twice."""

    def __init__(self, truth: Label, n_classes: int, rng: np.random.Generator) -> None:
        self.truth = truth
        self.n_classes = n_classes
        self.rng = rng
        self.instances = truth.instances.astype(np.uint32, copy=True)
        self.classes = {int(i): truth.class_of(i) for i in truth.ids()}
        ids, counts = np.unique(truth.instances, return_counts=True)
        self.areas = {int(i): int(c) for i, c in zip(ids, counts, strict=True) if i != 0}
        self.used: set[int] = set()
        self.next_id = int(truth.instances.max(initial=0)) + 1

    def pick(self, level: str, exclude: set[int] | None = None) -> int | None:
        free = [i for i in self.areas if i not in self.used and i not in (exclude or set())]
        if not free:
            return None
        part = _by_size(self.areas, free, level)
        return int(self.rng.choice(part))

    def radius(self, cid: int) -> float:
        return float(np.sqrt(self.areas[cid] / np.pi))

    def plant(self, kind: str, level: str) -> PlantedError | None:
        return getattr(self, f"_{kind}")(level)

    def _deleted(self, level: str) -> PlantedError | None:
        cid = self.pick(level)
        if cid is None:
            return None
        self.used.add(cid)
        self.instances[self.instances == cid] = 0
        self.classes.pop(cid, None)
        return PlantedError("deleted", level, (cid,), ())

    def _class_flip(self, level: str) -> PlantedError | None:
        if self.n_classes < 2:
            return None
        cid = self.pick(level)
        if cid is None:
            return None
        self.used.add(cid)
        true_class = self.classes[cid]
        self.classes = perturb.class_flip(self.classes, [cid], self.n_classes, self.rng)
        detail = {"true_class": true_class, "planted_class": self.classes[cid]}
        return PlantedError("class_flip", level, (cid,), (cid,), detail)

    def _false(self, level: str) -> PlantedError | None:
        """Copy a truth cell's shape (chosen by level) to a free background place."""
        cid = self.pick(level, exclude=set())
        if cid is None:
            return None
        mask = self.truth.instances == cid
        ys, xs = np.nonzero(mask)
        shape = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        h, w = self.instances.shape
        sh, sw = shape.shape
        if sh >= h or sw >= w:
            return None
        margin = 3
        blocked = cv2.dilate(
            (self.instances > 0).astype(np.uint8) | (self.truth.instances > 0).astype(np.uint8),
            np.ones((2 * margin + 1, 2 * margin + 1), np.uint8),
        )
        # top-left corners where the whole shape lands on free pixels: one erosion
        fits = cv2.erode(
            1 - blocked,
            shape.astype(np.uint8),
            anchor=(0, 0),
            borderType=cv2.BORDER_CONSTANT,
            borderValue=0,
        )[: h - sh + 1, : w - sw + 1]
        ys, xs = np.nonzero(fits)
        if ys.size:
            k = int(self.rng.integers(0, ys.size))
            y, x = int(ys[k]), int(xs[k])
            new = self.next_id
            self.next_id += 1
            self.instances[y : y + sh, x : x + sw][shape] = new
            self.classes[new] = int(self.rng.integers(1, self.n_classes + 1))
            return PlantedError("false", level, (), (new,), {"shape_of": cid})
        return None

    def _boundary(self, kind: str, level: str) -> PlantedError | None:
        cid = self.pick(level)
        if cid is None:
            return None
        self.used.add(cid)
        cell = self.instances == cid
        step = max(1, round(_BOUNDARY_SCALE[level] * self.radius(cid)))
        detail: dict[str, Any] = {"pixels": step}
        free = (self.instances == 0) | cell
        if kind == "shifted":
            angle = float(self.rng.uniform(0, 2 * np.pi))
            dy, dx = round(step * np.sin(angle)), round(step * np.cos(angle))
            m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
            h, w = cell.shape
            moved = cv2.warpAffine(cell.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
            new = moved & free
            detail.update(dy=dy, dx=dx)
        elif kind == "eroded":
            new = np.zeros_like(cell)
            while step > 0 and not new.any():  # a thin cell takes a smaller erosion
                k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * step + 1, 2 * step + 1))
                new = cv2.erode(cell.astype(np.uint8), k) > 0
                step -= 0 if new.any() else 1
            if not new.any():
                return None
            detail["pixels"] = step
        else:
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * step + 1, 2 * step + 1))
            new = (cv2.dilate(cell.astype(np.uint8), k) > 0) & free
        self.instances[cell] = 0
        self.instances[new] = cid
        detail["iou"] = round(_iou(new, self.truth.instances == cid), 4)
        return PlantedError(kind, level, (cid,), (cid,), detail)

    def _shifted(self, level: str) -> PlantedError | None:
        return self._boundary("shifted", level)

    def _eroded(self, level: str) -> PlantedError | None:
        return self._boundary("eroded", level)

    def _dilated(self, level: str) -> PlantedError | None:
        return self._boundary("dilated", level)

    def _merged(self, level: str) -> PlantedError | None:
        gap = {"easy": 2, "medium": 3, "hard": 4}[level]
        pairs = [
            (a, b)
            for a, b in perturb.neighbour_pairs(self.instances, gap)
            if a in self.areas and b in self.areas and not {a, b} & self.used
        ]
        if not pairs:
            return None
        if level == "easy":  # the most obvious merge joins two large cells
            pairs.sort(key=lambda p: -min(self.areas[p[0]], self.areas[p[1]]))
            pairs = pairs[: max(1, len(pairs) // 3)]
        a, b = pairs[int(self.rng.integers(0, len(pairs)))]
        self.used.update((a, b))
        self.instances = perturb.merge(self.instances, [(a, b)], gap)
        self.classes.pop(b, None)
        return PlantedError("merged", level, (a, b), (a,), {"gap": gap})


def check_plan(plan: dict[str, int], level: str) -> None:
    """Refuse an unknown level or error kind in one line."""
    if level not in LEVELS:
        raise ApplianceError(f"unknown error level {level!r} (one of {', '.join(LEVELS)})")
    unknown = set(plan) - set(KINDS)
    if unknown:
        raise ApplianceError(
            f"unknown planted error kind {sorted(unknown)[0]!r} (one of {', '.join(KINDS)})"
        )


def plant(
    truth: Label,
    plan: dict[str, int],
    level: str,
    n_classes: int,
    rng: np.random.Generator,
) -> Planting:
    """Plant `plan[kind]` errors of each kind at `level` into `truth`; record each one.

    Kinds that cannot be planted (a class flip in a one-class project, no neighbours to merge,
    no free space for a false cell) are skipped, so the record holds exactly what was done.
    A truth of points and boxes only gets its errors on those: `planted_objects.plant_objects`.
    """
    check_plan(plan, level)
    planter = _Planter(truth, n_classes, rng)
    errors: list[PlantedError] = []
    # merges first (they need intact neighbours), deletions last (they free space)
    for kind in ("merged", "class_flip", *BOUNDARY_KINDS, "false", "deleted"):
        for _ in range(int(plan.get(kind, 0))):
            err = planter.plant(kind, level)
            if err is not None:
                errors.append(err)
    present = set(np.unique(planter.instances).tolist()) - {0}
    classes = {i: c for i, c in planter.classes.items() if i in present}
    return Planting(Label(planter.instances, classes), tuple(errors))


DEFAULT_PLAN = {"deleted": 1, "false": 1, "class_flip": 1, "shifted": 1, "merged": 1}


def parse_plan(text: str) -> dict[str, int]:
    """`deleted=1,false=1,merged=1` → {kind: count}."""
    plan: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, count = part.partition("=")
        kind = kind.strip().replace("-", "_")
        if kind not in KINDS or not count.strip().isdigit():
            raise ApplianceError(
                f"bad planted error {part!r}: expected KIND=COUNT with KIND one of "
                f"{', '.join(KINDS)}"
            )
        plan[kind] = int(count)
    return plan
