"""A control composed on a slide region reaches every tablet of the project as what it is there
too: a region of the slide at the same place, hidden among the others, its composite drawn on
the slide, its truth scored on the receiving tablet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.importer import SlideRegions, import_paths
from appliance.labels import Box, Label
from appliance.session.slide_view import TILE, TileKey
from appliance.session.slide_work import SlideWork
from appliance.store.controls import control_for_image, score_rows
from appliance.store.slides import regions
from appliance.supervision.controls import add_region_controls
from appliance.sync.client import sync_project
from testkit.slides import tissue_image, write_ome_pyramid
from tests.lab.conftest import tablet

IMG = tissue_image(600, 800, seed=7)


def test_a_region_control_syncs_as_a_region_of_the_slide(tmp_path: Path, lab) -> None:
    path = tmp_path / "section.ome.tif"
    write_ome_pyramid(path, IMG, levels=2, tile=128, mpp=0.5)
    a = tablet(tmp_path / "a", lab, "P", "tab-a")
    b = tablet(tmp_path / "b", lab, "P", "tab-b")
    import_paths(a, [path], slide_regions=SlideRegions(lab=((0, 0, 128, 128),)))
    pixels = IMG[256:384, 512:640].copy()
    pixels[40:60, 40:60] = (90, 50, 140)  # a planted cell
    truth = Label(np.zeros((128, 128), np.uint32), {}, (Box(40, 40, 60, 60, 1),))
    add_region_controls(a, "section.ome.tif", [(512, 256, pixels, truth, "synthetic")])
    sync_project(a)
    assert sync_project(b).ops_refused == []
    (image_id,) = b.control_image_ids()
    place = {r.image_id: (r.x, r.y, r.width, r.height, r.origin) for r in regions(b)}
    assert place[image_id] == (512, 256, 128, 128, "lab") and len(place) == 2
    assert control_for_image(b, image_id).truth.objects == truth.objects
    work = SlideWork(b, image_id, "ben")
    try:
        tile = work.tiles.get(TileKey(0, 512 // TILE, 256 // TILE))
        assert np.array_equal(tile[256 % TILE : 256 % TILE + 128, 0:128], pixels)
        work.active_class = 1
        assert work.draw_box(512 + 40, 256 + 40, 512 + 60, 256 + 61)
        work.save()
    finally:
        work.close()
    (row,) = score_rows(b, "ben")
    assert (row.n_truth, row.matched, row.class_correct) == (1, 1, 1)
