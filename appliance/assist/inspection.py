"""Label inspection (seed 004 sec. 3.6.1, eq. 5): metrics map a label to [0, 1].

The score (gamma in seed 004) is the weighted mean of the metrics (g_j) that apply (one without
data, say the area range of a class with too few labeled examples or the model check without a
model, is left out rather than counted as perfect). Below the warning threshold (gamma_0) the
report lists warnings, each naming the instances concerned with their boxes, so the UI can
point at them instead of saying "something is off".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as connected

from appliance.assist.postprocess import instance_boxes
from appliance.assist.prelabel import dice
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.settings import INSPECTION
from appliance.store import Project
from appliance.typed import from_json, problem

__all__ = [
    "AREA_MARGIN",
    "AREA_QUANTILES",
    "METRICS",
    "MIN_EXAMPLES",
    "OLD_KEYS",
    "SETTING_KEY",
    "InspectionSettings",
    "LabelWarning",
    "ObjectRef",
    "Report",
    "area",
    "fragments",
    "holes",
    "inspect",
    "learn_area_ranges",
    "load_settings",
    "model_agreement",
    "segments",
]

SETTING_KEY = INSPECTION.key
METRICS = ("segments", "holes", "fragments", "area", "model")
# Areas of a class are plausible between these quantiles of the labeled examples, widened by
# MARGIN either way; fewer than MIN_EXAMPLES examples give no range at all.
AREA_QUANTILES = (0.01, 0.99)
AREA_MARGIN = 1.5
MIN_EXAMPLES = 10
OLD_KEYS = {"gamma0": "warning_threshold"}  # setting keys renamed since; still read


@dataclass(frozen=True)
class ObjectRef:
    """One instance a warning is about; `bbox` is (y0, x0, y1, x1), ends exclusive."""

    id: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class LabelWarning:
    """Why a metric is unhappy, and which instances (id 0: an object only the model found)."""

    metric: str
    message: str
    objects: tuple[ObjectRef, ...] = ()


@dataclass
class InspectionSettings:
    """Expert priors (per project, setting `inspection`)."""

    min_segments: int = 1
    max_segments: int = 10_000
    min_fragment_area: int = 10
    warning_threshold: float = 0.8  # gamma_0 in seed 004: warn when the score is below
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 1.0))
    # class id -> (low, high) plausible area in pixels; learned by `learn_area_ranges`
    area_ranges: dict[int, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InspectionSettings:
        """From the stored setting; weights not given keep their default of 1.

        Projects written before the rename store the threshold as `gamma0`; it is read as
        `warning_threshold`.
        """
        what = "inspection setting is invalid"
        data = {OLD_KEYS.get(k, k): v for k, v in data.items()}
        s = from_json(cls, data, what, skip=("weights", "area_ranges"))
        weights = data.get("weights", {})
        if why := problem(weights, dict[str, float]):
            raise ApplianceError(f"{what}: weights {why}")
        s.weights.update({k: float(v) for k, v in weights.items()})
        ranges = data.get("area_ranges", {})
        if why := problem(ranges, dict[str, list[float]]):
            raise ApplianceError(f"{what}: area_ranges {why}")
        for key, bounds in ranges.items():  # JSON keys are strings: class ids
            if not key.isdigit() or len(bounds) != 2:
                raise ApplianceError(
                    f"{what}: area_ranges needs class id: [low, high], got {key!r}"
                )
            s.area_ranges[int(key)] = (float(bounds[0]), float(bounds[1]))
        return s

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under `SETTING_KEY`."""
        return {
            "min_segments": self.min_segments,
            "max_segments": self.max_segments,
            "min_fragment_area": self.min_fragment_area,
            "warning_threshold": self.warning_threshold,
            "weights": dict(self.weights),
            "area_ranges": {str(k): list(v) for k, v in self.area_ranges.items()},
        }


@dataclass
class Report:
    """Result of `inspect`: the score, the metrics that applied, and warnings below threshold."""

    score: float  # gamma in seed 004 eq. 5
    scores: dict[str, float]  # metrics that applied
    warnings: list[LabelWarning]
    passed: bool


