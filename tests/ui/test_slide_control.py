"""A control composed on a slide region, opened in the app's slide viewer: the planted cells
are what the viewer draws over the region, at full resolution and in the overview, like any
region's own pixels (docs/supervision.md "Controls on slide regions")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.importer import SlideRegions, import_paths
from appliance.labels import Box, Label
from appliance.session.slide_view import TILE
from appliance.store import Project
from appliance.supervision.controls import add_region_controls
from testkit.slides import tissue_image, write_ome_pyramid
from testkit.touch import pump, tap, wait_for

IMG = tissue_image(1024, 2048, seed=6)
AT = (1024, 512, 256, 256)


def _rgb(tex) -> np.ndarray:
    """A texture's pixels, top row first (as the tile array)."""
    w, h = tex.size
    rgba = np.frombuffer(tex.pixels, np.uint8).reshape(h, w, 4)
    return rgba[::-1, :, :3]


def test_the_viewer_draws_a_control_regions_composite(fresh, tmp_path: Path) -> None:
    slide = tmp_path / "case.ome.tif"
    write_ome_pyramid(slide, IMG, levels=3, tile=256)
    root = tmp_path / "proj"
    x, y, w, h = AT
    composite = IMG[y : y + h, x : x + w].copy()
    composite[100:130, 100:130] = (90, 50, 140)  # a planted cell where the slide has none
    with Project.create(root, ["neutrophil", "macrophage"]) as project:
        import_paths(project, [slide], slide_regions=SlideRegions(lab=((0, 0, 256, 256),)))
        truth = Label(np.zeros((h, w), np.uint32), {}, (Box(100, 100, 130, 130, 1),))
        add_region_controls(project, "case.ome.tif", [(x, y, composite, truth, "gold")])
        (image_id,) = project.control_image_ids()
    fresh(root)
    from kivy.app import App

    app = App.get_running_app()
    screen = app.sm.get_screen("slide")
    screen.open_region(image_id)
    viewer = screen.viewer
    tap(screen.buttons["full"])
    pump(2)
    wait_for(lambda: not viewer.pending and viewer.viewport.visible_tiles())
    wait_for(lambda: all(k in viewer.textures for k in viewer.viewport.visible_tiles()))
    key = next(k for k in viewer.textures if (k.level, k.col, k.row) == (0, x // TILE, y // TILE))
    shown = _rgb(viewer.textures[key])
    assert np.array_equal(shown[y % TILE : y % TILE + h, x % TILE : x % TILE + w], composite)
    # the overview under the tiles (the coarsest level, 4× down) carries it too
    d = 4
    small = cv2.resize(composite, (w // d, h // d), interpolation=cv2.INTER_AREA)
    overview = _rgb(viewer.overview)
    assert np.array_equal(overview[y // d : (y + h) // d, x // d : (x + w) // d], small)
    screen.back()
    pump(2)
