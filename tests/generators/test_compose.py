"""Compositing synthetic cells into real images: placement, exact truth, blending, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.generators.compose import compose_control
from appliance.generators.context import cell_features
from appliance.generators.runtime import Cell, random_masks
from appliance.labels import Label
from export.synth import synth_samples


def _scene(size: int = 160) -> tuple[np.ndarray, Label]:
    s = next(synth_samples(1, size, 4, "mixed"))
    inst = np.where(s.others > 0, s.others + s.cells.max(), s.cells).astype(np.uint32)
    classes = {int(i): 1 for i in np.unique(s.cells) if i} | {
        int(i + s.cells.max()): 2 for i in np.unique(s.others) if i
    }
    return s.image, Label(inst, classes)


def _cells(n: int, seed: int = 0) -> list[Cell]:
    rng = np.random.default_rng(seed)
    masks = random_masks(n, 24, rng)
    return [Cell(np.where(m, 0.8, 0.1).astype(np.float32), m, "cell") for m in masks]


@pytest.mark.parametrize("blend", ["alpha", "poisson"])
def test_cells_land_on_free_places_with_exact_truth(blend: str) -> None:
    image, label = _scene()
    cells = _cells(3)
    comp = compose_control(
        image, cells, {"cell": 1}, np.random.default_rng(0), label=label, blend=blend, match=False
    )
    assert comp.image.dtype == image.dtype and comp.image.shape == image.shape
    assert len(comp.added) == 3
    # the old instances are untouched, the new ones are exactly the cells' outlines
    old = label.instances > 0
    assert np.array_equal(comp.label.instances[old], label.instances[old])
    for cell, new_id in zip(cells, comp.added, strict=True):
        assert comp.label.class_of(new_id) == 1
        assert int((comp.label.instances == new_id).sum()) == int(cell.mask.sum())
        assert not ((comp.label.instances == new_id) & old).any()
    # pixels change only near the planted cells
    changed = comp.image.astype(np.int64) != image.astype(np.int64)
    new = np.isin(comp.label.instances, comp.added)
    near = cv2.dilate(new.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert changed[new].mean() > 0.5 and not changed[~near].any()
    # a bright cell planted into a dim background is brighter than its surroundings
    ring = near & ~cv2.dilate(new.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert comp.image[new].mean() > comp.image[ring].mean()


def test_placement_is_reproducible_and_refuses_a_full_image() -> None:
    image, label = _scene()
    a = compose_control(image, _cells(2), {"cell": 1}, np.random.default_rng(5), label=label)
    b = compose_control(image, _cells(2), {"cell": 1}, np.random.default_rng(5), label=label)
    assert a.centres == b.centres and np.array_equal(a.image, b.image)
    full = np.ones(image.shape, bool)
    with pytest.raises(ApplianceError, match="no free"):
        compose_control(image, _cells(1), {"cell": 1}, np.random.default_rng(0), occupied=full)
    with pytest.raises(ApplianceError, match="not a class"):
        compose_control(image, _cells(1), {"nucleus": 1}, np.random.default_rng(0), label=label)


@pytest.mark.parametrize("blend", ["alpha", "poisson"])
def test_matched_cells_measure_like_the_cells_of_the_image(blend: str) -> None:
    """Small, overbright cells become the size and contrast of the image's own cells; their
    truth is still exactly the (resized) outline that was planted."""
    image, label = _scene(320)
    shrink = np.ones((9, 9), np.uint8)
    masks = [
        cv2.erode(m.astype(np.uint8), shrink) > 0
        for m in random_masks(3, 40, np.random.default_rng(1))
    ]
    small = [Cell(np.where(m, 0.95, 0.1).astype(np.float32), m, "cell") for m in masks]
    real = [f for f in cell_features(image, label) if f.class_id == 1]

    def planted(match: bool) -> list:
        comp = compose_control(
            image, small, {"cell": 1}, np.random.default_rng(2), label=label, blend=blend,
            match=match,
        )  # fmt: skip
        return [f for f in cell_features(comp.image, comp.label) if f.instance in comp.added]

    matched = planted(True)
    assert len(matched) >= 2
    for name in ("area", "contrast"):  # each planted cell drew one real cell's measurements
        values = [f.value(name) for f in real]
        lo, hi = 0.8 * min(values), 1.2 * max(values)
        assert all(lo <= f.value(name) <= hi for f in matched), (name, lo, hi, matched)
    tiny = planted(False)  # what planting looked like before: smaller than the image's cells
    assert np.median([f.area for f in tiny]) < 0.5 * np.median([f.area for f in real])


def test_synthetic_cells_on_a_slide_region_marked_by_points_and_boxes(tmp_path) -> None:
    """Seed 000's plan on a slide: cells planted on a real region (level-0 pixels cut from a
    tifffile-written pyramid) whose cells are points and boxes; none lands on a marked cell,
    the marks stay, and each planted cell's truth is its box, as the task scores them."""
    from appliance.labels import Box, Point
    from appliance.slides import open_slide
    from testkit.slides import tissue_image, write_svs

    write_svs(tmp_path / "bal.svs", tissue_image(600, 800, seed=2), mpp=0.25, tile=256)
    with open_slide(tmp_path / "bal.svs") as slide:
        region = slide.read_region(300, 200, 128, 128)
    marks = (Point(20, 20, 1), Box(60, 60, 100, 100, 2))
    label = Label(np.zeros((128, 128), np.uint32), {}, marks)
    cells = _cells(3, seed=1)
    comp = compose_control(
        region, cells, {"cell": 2}, np.random.default_rng(0), label=label, match=False
    )
    assert comp.image.shape == region.shape and comp.image.dtype == np.uint8
    assert comp.label.ids().size == 0  # a point/box task gets no masks
    assert comp.label.objects[:2] == marks
    planted = comp.label.objects[2:]
    assert [comp.label.objects[i] for i in comp.added] == list(planted) and len(planted) == 3
    for box, cell in zip(planted, cells, strict=True):
        assert isinstance(box, Box) and box.class_id == 2
        ys, xs = np.nonzero(cell.mask)
        assert (box.x1 - box.x0, box.y1 - box.y0) == (np.ptp(xs) + 1, np.ptp(ys) + 1)
        assert box.x1 <= 60 or box.x0 >= 100 or box.y1 <= 60 or box.y0 >= 100  # off the box
        assert np.hypot(*np.subtract(box.centre, (20, 20))) > 6  # off the point's cell


def test_a_region_marked_by_points_only_gets_planted_points() -> None:
    """Scoring matches points with points: on a points task a planted cell's truth is its
    centre, so an annotator who points at every cell matches every planted one."""
    from appliance.labels import Box, Point
    from appliance.supervision.scoring import score
    from testkit.slides import tissue_image

    region = tissue_image(128, 128, seed=4)
    label = Label(np.zeros((128, 128), np.uint32), {}, (Point(20, 20, 1),))
    cells = _cells(2, seed=3)
    comp = compose_control(
        region, cells, {"cell": 2}, np.random.default_rng(0), label=label, match=False
    )
    planted = comp.label.objects[1:]
    assert len(planted) == 2 and all(isinstance(o, Point) for o in planted)
    assert not any(isinstance(o, Box) for o in comp.label.objects)
    answer = Label(label.instances, {}, tuple(Point(o.x + 2, o.y - 1, o.class_id)
                                              for o in comp.label.objects))  # fmt: skip
    result = score(comp.label, answer, (), None, 1.0)
    assert (result.n_truth, result.matched, result.class_correct) == (3, 3, 3)
