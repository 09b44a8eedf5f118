"""Post-processing steps on hand-made instance maps, each with its before/after diff."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.assist.postprocess import (
    STEPS,
    closing,
    diff,
    fill_holes,
    opening,
    remove_small,
    smooth,
    split_touching,
)
from appliance.errors import ApplianceError
from appliance.labels import Label


def ring(shape=(12, 12)) -> Label:
    inst = np.zeros(shape, np.uint32)
    inst[2:9, 2:9] = 1
    inst[4:7, 4:7] = 0  # a 3×3 hole
    return Label(inst, {1: 2})


def test_fill_holes_fills_own_hole_and_reports_it() -> None:
    res = fill_holes(ring())
    assert res.label.instances[5, 5] == 1 and res.label.binary().sum() == 49
    assert res.diff.added.sum() == 9 and res.diff.removed.sum() == 0
    assert res.diff.changed_ids == (1,) and res.label.classes == {1: 2}


def test_fill_holes_leaves_gap_between_two_cells() -> None:
    inst = np.zeros((9, 9), np.uint32)
    inst[1:8, 1:4] = 1
    inst[1:8, 5:8] = 2
    inst[1, 4] = 1
    inst[7, 4] = 2  # the gap column 4 (rows 2..6) is enclosed by both cells
    res = fill_holes(Label(inst, {1: 1, 2: 1}))
    assert res.diff.unchanged


def test_remove_small_drops_tiny_cells_and_fragments() -> None:
    inst = np.zeros((10, 10), np.uint32)
    inst[0:5, 0:5] = 1
    inst[9, 9] = 1  # a stray one-pixel fragment of cell 1
    inst[7, 0] = 2  # a one-pixel cell
    res = remove_small(Label(inst, {1: 1, 2: 1}), min_area=3)
    assert res.label.binary().sum() == 25
    assert res.diff.removed_ids == (2,) and res.diff.changed_ids == (1, 2)
    assert res.diff.removed.sum() == 2 and res.label.classes == {1: 1}


def test_opening_removes_spur_per_instance() -> None:
    inst = np.zeros((15, 15), np.uint32)
    inst[3:10, 3:10] = 1
    inst[6, 10:14] = 1  # one-pixel-wide spur
    res = opening(Label(inst, {1: 1}), radius=1)
    assert res.label.instances[6, 12] == 0 and res.label.instances[6, 6] == 1
    assert res.diff.added.sum() == 0


def test_closing_does_not_merge_or_eat_neighbours() -> None:
    inst = np.zeros((12, 16), np.uint32)
    inst[2:10, 2:7] = 1
    inst[5, 4] = 0  # a notch inside cell 1
    inst[2:10, 8:14] = 2  # a neighbour one pixel away
    res = closing(Label(inst, {1: 1, 2: 1}), radius=2)
    assert res.label.instances[5, 4] == 1
    assert set(np.unique(res.label.instances[2:10, 8:14]).tolist()) == {2}
    assert res.diff.removed.sum() == 0


def test_smooth_rounds_a_jagged_edge() -> None:
    inst = np.zeros((20, 20), np.uint32)
    inst[5:15, 5:15] = 1
    inst[5:15:2, 15] = 1  # comb teeth on the right edge
    res = smooth(Label(inst, {1: 1}), sigma=1.0)
    assert res.label.instances[10, 10] == 1
    assert res.diff.removed[5:15, 15].any()


def test_split_touching_discs() -> None:
    inst = np.zeros((30, 50), np.uint32)
    cv2.circle(inst, (15, 15), 10, 1, -1)
    cv2.circle(inst, (32, 15), 10, 1, -1)
    res = split_touching(Label(inst, {1: 2}))
    ids = res.label.ids()
    assert ids.tolist() == [1, 2] and res.label.classes == {1: 2, 2: 2}
    assert res.diff.new_ids == (2,) and res.diff.added.sum() == 0
    assert res.label.binary().sum() == (inst > 0).sum()


def test_split_keeps_single_disc_and_rod_whole() -> None:
    disc = np.zeros((30, 30), np.uint32)
    cv2.circle(disc, (15, 15), 10, 1, -1)
    assert split_touching(Label(disc, {1: 1})).diff.unchanged
    rod = np.zeros((30, 60), np.uint32)
    rod[10:20, 5:55] = 1  # a flat distance ridge: local maxima all along it
    assert split_touching(Label(rod, {1: 1})).diff.unchanged


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("shape", [(0, 0), (1, 1), (5, 7)])
def test_every_step_handles_empty_and_single_pixel(name: str, shape: tuple[int, int]) -> None:
    step = STEPS[name]
    kwargs = {"min_area": 2} if name == "remove_small" else {}
    empty = step(Label.empty(shape), **kwargs)
    assert empty.label.ids().size == 0 and empty.diff.unchanged
    if shape != (0, 0):
        inst = np.zeros(shape, np.uint32)
        inst[0, 0] = 3
        res = step(Label(inst, {3: 1}), **kwargs)
        assert res.label.shape == shape


def test_bad_parameters_are_errors() -> None:
    lab = ring()
    with pytest.raises(ApplianceError):
        remove_small(lab, 0)
    with pytest.raises(ApplianceError):
        closing(lab, 0)
    with pytest.raises(ApplianceError):
        smooth(lab, 0)
    with pytest.raises(ApplianceError):
        split_touching(lab, 0)
    with pytest.raises(ApplianceError, match="shapes"):
        diff(lab, Label.empty((3, 3)))