def _ref(bbox: tuple[slice, slice], instance_id: int) -> ObjectRef:
    ys, xs = bbox
    return ObjectRef(int(instance_id), (ys.start, xs.start, ys.stop, xs.stop))


def segments(label: Label, s: InspectionSettings) -> tuple[float, LabelWarning | None]:
    """1 inside the expected count, falling as 1/(1+d) with the distance d outside it. Point
    and box objects count as cells too: a label of marked cells is not an empty one."""
    boxes = instance_boxes(label.instances)
    n = len(boxes) + len(label.objects)
    d = max(0, s.min_segments - n, n - s.max_segments)
    if d == 0:
        return 1.0, None
    area = np.bincount(label.instances.ravel())
    objs: tuple[ObjectRef, ...] = ()
    if n > s.max_segments:  # the smallest ones are the likeliest extras
        extra = sorted(boxes, key=lambda i: area[i])[:d]
        objs = tuple(_ref(boxes[i], i) for i in extra)
    msg = f"{n} segments, expected {s.min_segments}–{s.max_segments}"
    return 1.0 / (1.0 + d), LabelWarning("segments", msg, objs)


def holes(label: Label, _s: InspectionSettings) -> tuple[float | None, LabelWarning | None]:
    """Share of instances without holes (background pockets enclosed by one instance)."""
    inst = label.instances
    boxes = instance_boxes(inst)
    if not boxes:
        return None, None
    holed = []
    for i, (ys, xs) in boxes.items():
        mask = inst[ys, xs] == i
        if (ndi.binary_fill_holes(mask) & ~mask & (inst[ys, xs] == 0)).any():
            holed.append(i)
    if not holed:
        return 1.0, None
    msg = f"{len(holed)} object(s) with holes"
    return 1.0 - len(holed) / len(boxes), LabelWarning(
        "holes", msg, tuple(_ref(boxes[i], i) for i in holed)
    )


def fragments(label: Label, s: InspectionSettings) -> tuple[float | None, LabelWarning | None]:
    """Share of pieces that are neither tiny nor a detached part of a split instance."""
    inst = label.instances
    if not inst.any():
        return None, None
    pieces = connected(inst, background=0, connectivity=2)
    n = int(pieces.max()) if pieces.size else 0
    if n == 0:
        return None, None
    area = np.bincount(pieces.ravel(), minlength=n + 1)
    boxes = ndi.find_objects(pieces)
    owner = np.zeros(n + 1, np.int64)
    owner[pieces.ravel()] = inst.ravel()
    # every piece of an instance but its largest is a stray fragment
    order = np.lexsort((-area[1:], owner[1:])) + 1
    first = np.ones(n, bool)
    first[1:] = owner[order][1:] != owner[order][:-1]
    stray = set(order[~first].tolist()) | {
        k for k in range(1, n + 1) if area[k] < s.min_fragment_area
    }
    if not stray:
        return 1.0, None
    objs = tuple(_ref(boxes[k - 1], owner[k]) for k in sorted(stray))
    msg = f"{len(stray)} tiny or detached fragment(s)"
    return 1.0 - len(stray) / n, LabelWarning("fragments", msg, objs)


def area(label: Label, s: InspectionSettings) -> tuple[float | None, LabelWarning | None]:
    """Share of instances whose area lies in their class's plausible range (where one is known)."""
    inst = label.instances
    boxes = instance_boxes(inst)
    counts = np.bincount(inst.ravel())
    judged = [
        (i, s.area_ranges[label.class_of(i)]) for i in boxes if label.class_of(i) in s.area_ranges
    ]
    if not judged:
        return None, None
    bad = [i for i, (lo, hi) in judged if not lo <= counts[i] <= hi]
    if not bad:
        return 1.0, None
    msg = f"{len(bad)} object(s) with an implausible area"
    return 1.0 - len(bad) / len(judged), LabelWarning(
        "area", msg, tuple(_ref(boxes[i], i) for i in bad)
    )


