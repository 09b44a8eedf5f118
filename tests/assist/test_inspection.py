"""Label inspection (eq. 5): each metric on hand-made labels, the score, and the warnings."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.assist.inspection import (
    InspectionSettings,
    area,
    fragments,
    holes,
    inspect,
    learn_area_ranges,
    load_settings,
    model_agreement,
    segments,
)
from appliance.errors import ApplianceError
from appliance.labels import Box, Label, Point


def squares(n: int, size: int = 4, shape=(40, 40)) -> Label:
    inst = np.zeros(shape, np.uint32)
    for i in range(n):
        y, x = 2 + (i // 5) * 8, 2 + (i % 5) * 8
        inst[y : y + size, x : x + size] = i + 1
    return Label(inst, dict.fromkeys(range(1, n + 1), 1))


def test_segments_range() -> None:
    s = InspectionSettings(min_segments=1, max_segments=2)
    assert segments(squares(2), s) == (1.0, None)
    score, warn = segments(squares(4), s)
    assert score == pytest.approx(1 / 3) and "4 segments" in warn.message
    assert len(warn.objects) == 2  # the two likeliest extras are named
    score, warn = segments(Label.empty((5, 5)), s)
    assert score == 0.5 and warn.objects == ()


def test_points_and_boxes_count_as_segments() -> None:
    """A label of cells marked by points and boxes only is not an empty one (issue 23, 3)."""
    s = InspectionSettings(min_segments=1, max_segments=2)
    marked = Label(np.zeros((40, 40), np.uint32), {}, (Point(3, 4, 1), Box(10, 10, 20, 20, 2)))
    assert segments(marked, s) == (1.0, None)
    score, warn = segments(Label(marked.instances, {}, (*marked.objects, Point(30, 30))), s)
    assert score == 0.5 and "3 segments" in warn.message


def test_holes_named_with_boxes() -> None:
    lab = squares(2, size=5)
    lab.instances[4, 4] = 0  # hole in cell 1 (rows 2..6, cols 2..6)
    score, warn = holes(lab, InspectionSettings())
    assert score == 0.5 and warn.objects[0].id == 1 and warn.objects[0].bbox == (2, 2, 7, 7)
    assert holes(Label.empty((3, 3)), InspectionSettings()) == (None, None)


def test_fragments_tiny_and_detached() -> None:
    lab = squares(2)
    lab.instances[30, 30] = 1  # a detached piece of cell 1
    score, warn = fragments(lab, InspectionSettings(min_fragment_area=2))
    assert score == pytest.approx(2 / 3)
    assert [o.id for o in warn.objects] == [1] and warn.objects[0].bbox == (30, 30, 31, 31)
    assert fragments(squares(2), InspectionSettings(min_fragment_area=2)) == (1.0, None)
    assert fragments(squares(2), InspectionSettings(min_fragment_area=100))[0] == 0.0


def test_area_range_learned_from_labeled_examples() -> None:
    ranges = learn_area_ranges([squares(10)])
    assert ranges[1][0] < 16 < ranges[1][1]
    assert learn_area_ranges([squares(3)]) == {}  # too few examples: no range
    s = InspectionSettings(area_ranges={1: (10.0, 20.0)})
    big = squares(2)
    big.instances[2:10, 2:9] = 1  # cell 1 grows to 56 px; cell 2 keeps 16
    score, warn = area(big, s)
    assert score == 0.5 and warn.objects[0].id == 1
    assert area(squares(2), InspectionSettings()) == (None, None)


def test_model_disagreement_names_missing_and_extra_objects() -> None:
    lab = squares(2)
    pred = squares(3)
    pred.instances[pred.instances == 1] = 0  # the model misses cell 1, finds an extra cell 3
    score, warn = model_agreement(lab, pred)
    assert 0 < score < 1
    assert sorted(o.id for o in warn.objects) == [0, 1]  # 0: the model's own object
    assert model_agreement(lab, None) == (None, None)
    assert model_agreement(lab, lab) == (1.0, None)


def test_score_is_weighted_mean_and_warns_below_threshold() -> None:
    lab = squares(4)
    lab.instances[3, 3] = 0
    s = InspectionSettings(max_segments=2, warning_threshold=0.9)
    report = inspect(lab, s)
    assert set(report.scores) == {"segments", "holes", "fragments"}
    expected = np.mean([report.scores[k] for k in report.scores])
    assert report.score == pytest.approx(expected) and not report.passed
    assert {w.metric for w in report.warnings} == {"segments", "holes"}
    s.weights = {"segments": 0.0, "holes": 0.0, "fragments": 1.0}
    assert inspect(lab, s).passed and inspect(lab, s).warnings == []


def test_clean_and_empty_labels() -> None:
    assert inspect(squares(3)).passed
    empty = inspect(Label.empty((8, 8)), InspectionSettings(warning_threshold=0.8))
    assert empty.scores == {"segments": 0.5} and not empty.passed
    assert inspect(Label.empty((0, 0))).score == 0.5
    pixel = inspect(
        Label(np.array([[4]], np.uint32), {4: 1}), InspectionSettings(warning_threshold=0.9)
    )
    assert pixel.scores["fragments"] == 0.0 and not pixel.passed  # a 1-pixel object is tiny
    assert pixel.warnings[0].objects[0].bbox == (0, 0, 1, 1)


def test_project_settings_and_learned_ranges(project) -> None:
    s = load_settings(project)
    assert s.area_ranges == {} and s.warning_threshold == 0.8
    project.set_setting("inspection", {"max_segments": 3, "area_ranges": {"1": [5, 50]}})
    s = load_settings(project)
    assert s.max_segments == 3 and s.area_ranges == {1: (5.0, 50.0)}
    assert InspectionSettings.from_dict(s.to_dict()) == s
    assert InspectionSettings.from_dict({"weights": {"model": 3}}).weights["holes"] == 1.0
    with pytest.raises(ApplianceError, match="inspection setting is invalid"):
        InspectionSettings.from_dict({"max_segs": 3})


def test_settings_of_older_projects_still_read(project) -> None:
    """The threshold was stored as `gamma0` (the paper's name) before it was renamed."""
    project.set_setting("inspection", {"gamma0": 0.95, "max_segments": 4})
    s = load_settings(project, learn=False)
    assert s.warning_threshold == 0.95 and s.max_segments == 4
    assert "gamma0" not in s.to_dict() and s.to_dict()["warning_threshold"] == 0.95
