"""A control composed on a slide region (seed 000's plan: synthetic cells placed on a region) is
served like any region: stored, named and linked as an imported region, drawn over the slide
at every zoom level from its own pixels (as every region is), its truth hidden, and scored when
saved. Slides are tifffile-written pyramids (testkit/slides.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.generators.compose import compose_control
from appliance.generators.runtime import Cell, random_masks
from appliance.label_io import exportable
from appliance.labels import Box, Label, Point
from appliance.session import gallery_data
from appliance.session.slide_view import TILE, TileKey, read_tile
from appliance.session.slide_work import SlideWork
from appliance.slides import open_slide
from appliance.store import Project
from appliance.store.control_offers import offer_prelabel
from appliance.store.controls import control_for_image, score_rows
from appliance.store.slides import regions
from appliance.supervision.controls import add_region_controls
from testkit.slides import tissue_image, write_ome_pyramid
from tests.robust.conftest import cli

IMG = tissue_image(1024, 1536, seed=3)
AT = (256, 512, 256, 256)  # the control's place: level-0 x, y, width, height


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_ome_pyramid(tmp_path / "bal.ome.tif", IMG, levels=3, tile=256, mpp=0.25)
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "neutrophil,macrophage").rc == 0
    picked = ["--region", "0,0,256,256", "--region", "768,256,256,256"]
    assert cli("import", root, tmp_path / "bal.ome.tif", *picked).rc == 0
    return root


def _composite(project: Path) -> tuple[np.ndarray, Label]:
    """Three synthetic cells planted on the slide's own pixels at `AT`, one real cell marked."""
    x, y, w, h = AT
    background = IMG[y : y + h, x : x + w]
    rng = np.random.default_rng(0)
    cells = [
        Cell(np.where(m, 0.05, 0.6).astype(np.float32), m, "macrophage")
        for m in random_masks(3, 24, rng)
    ]
    marked = Label(np.zeros((h, w), np.uint32), {}, (Point(12, 14, 1),))
    comp = compose_control(
        background, cells, {"macrophage": 2}, np.random.default_rng(1), label=marked, match=False
    )
    assert not np.array_equal(comp.image, background)
    return comp.image, comp.label


def test_a_control_composed_on_a_region_is_served_like_any_region(project: Path) -> None:
    with Project.open(project) as p:
        pixels, truth = _composite(project)
        (control_id,) = add_region_controls(
            p, "bal.ome.tif", [(AT[0], AT[1], pixels, truth, "synthetic")]
        )
        *ordinary, control = sorted(regions(p), key=lambda r: r.image_id)
        assert control_for_image(p, control.image_id).id == control_id
        # stored, named and linked like an imported region
        assert (control.x, control.y, control.width, control.height) == AT
        assert control.origin == ordinary[0].origin == "lab"
        recs = [p.image(r.image_id) for r in (*ordinary, control)]
        assert recs[2].name == "bal.ome.tif[256,512,256x256]"
        assert recs[0].name == "bal.ome.tif[0,0,256x256]"
        assert {r.sequence for r in recs} == {"bal.ome.tif"}
        assert [r.frame for r in recs] == [0, 1, 2]
        assert {(r.channels, r.dtype, r.path.suffix) for r in recs} == {(3, "uint8", ".png")}
        sources = [
            p.db.execute("SELECT source_path FROM images WHERE id = ?", (r.id,)).fetchone()[0]
            for r in recs
        ]
        assert sources[2] == sources[0].replace("@0,0", "@256,512")  # <stored slide>@x,y
        # the gallery shows it as an unlabeled image; exports leave it out, its truth unseen
        tiles = {t.image_id: t for t in gallery_data.items(p, "vet")}
        assert (tiles[control.image_id].state, tiles[control.image_id].versions) == (
            tiles[ordinary[0].image_id].state,
            tiles[ordinary[0].image_id].versions,
        )
        assert p.latest_label(control.image_id) is None
        # 'previous' offers the neighbouring region's marks, as on an ordinary region
        before = Label(np.zeros((256, 256), np.uint32), {}, (Point(5, 5, 2),))
        assert offer_prelabel(p, control.image_id, before, "previous") is before
        assert np.array_equal(p.load_pixels(control.image_id), pixels)

        # on the slide: the composite is drawn over the region at every level, ordinary
        # regions show exactly the slide's pixels, so nothing looks pasted on
        work = SlideWork(p, control.image_id, "vet")
        try:
            with open_slide(work.record.path) as slide:
                x, y, w, h = AT
                for level, d in enumerate((1, 2, 4)):
                    key = TileKey(level, x // d // TILE, y // d // TILE)
                    tile, raw = work.tiles.get(key), read_tile(slide, key)
                    lx, ly = x // d - key.col * TILE, y // d - key.row * TILE
                    want = pixels
                    if d > 1:
                        want = cv2.resize(pixels, (w // d, h // d), interpolation=cv2.INTER_AREA)
                    got = tile[ly : ly + h // d, lx : lx + w // d]
                    assert np.array_equal(got, want), level
                    outside = np.ones(tile.shape[:2], bool)
                    outside[ly : ly + h // d, lx : lx + w // d] = False
                    assert np.array_equal(tile[outside], raw[outside])
                overview = work.overview()
                assert np.array_equal(overview[128:192, 64:128], want)
            for o in ordinary:
                other = SlideWork(p, o.image_id, "vet")
                try:
                    with open_slide(other.record.path) as slide:
                        for level in (0, 1):
                            key = TileKey(level, 0, 0)
                            assert np.array_equal(other.tiles.get(key), read_tile(slide, key))
                finally:
                    other.close()
            # marked on the slide and saved: scored against the hidden truth
            for obj in truth.objects:
                if isinstance(obj, Point):
                    work.active_class = obj.class_id
                    assert work.place_point(obj.x + x, obj.y + y)
                else:
                    assert isinstance(obj, Box)
                    work.active_class = obj.class_id
                    assert work.draw_box(obj.x0 + x, obj.y0 + y, obj.x1 + x, obj.y1 + y)
            work.save()
        finally:
            work.close()
        (row,) = score_rows(p, "vet")
        assert (row.n_truth, row.n_label, row.matched, row.class_correct) == (4, 4, 4, 4)
        assert control.image_id not in {e.record.id for e in exportable(p)}


def test_a_control_region_off_the_slide_or_on_another_region_is_refused(project: Path) -> None:
    with Project.open(project) as p:
        pixels, truth = _composite(project)
        before = len(p.images())
        for x, y, why in [(0, 128, "overlaps another region"), (1400, 0, "leaves the slide")]:
            with pytest.raises(ApplianceError, match=why):
                add_region_controls(p, "bal.ome.tif", [(x, y, pixels, truth, "synthetic")])
        with pytest.raises(ApplianceError, match="not RGB uint8"):
            add_region_controls(p, "bal.ome.tif", [(256, 512, pixels[..., 0], truth, "gold")])
        assert len(p.images()) == before and not p.control_image_ids()