def merged_cells(label: Label, prediction: Label) -> dict[int, int]:
    """Label instances that hold two or more predicted cells: {label id: cells inside}.

    A predicted cell lies inside a label instance when more than half of its pixels do. With
    an instance-aware model this finds touching cells drawn as one blob, the most common
    instance error, which a Dice comparison cannot see (the foreground is the same).
    """
    mine, theirs = label.instances.ravel(), prediction.instances.ravel()
    both = (mine > 0) & (theirs > 0)
    if not both.any():
        return {}
    area = np.bincount(theirs)
    pairs, counts = np.unique(
        np.stack([theirs[both], mine[both]]).astype(np.int64), axis=1, return_counts=True
    )
    inside = counts * 2 > area[pairs[0]]
    hosts, n = np.unique(pairs[1][inside], return_counts=True)
    return {int(h): int(k) for h, k in zip(hosts, n, strict=True) if k >= 2}


def model_agreement(
    label: Label, prediction: Label | None
) -> tuple[float | None, LabelWarning | None]:
    """Dice with the model's prediction, lowered by the share of label instances the model
    sees as several cells; the warning names objects only one of them has and merged cells."""
    if prediction is None:
        return None, None
    score = dice(label.instances, prediction.instances)
    merged = merged_cells(label, prediction)
    if merged:
        score *= 1.0 - len(merged) / max(len(label.ids()), 1)
    if score >= 1.0:
        return 1.0, None
    objs: list[ObjectRef] = []
    mine, theirs = label.instances, prediction.instances
    boxes = instance_boxes(mine)
    for src, other in ((mine, theirs), (theirs, mine)):
        for i, box in (boxes if src is mine else instance_boxes(src)).items():
            if not (other[box][src[box] == i] > 0).any():  # nothing of it in the other label
                objs.append(_ref(box, i if src is mine else 0))
    objs += [_ref(boxes[i], i) for i in sorted(merged) if i in boxes]
    msg = f"agrees with the model at Dice {dice(mine, theirs):.2f}"
    if objs:
        msg += (
            f"; {len(objs) - len(merged)} object(s) found by only one of them (id 0: the model's)"
        )
    if merged:
        msg += f"; {len(merged)} object(s) the model sees as several touching cells"
    return score, LabelWarning("model", msg, tuple(objs))


def inspect(
    label: Label, settings: InspectionSettings | None = None, prediction: Label | None = None
) -> Report:
    """The score (seed 004 eq. 5) and, below the warning threshold, the imperfect metrics'
    warnings."""
    s = settings or InspectionSettings()
    results = {
        "segments": segments(label, s),
        "holes": holes(label, s),
        "fragments": fragments(label, s),
        "area": area(label, s),
        "model": model_agreement(label, prediction),
    }
    scores = {k: float(v) for k, (v, _) in results.items() if v is not None}
    weights = {k: max(0.0, float(s.weights.get(k, 0.0))) for k in scores}
    total = sum(weights.values())
    score = sum(weights[k] * scores[k] for k in scores) / total if total > 0 else 1.0
    passed = score >= s.warning_threshold
    warnings = (
        [] if passed else [w for k, (_, w) in results.items() if w is not None and weights.get(k)]
    )
    return Report(score=score, scores=scores, warnings=warnings, passed=passed)


def learn_area_ranges(labels: Iterable[Label]) -> dict[int, tuple[float, float]]:
    """Plausible area range per class from labeled examples (quantiles widened by a margin)."""
    per_class: dict[int, list[int]] = {}
    for lab in labels:
        for p in lab.props():
            per_class.setdefault(p.class_id, []).append(p.area)
    out = {}
    for cid, areas in per_class.items():
        if len(areas) >= MIN_EXAMPLES:
            lo, hi = np.quantile(np.asarray(areas, np.float64), AREA_QUANTILES)
            out[cid] = (float(lo / AREA_MARGIN), float(hi * AREA_MARGIN))
    return out


def load_settings(
    project: Project, learn: bool = True, max_images: int = 200
) -> InspectionSettings:
    """The project's priors; area ranges learned from its human labels unless set by hand."""
    s = InspectionSettings.from_dict(INSPECTION.get(project))
    if learn and not s.area_ranges:
        versions = project.latest_human_versions(max_images)
        s.area_ranges = learn_area_ranges(project.label_version(v).label for _, v in versions)
    return s
