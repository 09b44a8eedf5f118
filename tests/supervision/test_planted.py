"""Each planted error kind and level, on tiny arrays: the record says what was planted, the
pre-label differs from the truth exactly there, and the recall computation finds it again."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.perturb import class_flip, merge, neighbour_pairs
from appliance.supervision.planted import KINDS, LEVELS, parse_plan, plant
from appliance.supervision.scoring import score


def _truth(size: int = 128) -> Label:
    """A 4×4 grid of discs of growing radius (ids 1..16, classes alternate 1, 2); the two in
    the top-left corner touch, so there is one pair to merge; the bottom rows stay empty."""
    lab = np.zeros((size, size), np.uint32)
    yy, xx = np.mgrid[0:size, 0:size]
    for k in range(16):
        r, c = divmod(k, 4)
        cy, cx = 12 + 22 * r, 12 + 22 * c
        radius = 4 + (k % 5)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k + 1
    lab[8:17, 16:30] = np.where(lab[8:17, 16:30] == 0, 2, lab[8:17, 16:30])  # 1 and 2 touch
    return Label(lab, {k: 1 + (k % 2) for k in range(1, 17)})


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_recorded_and_found_again(kind: str, level: str) -> None:
    truth = _truth()
    planting = plant(truth, {kind: 1}, level, n_classes=2, rng=np.random.default_rng(3))
    assert len(planting.errors) == 1
    err = planting.errors[0]
    assert (err.kind, err.level) == (kind, level)
    pre = planting.prelabel
    changed = set(np.unique(truth.instances[truth.instances != pre.instances]).tolist()) | set(
        np.unique(pre.instances[truth.instances != pre.instances]).tolist()
    )
    changed -= {0}
    if kind == "deleted":
        assert err.truth_ids[0] not in set(pre.ids().tolist())
        assert changed == {err.truth_ids[0]}
    elif kind == "false":
        new = err.prelabel_ids[0]
        assert changed == {new}
        assert not truth.instances[pre.instances == new].any()
    elif kind == "class_flip":
        (tid,) = err.truth_ids
        assert changed == set()
        assert pre.class_of(tid) != truth.class_of(tid) == err.detail["true_class"]
        assert [i for i in truth.ids() if pre.class_of(i) != truth.class_of(i)] == [tid]
    elif kind == "merged":
        a, b = err.truth_ids
        assert b not in set(pre.ids().tolist())
        assert changed == {a, b}
        assert (pre.instances[truth.instances == b] == a).all()
    else:
        assert changed == set(err.truth_ids)
        assert err.detail["iou"] < 0.95
    lazy = score(truth, pre, planting.errors, pre.instances)
    careful = score(truth, truth, planting.errors, pre.instances)
    assert lazy.planted == {kind: (0, 1)}
    assert careful.planted == {kind: (1, 1)}


def test_levels_grade_boundary_errors_and_cell_sizes() -> None:
    truth = _truth()
    moved = {}
    sizes = {}
    for level in LEVELS:
        p = plant(truth, {"eroded": 1}, level, 2, np.random.default_rng(0))
        moved[level] = p.errors[0].detail["iou"]
        d = plant(truth, {"deleted": 1}, level, 2, np.random.default_rng(0))
        sizes[level] = int((truth.instances == d.errors[0].truth_ids[0]).sum())
    assert moved["easy"] < moved["medium"] < moved["hard"]  # easy removes most of the cell
    assert sizes["easy"] > sizes["medium"] > sizes["hard"]  # easy deletes a large cell


def test_several_errors_never_touch_a_cell_twice() -> None:
    truth = _truth()
    plan = {"deleted": 2, "class_flip": 2, "shifted": 2, "merged": 1, "false": 2}
    p = plant(truth, plan, "medium", 2, np.random.default_rng(1))
    touched = [t for e in p.errors for t in e.truth_ids]
    assert len(touched) == len(set(touched))
    assert sorted(e.kind for e in p.errors).count("deleted") == 2
    lazy = score(truth, p.prelabel, p.errors, p.prelabel.instances)
    assert sum(c for c, _ in lazy.planted.values()) == 0
    assert sum(n for _, n in lazy.planted.values()) == len(p.errors)


def test_perturb_helpers_and_refusals() -> None:
    lab = np.zeros((10, 20), np.uint32)
    lab[2:6, 2:6], lab[2:6, 7:11], lab[2:6, 16:19] = 1, 2, 3
    assert neighbour_pairs(lab, gap=1) == [(1, 2)]
    merged = merge(lab, [(1, 2)], gap=1)
    assert set(np.unique(merged).tolist()) == {0, 1, 3} and (merged[2:6, 2:11] == 1).all()
    flipped = class_flip({1: 1, 2: 2}, [1], 3, np.random.default_rng(0))
    assert flipped[1] in (2, 3) and flipped[2] == 2
    with pytest.raises(ApplianceError, match="two classes"):
        class_flip({1: 1}, [1], 1, np.random.default_rng(0))
    with pytest.raises(ApplianceError, match="unknown error level"):
        plant(_truth(), {"deleted": 1}, "extreme", 2, np.random.default_rng(0))
    with pytest.raises(ApplianceError, match="bad planted error"):
        parse_plan("deleted=1,holes=2")
    assert parse_plan("deleted=2, class-flip=1") == {"deleted": 2, "class_flip": 1}


def test_outline_paths_agree_and_large_ids_score() -> None:
    from appliance.supervision.scoring import outline

    truth = _truth()
    big = truth.instances.astype(np.uint32) * 100_000  # ids past the uint16 and table paths
    assert np.array_equal(outline(truth.instances), outline(big))
    shifted = np.roll(big, 1, axis=0)
    small = score(truth, Label(np.roll(truth.instances, 1, axis=0), truth.classes))
    large = score(
        Label(big, {k * 100_000: c for k, c in truth.classes.items()}),
        Label(shifted, {k * 100_000: c for k, c in truth.classes.items()}),
    )
    assert (small.matched, small.dice, small.boundary_f1) == (
        large.matched,
        large.dice,
        large.boundary_f1,
    )
