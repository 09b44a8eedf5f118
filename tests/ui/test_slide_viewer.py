"""A slide on the tablet: overview to full resolution from the pyramid, points and boxes of two
classes placed with the pen, saved, reopened identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.importer import SlideRegions, import_paths
from appliance.labels import Box, Point
from appliance.session.slide_view import TileKey
from appliance.store import Project
from appliance.store.slides import regions
from testkit.slides import tissue_image, write_ome_pyramid
from testkit.touch import pen_stroke, pump, tap, wait_for

REGION = (2048, 1024, 512, 512)


def _slide_project(tmp_path: Path) -> tuple[Path, int]:
    slide = tmp_path / "case.ome.tif"
    write_ome_pyramid(slide, tissue_image(3000, 5000, seed=4), levels=3, tile=256)
    root = tmp_path / "proj"
    with Project.create(root, ["neutrophil", "macrophage"]) as project:
        summary = import_paths(project, [slide], slide_regions=SlideRegions(lab=(REGION,)))
        assert not summary.failed
        (region,) = regions(project)
    return root, region.image_id


def _settled(viewer) -> bool:
    tiles = viewer.viewport.visible_tiles()
    return bool(tiles) and not viewer.pending and all(k in viewer.textures for k in tiles)


def test_overview_to_full_resolution_points_and_boxes_saved_and_reopened(fresh, tmp_path):
    root, image_id = _slide_project(tmp_path)
    annotate = fresh(root)
    from kivy.app import App

    app = App.get_running_app()
    assert annotate.work is not None and annotate.work.image_id == image_id
    tap(annotate.buttons["on_slide"])  # the region the selector served opens on its slide
    screen = app.sm.get_screen("slide")
    assert app.sm.current == "slide" and screen.work is not None
    viewer = screen.viewer
    pump(3)
    wait_for(lambda: _settled(viewer))
    vp = viewer.viewport  # the whole slide, fitted to the laid-out viewer (not its first size)
    assert vp.size == (viewer.width, viewer.height)
    assert vp.scale == min(vp.size[0] / 5000, vp.size[1] / 3000)
    assert vp.level() == 1  # ~2.8 level-0 px per screen px: level 1 (2×), never finer
    overview_tiles = len(viewer.viewport.visible_tiles())

    tap(screen.buttons["full"])
    wait_for(lambda: _settled(viewer))
    vp = viewer.viewport
    assert vp.scale == 1.0 and vp.level() == 0
    level0_tiles = vp.visible_tiles()
    cols = -(-5000 // 512)
    assert 0 < len(level0_tiles) < cols * 6  # only what the screen shows, not the level
    # level 0 read only where the screen shows it; coarser levels only for the fitted view (and
    # the one frame the layout shows at an intermediate size on the first opening)
    cache = screen.work.tiles
    read0 = [TileKey(0, c, r) for c in range(cols) for r in range(6) if TileKey(0, c, r) in cache]
    assert sorted(read0) == sorted(level0_tiles)
    assert len(cache) <= 2 * overview_tiles + len(level0_tiles)

    x0, y0 = REGION[0], REGION[1]
    marks = [
        ("class:1", [(x0 + 100.5, y0 + 80.5)]),
        ("class:2", [(x0 + 300.5, y0 + 200.5)]),
        ("class:2", [(x0 + 20.5, y0 + 300.5), (x0 + 60.5, y0 + 340.5), (x0 + 120.5, y0 + 400.5)]),
        ("class:1", [(x0 + 400.5, y0 + 30.5), (x0 + 480.5, y0 + 130.5)]),
    ]
    for class_button, points in marks:
        tap(screen.buttons[class_button])
        pen_stroke([viewer.slide_to_window(x, y) for x, y in points])
        pump(2)
    # every mark is in the crash draft at once
    import base64

    from appliance.labels import decode_label
    from appliance.session.workflow import pending_draft

    draft = pending_draft(screen.work.work.project)
    assert draft is not None and draft["image_id"] == image_id
    assert len(decode_label(base64.b64decode(draft["instances"]), {}).objects) == 4
    # a tap off the region belongs to no task: nothing is placed
    pen_stroke([viewer.slide_to_window(x0 - 200, y0 - 200)])
    objects = screen.work.objects()
    assert [type(o) for o in objects] == [Point, Point, Box, Box]
    assert [o.class_id for o in objects] == [1, 2, 2, 1]
    want = [(100.5, 80.5), (300.5, 200.5), (20.5, 300.5, 120.5, 400.5), (400.5, 30.5, 480.5, 130.5)]
    for obj, coords in zip(screen.work.work.session.objects, want, strict=True):
        got = obj.bounds()[: len(coords)] if isinstance(obj, Box) else obj.bounds()[:2]
        assert np.allclose(got, coords, atol=1.0), (got, coords)  # the pen lands within a pixel

    # a finger tap selects: the first point gets class 2, the last box goes, undo brings it back
    from testkit.touch import SynthTouch

    def finger_tap(x: float, y: float) -> None:
        SynthTouch("finger", *viewer.slide_to_window(x, y)).down().up()
        pump(2)

    finger_tap(x0 + 101, y0 + 81)
    assert viewer.selected == 0
    tap(screen.buttons["class:2"])
    tap(screen.buttons["reclass"])
    assert screen.work.objects()[0].class_id == 2
    finger_tap(x0 + 440, y0 + 80)
    assert viewer.selected == 3
    tap(screen.buttons["delete"])
    assert len(screen.work.objects()) == 3
    tap(screen.buttons["undo"])
    assert [o.class_id for o in screen.work.objects()] == [2, 2, 2, 1]
    # a pen landing on a point drags it along; on a box's corner it resizes the box
    pen_stroke(
        [
            viewer.slide_to_window(x, y)
            for x, y in ((x0 + 300.5, y0 + 200.5), (x0 + 330.5, y0 + 220.5))
        ]
    )
    pump(2)
    pen_stroke(
        [
            viewer.slide_to_window(x, y)
            for x, y in ((x0 + 480.5, y0 + 130.5), (x0 + 500.5, y0 + 160.5))
        ]
    )
    pump(2)
    moved = screen.work.work.session.objects
    assert len(moved) == 4 and np.allclose(moved[1].bounds()[:2], (330.5, 220.5), atol=1.0)
    assert np.allclose(moved[3].bounds(), (400.5, 30.5, 500.5, 160.5), atol=1.0)

    tap(screen.buttons["save"])
    pump(2)
    saved = screen.work.work.session.label()
    tap(screen.buttons["back"])
    pump(3)
    screen.open_region(image_id)
    wait_for(lambda: _settled(viewer))
    assert screen.work.work.session.label().equals(saved)
    assert not screen.work.work.dirty
    with Project.open(root) as project:
        stored = project.latest_label(image_id)
        assert stored is not None and stored.source == "manual"
        assert stored.label.equals(saved) and stored.label.objects == saved.objects
    tap(screen.buttons["back"])
    pump(2)
