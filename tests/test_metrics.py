"""One Dice and one instance matching (`appliance.metrics`), the same at the IoU 0.5 edge for
training, decoding choice, control scores and benches.

Before, three copies disagreed below IoU 0.5 (`appliance.metrics` refused, control scoring ran
the Hungarian method, the workstation's counts a greedy pass) and two more copies of Dice
summed pixels their own way; the rule is IoU > 0.5 (DESIGN.md), exactly 0.5 is no match.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.metrics import (
    InstanceCounts,
    Overlap,
    dice,
    instance_f1,
    match_instances,
    pooled_dice,
    pooled_f1,
)
from appliance.supervision.scoring import score

ROOT = Path(__file__).resolve().parents[1]


def cell_and_guess(overlap: int, size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """A truth cell of `size` pixels and a guess lying inside it on `overlap` of them."""
    truth = np.zeros((4, size), np.uint32)
    truth[1, :] = 1
    guess = np.zeros_like(truth)
    guess[1, :overlap] = 7
    return truth, guess


def test_iou_of_exactly_one_half_is_no_match_and_just_above_is() -> None:
    at, above = cell_and_guess(50), cell_and_guess(51)
    assert match_instances(*at).pairs == [] and instance_f1(*at) == 0.0
    m = match_instances(*above)
    assert m.pairs == [(1, 7)] and m.ious == [pytest.approx(0.51)] and m.f1 == 1.0


def test_every_user_of_the_matching_agrees_at_the_edge() -> None:
    """Control scores and the pooled counts of training, decoding choice and benches."""
    for overlap, matched in ((50, 0), (51, 1)):
        truth, guess = cell_and_guess(overlap)
        counts = InstanceCounts()
        counts.add(truth, guess)
        assert counts.tp == matched
        assert pooled_f1([truth], [guess]) == float(matched)
        scored = score(Label(truth, {1: 1}), Label(guess, {7: 1}))
        assert scored.matched == matched and scored.instance_f1 == float(matched)


@pytest.mark.parametrize("threshold", [0.49, 0.3, 0.0])
def test_thresholds_below_one_half_are_refused_everywhere(threshold: float) -> None:
    truth, guess = cell_and_guess(40)
    with pytest.raises(ValueError, match="no longer unique"):
        match_instances(truth, guess, threshold)
    with pytest.raises(ValueError, match="no longer unique"):
        InstanceCounts().add(truth, guess, threshold)
    with pytest.raises(ValueError, match="no longer unique"):
        pooled_f1([truth], [guess], threshold)


def test_stricter_thresholds_work() -> None:
    truth, guess = cell_and_guess(80)
    assert match_instances(truth, guess, 0.75).pairs == [(1, 7)]
    assert match_instances(truth, guess, 0.8).pairs == []


def test_the_matching_is_one_to_one_on_touching_cells() -> None:
    truth = np.zeros((1, 12), np.uint32)
    truth[0, :6], truth[0, 6:] = 1, 2
    merged = (truth > 0).astype(np.uint32)  # one blob over both cells: IoU 0.5 with each
    assert match_instances(truth, merged).pairs == []
    split = truth.copy()
    split[0, 5] = 2  # border moved by a pixel: each cell still matches its own
    assert [p for p, _ in match_instances(truth, split * 3).pairs] == [1, 2]


def test_dice_pooled_and_per_image() -> None:
    a = np.array([[1, 1, 0, 0]])
    b = np.array([[1, 0, 0, 0]])
    empty = np.zeros((1, 4), np.uint8)
    assert dice(a, b) == pytest.approx(2 / 3) and dice(empty, empty) == 1.0
    assert dice(a > 0, b > 0) == dice(a * 5, b * 9)  # bool masks and any ids: foreground
    # pooled: pixels of all images together, not the mean of per-image scores
    big_t, big_g = np.ones((10, 10), np.uint8), np.ones((10, 10), np.uint8)
    assert pooled_dice([a, big_t], [b, big_g]) == pytest.approx(2 * 101 / (102 + 101))
    assert Overlap.of(a, b).dice == dice(a, b)


def test_maps_of_different_shapes_are_one_line_errors() -> None:
    with pytest.raises(ApplianceError, match="does not match truth"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


# The arithmetic of Dice and of IoU matching, wherever it is written out. Allowed: the one
# implementation, the differentiable training loss (it needs torch tensors and gradients) and
# the scoring benchmark's deliberately naive baseline it is timed against.
COPIES = re.compile(r"2(\.0)?\s*\*\s*\(?\s*\w*inter\b|\biou\w*\s*=.*\binter|def \w*iou_matrix")
ALLOWED = {"appliance/metrics.py", "export/losses.py", "bench/scoring.py"}


def test_no_other_copy_of_dice_or_matching() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for pkg in ("appliance", "export", "bench", "testkit")
        for path in sorted((ROOT / pkg).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ALLOWED
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if COPIES.search(line)
    ]
    assert not offenders, "Dice or matching outside appliance/metrics.py:\n" + "\n".join(offenders)
    for copy in ("return 2.0 * inter / total", "iou = inter / (ta + ga - inter)"):
        assert COPIES.search(copy)  # the detector finds the copies that existed
