"""Planted pre-label errors on point and box truth (seed 002 where the pre-label is the cell
detector): planted as recorded, offered in place of the detector's marks, and scored with the
matching scoring uses (an annotator who accepts the offer catches none, one who fixes every
mark catches all)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.labels import Box, Label, Point
from appliance.metrics import POINT_RADIUS
from appliance.store import Project
from appliance.store.control_offers import offer_prelabel
from appliance.store.controls import control_for_image, score_rows
from appliance.supervision.controls import add_controls, note_offer, score_save
from appliance.supervision.planted import DEFAULT_PLAN, errors_from_json
from appliance.supervision.planted_objects import plant_label
from appliance.supervision.scoring import score

PLAN = {"deleted": 1, "false": 1, "class_flip": 1, "shifted": 1}


def _truth(kind: str, n: int = 9, size: int = 256) -> Label:
    rng = np.random.default_rng(4)
    objects: list[Point | Box] = []
    for k in range(n):  # a 3×3 grid of cells of growing size, classes 1 and 2
        x, y = 40 + 80 * (k % 3), 40 + 80 * (k // 3)
        half = 6 + 2 * k + int(rng.integers(0, 2))
        cid = 1 + k % 2
        objects.append(
            Point(x, y, cid)
            if kind == "point"
            else Box(x - half, y - half, x + half, y + half, cid)
        )
    return Label(np.zeros((size, size), np.uint32), {}, tuple(objects))


@pytest.mark.parametrize("kind", ["point", "box"])
@pytest.mark.parametrize("level", ["easy", "hard"])
def test_errors_are_planted_as_recorded_and_scored_by_matching(kind: str, level: str) -> None:
    truth = _truth(kind)
    planting = plant_label(
        truth, PLAN | {"merged": 1, "eroded": 1}, level, 3, np.random.default_rng(0)
    )
    pre, errors = planting.prelabel, {e.kind: e for e in planting.errors}
    assert set(errors) == set(PLAN)  # merges and outline errors mean nothing for a mark
    assert not pre.ids().size and len(pre.objects) == len(truth.objects)  # one out, one in
    assert all(e.detail["on"] == "objects" for e in planting.errors)
    gone = errors["deleted"].truth_ids[0]
    assert truth.objects[gone] not in pre.objects
    flip = errors["class_flip"]
    planted_class = pre.objects[flip.prelabel_ids[0]].class_id
    assert planted_class != truth.objects[flip.truth_ids[0]].class_id
    moved = pre.objects[errors["shifted"].prelabel_ids[0]]
    was = truth.objects[errors["shifted"].truth_ids[0]]
    if kind == "point":
        assert np.hypot(moved.x - was.x, moved.y - was.y) > POINT_RADIUS
    else:
        assert 0 < errors["shifted"].detail["iou"] < 1
    false = pre.objects[errors["false"].prelabel_ids[0]]
    centres = np.array([(o.x, o.y) if kind == "point" else o.centre for o in truth.objects])
    at = (false.x, false.y) if kind == "point" else false.centre
    assert np.min(np.hypot(*(centres - at).T)) > 2 * POINT_RADIUS
    # sizes by level: an easy error concerns a large box, a hard one a small box (the flip is
    # planted first, so it chooses among all the boxes)
    if kind == "box":
        areas = sorted((o.x1 - o.x0) * (o.y1 - o.y0) for o in truth.objects)
        flipped = truth.objects[flip.truth_ids[0]]
        area = (flipped.x1 - flipped.x0) * (flipped.y1 - flipped.y0)
        assert area >= areas[6] if level == "easy" else area <= areas[2]

    record = errors_from_json(planting.errors_json())
    accepted = score(truth, pre, record, None, 0.0, pre.objects)
    assert accepted.planted == {k: (0, 1) for k in PLAN}
    fixed = score(truth, truth, record, None, 0.0, pre.objects)
    assert fixed.planted == {k: (1, 1) for k in PLAN}


def test_a_planted_point_control_is_offered_in_place_of_the_detectors_marks(
    tmp_path: Path,
) -> None:
    project = Project.create(tmp_path / "proj", ["neutrophil", "macrophage", "lymphocyte"])
    file = tmp_path / "cells.tif"
    tifffile.imwrite(file, np.random.default_rng(0).integers(0, 255, (256, 256), np.uint8))
    truth = _truth("point")
    (control_id,) = add_controls(project, [(file, truth, "gold")], level="medium", plan=PLAN)
    (image_id,) = project.control_image_ids()
    control = control_for_image(project, image_id)
    assert control.kind == "planted" and control.prelabel.objects
    # the detector found cells of classes 1 and 2 here; masks from another pre-labeler stay
    masks = np.zeros((256, 256), np.uint32)
    masks[0:4, 0:4] = 1
    computed = Label(masks, {1: 3}, (Point(10, 10, 1), Point(100, 100, 2)))
    offer = offer_prelabel(project, image_id, computed, "otsu+detector")
    assert offer.instances is masks and offer.classes == {1: 3}
    assert len(offer.objects) == len(control.prelabel.objects)
    assert {o.class_id for o in offer.objects} <= {1, 2}
    assert [(o.x, o.y) for o in offer.objects] == [(o.x, o.y) for o in control.prelabel.objects]
    # without the detector's marks nothing planted is offered (it would stand out)
    plain = Label(masks, {1: 3})
    assert offer_prelabel(project, image_id, plain, "otsu") is plain

    # shown and accepted unchanged: every planted error that was shown is missed
    note_offer(project, image_id, "anna", "otsu+detector", offer)
    version = project.save_label(image_id, offer, author="anna", source="manual")
    result = score_save(project, version)
    errors = errors_from_json(control.errors_json)
    shown = {e.kind for e in errors}
    assert result is not None and result.planted
    assert set(result.planted) <= shown and all(c == 0 for c, _ in result.planted.values())
    # another annotator shown an offer without marks is not held to the planted marks
    note_offer(project, image_id, "ben", "otsu", plain)
    version = project.save_label(image_id, truth, author="ben", source="manual")
    assert score_save(project, version).planted == {}
    assert [r.control_id for r in score_rows(project, "ben")] == [control_id]
    project.close()


def test_the_default_plan_plants_what_marks_allow() -> None:
    planting = plant_label(_truth("box"), DEFAULT_PLAN, "medium", 2, np.random.default_rng(1))
    assert {e.kind for e in planting.errors} == {"deleted", "false", "class_flip", "shifted"}
