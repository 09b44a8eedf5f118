"""Point and box objects scored against a control's truth by distance and IoU."""

from __future__ import annotations

import numpy as np

from appliance.labels import Box, Label, Point
from appliance.metrics import match_boxes, match_points
from appliance.supervision.scoring import score


def test_points_match_one_to_one_nearest_first() -> None:
    truth = np.array([[10, 10], [14, 10]])
    guess = np.array([[13, 10], [40, 40], [11, 10]])
    m = match_points(truth, guess, radius=5)
    assert sorted(m.pairs) == [(0, 2), (1, 0)]
    assert m.n_truth == 2 and m.n_guess == 3
    assert match_points(truth, np.zeros((0, 2))).f1 == 0.0
    assert match_points(np.zeros((0, 2)), np.zeros((0, 2))).f1 == 1.0


def test_boxes_match_above_half_iou_only() -> None:
    truth = np.array([[0, 0, 10, 10]])
    assert match_boxes(truth, np.array([[0, 0, 10, 5.1]])).pairs == [(0, 0)]
    assert match_boxes(truth, np.array([[0, 0, 10, 5]])).pairs == []  # IoU exactly 0.5


def test_control_score_counts_objects_and_their_classes() -> None:
    blank = np.zeros((100, 100), np.uint32)
    truth = Label(blank, {}, (Point(10, 10, 1), Point(50, 50, 2), Box(60, 60, 90, 90, 1)))
    label = Label(
        blank,
        {},
        (Point(12, 11, 1), Point(52, 50, 1), Box(61, 61, 90, 90, 1), Box(0, 80, 10, 90, 2)),
    )
    s = score(truth, label)
    assert (s.n_truth, s.n_label, s.matched, s.class_correct) == (3, 4, 3, 2)
    assert s.instance_f1 == 2 * 3 / 7
    assert score(truth, Label(blank, {}, truth.objects)).instance_f1 == 1.0
    missing = score(truth, Label(blank, {}, truth.objects[:1]))
    assert missing.matched == 1 and missing.instance_f1 == 2 * 1 / 4


def test_a_point_never_matches_a_box() -> None:
    blank = np.zeros((50, 50), np.uint32)
    s = score(Label(blank, {}, (Point(10, 10),)), Label(blank, {}, (Box(5, 5, 15, 15),)))
    assert s.matched == 0 and s.instance_f1 == 0.0
