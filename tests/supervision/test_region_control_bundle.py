"""`python -m export controls` on a job of RGB slide regions marked by points and boxes: cells
planted on each region, truth = its marks plus the planted cells; the tablet that holds the
slide installs each as a region of that slide at the same place, served and scored like any
region. A tablet without the slide, or one already holding a region there, refuses the bundle
in one line and keeps nothing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.bundles.control_bundle import read_control_bundle
from appliance.bundles.training_job import write_training_job
from appliance.cli import main
from appliance.labels import Box, Label, Point
from appliance.session.slide_view import TILE, TileKey
from appliance.session.slide_work import SlideWork
from appliance.store import Project
from appliance.store.controls import control_for_image, score_rows
from appliance.store.slides import regions
from export.cli import main as export_main
from testkit.slides import tissue_image, write_ome_pyramid

IMG = tissue_image(1024, 1536, seed=5)
LAB_REGIONS = [(256, 256, 256, 256), (768, 512, 256, 256)]


def _nuclei(pixels: np.ndarray, boxes: bool) -> Label:
    """The region's dark nuclei marked, classes alternating: boxes, or points at centres."""
    dark = (pixels.max(axis=2) < 160).astype(np.uint8)
    n, _, stats, centres = cv2.connectedComponentsWithStats(dark)
    objects: list[Point | Box] = []
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if area < 12:
            continue
        cid = 1 + len(objects) % 2
        if boxes:
            objects.append(Box(float(x), float(y), float(x + w), float(y + h), cid))
        else:
            objects.append(Point(float(centres[k][0]), float(centres[k][1]), cid))
    assert len(objects) >= 4
    return Label(np.zeros(pixels.shape[:2], np.uint32), {}, tuple(objects))


@pytest.fixture
def slide(tmp_path: Path) -> Path:
    path = tmp_path / "bal.ome.tif"
    write_ome_pyramid(path, IMG, levels=3, tile=256, mpp=0.25)
    return path


def _project(root: Path, slide: Path, boxes: list[tuple[int, int, int, int]]) -> Path:
    assert main(["init", str(root), "--classes", "neutrophil,macrophage"]) == 0
    picked = [a for b in boxes for a in ("--region", ",".join(map(str, b)))]
    assert main(["import", str(root), str(slide), *picked]) == 0
    return root


@pytest.mark.parametrize("boxes", [True, False], ids=["boxes", "points"])
def test_controls_from_marked_regions_install_as_regions_of_the_slide(
    slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], boxes: bool
) -> None:
    lab = _project(tmp_path / "lab", slide, LAB_REGIONS)
    with Project.open(lab) as p:
        for r in regions(p):
            pixels = p.load_pixels(r.image_id)
            p.save_label(r.image_id, _nuclei(pixels, boxes), author="gold", source="manual")
        write_training_job(p, tmp_path / "job.zip")
    bundle = tmp_path / "controls.zip"
    assert (
        export_main(["controls", str(tmp_path / "job.zip"), "--out", str(bundle), "--n", "2"]) == 0
    )
    made = read_control_bundle(bundle)
    for item, pixels in made.items:
        x, y = item.region["x"], item.region["y"]
        assert (x, y, 256, 256) in LAB_REGIONS and item.suffix == ".png"
        real = IMG[y : y + 256, x : x + 256]
        assert pixels.shape == real.shape and not np.array_equal(pixels, real)
        kinds = {type(o) for o in item.truth.objects}
        assert kinds == ({Box} if boxes else {Point}) and not item.truth.ids().size
        marks = _nuclei(real, boxes).objects
        assert item.truth.objects[: len(marks)] == marks  # the real cells stay in the truth
        assert len(item.truth.objects) > len(marks)  # and planted ones join them

    # the lab's own project holds those regions: the same place twice would give it away
    assert main(["controls", "install", str(lab), str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "overlaps another region" in err
    # a tablet without the slide cannot place them
    other = tmp_path / "other"
    assert main(["init", str(other), "--classes", "neutrophil,macrophage"]) == 0
    assert main(["controls", "install", str(other), str(bundle)]) == 2
    assert "does not hold" in capsys.readouterr().err
    with Project.open(other) as p:
        assert not p.images()

    # an annotator's tablet holds the slide with other regions: each control is a region there
    tablet = _project(tmp_path / "tablet", slide, [(0, 0, 256, 256), (1024, 0, 256, 256)])
    assert main(["controls", "install", str(tablet), str(bundle)]) == 0
    with Project.open(tablet) as p:
        by_id = {r.image_id: r for r in regions(p)}
        controls = sorted(p.control_image_ids())
        assert len(controls) == 2 and set(controls) <= set(by_id)
        for image_id, (item, pixels) in zip(controls, made.items, strict=True):
            r = by_id[image_id]
            assert (r.x, r.y) == (item.region["x"], item.region["y"])
            assert p.image(image_id).name == f"bal.ome.tif[{r.x},{r.y},256x256]"
            assert np.array_equal(p.load_pixels(image_id), pixels)
        # marked on the slide as the truth says (1 px off), saved: scored, all found
        image_id = controls[0]
        truth = control_for_image(p, image_id).truth
        work = SlideWork(p, image_id, "anna")
        try:
            r = by_id[image_id]
            tile = work.tiles.get(TileKey(0, r.x // TILE, r.y // TILE))  # drawn as stored
            lx, ly = r.x % TILE, r.y % TILE
            assert np.array_equal(tile[ly : ly + 256, lx : lx + 256], made.items[0][1])
            for obj in truth.objects:
                work.active_class = obj.class_id
                if isinstance(obj, Point):
                    assert work.place_point(obj.x + r.x + 1, obj.y + r.y)
                else:
                    assert work.draw_box(obj.x0 + r.x, obj.y0 + r.y, obj.x1 + r.x + 1, obj.y1 + r.y)
            work.save()
        finally:
            work.close()
        (row,) = score_rows(p, "anna")
        n = len(truth.objects)
        assert (row.n_truth, row.n_label, row.matched, row.class_correct) == (n, n, n, n)
