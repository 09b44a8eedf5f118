"""Cells as points and boxes on the annotate screen (issue 23 item 3), driven by synthetic
pen and finger touches on the real app: Point and Box tools place marks of the active class,
undo and redo take them back and forth, they are drawn at every zoom with a marker of fixed
screen size, listed in the object list, saved and shown again as the core decodes them; an
image whose label was imported from QuPath GeoJSON points shows them. Checks run after the
frames that follow each touch (Kivy releases buttons deferred)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from appliance import settings
from appliance.label_io import import_geojson
from appliance.labels import Box, Point
from appliance.session.marks import MARKER_MM
from testkit.touch import SynthTouch, pump, tap, wait_for
from tests.ui.projects import make_project


@pytest.fixture(autouse=True)
def _brush_again(app):
    """The tool outlives a project in the app: the next test starts with the Brush again."""
    yield
    app.sm.get_screen("annotate").set_tool("brush")


def _tap(widget: object) -> None:
    tap(widget)
    pump(3)


def _pen(canvas, a, b=None) -> None:
    """A pen down at image point `a`, dragged in steps to `b` (None: a tap), then up."""
    touch = SynthTouch("pen", *canvas.to_window(*a), pressure=1.0).down()
    pump(1)
    if b is not None:
        for t in (0.25, 0.5, 0.75, 1.0):
            x = a[0] + (b[0] - a[0]) * t
            y = a[1] + (b[1] - a[1]) * t
            touch.move_to(*canvas.to_window(x, y))
            pump(1)
    touch.up()
    pump(2)


def _drawn(canvas):
    """(window centres of the point markers of `MARKER_MM`, number of box outlines) drawn."""
    from kivy.graphics import Mesh
    from kivy.graphics import Point as PointInstruction
    from kivy.metrics import mm

    kids = canvas._marks.children
    markers = [i for i in kids if isinstance(i, PointInstruction)]
    centres = [
        tuple(m.points[k : k + 2])
        for m in markers
        if m.pointsize == pytest.approx(mm(MARKER_MM))
        for k in range(0, len(m.points), 2)
    ]
    meshes = [i for i in kids if isinstance(i, Mesh)]
    boxes = len(meshes[0].vertices) // 64 if meshes else 0  # the dark outlines: all boxes
    return centres, boxes


def _close(found, expected, tol=0.6):
    assert len(found) == len(expected)
    for f, e in zip(found, expected, strict=True):
        assert type(f) is type(e) and f.class_id == e.class_id
        fb, eb = f.bounds(), e.bounds()
        assert fb == pytest.approx(eb, abs=tol), (f, e)


def test_points_and_boxes_placed_undone_redone_listed_saved_and_reopened(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=3, size=256)
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    canvas, work = screen.canvas_view, screen.work
    first = work.image_id
    _tap(screen.buttons["tool:point"])
    assert canvas.tool == "point" and screen.buttons["tool:point"].state == "down"
    _pen(canvas, (30.0, 40.0))
    _tap(screen.buttons["class:2"])
    _pen(canvas, (100.0, 60.0))
    _tap(screen.buttons["tool:box"])
    _pen(canvas, (120.0, 120.0), (180.0, 170.0))
    _tap(screen.buttons["class:1"])
    _pen(canvas, (20.0, 150.0), (60.0, 200.0))
    expected = (
        Point(30, 40, 1),
        Point(100, 60, 2),
        Box(120, 120, 180, 170, 2),
        Box(20, 150, 60, 200, 1),
    )
    session = work.session
    _close(session.objects, expected)
    assert screen.status_label.text.startswith("2 points · 2 boxes · unsaved")
    # drawn over the image: a marker of fixed screen size, at every zoom
    for zoom in (canvas.zoom, canvas.zoom * 3):
        canvas.zoom_about(zoom, *canvas.center)
        pump(2)
        centres, boxes = _drawn(canvas)
        found = sorted(c for xy in centres for c in xy)
        want = sorted(c for p in session.objects[:2] for c in canvas.to_window(p.x, p.y))
        assert found == pytest.approx(want, abs=0.5)  # a marker's size is fixed on screen
        assert boxes == 2
    canvas.fit()
    # undo takes the last box back, redo brings it again (one step each)
    _tap(screen.buttons["undo"])
    _close(session.objects, expected[:3])
    assert _drawn(canvas)[1] == 1
    _tap(screen.buttons["redo"])
    _close(session.objects, expected)
    # the object list has a row for each, a row selects its mark on the image
    _tap(screen.buttons["objects"])
    rows = sorted(k for k in screen.buttons if k.startswith(("point:", "box:")))
    assert rows == ["box:2", "box:3", "point:0", "point:1"]
    assert screen.buttons["point:1"].text.startswith("P2   debris")
    _tap(screen.buttons["point:1"])
    assert canvas.selected_mark == 1 and screen.presenter.selected_object == "point:1"
    _tap(screen.buttons["objects"])
    placed = session.objects
    _tap(screen.buttons["save_next"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != first)
    stored = project.latest_label(first).label  # decoded by the core
    assert stored.objects == placed
    _tap(screen.buttons["previous"])
    wait_for(lambda: screen.work is not None and screen.work.image_id == first)
    pump(2)
    assert screen.work.session.objects == placed
    assert _drawn(canvas)[1] == 2
    canvas.hide_overlay = True  # Raw held: the image alone, marks too are hidden
    pump(1)
    assert _drawn(canvas) == ([], 0)
    canvas.hide_overlay = False
    pump(1)
    assert len(_drawn(canvas)[0]) == 2


def test_a_tap_on_a_point_selects_it_a_drag_moves_it_and_delete_takes_a_box(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2, size=256)
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    canvas, session = screen.canvas_view, screen.work.session
    _tap(screen.buttons["tool:point"])
    _pen(canvas, (50.0, 50.0))
    _pen(canvas, (50.5, 50.5))  # on the point: selects it, no second one
    assert len(session.objects) == 1 and canvas.selected_mark == 0
    _pen(canvas, (50.0, 50.0), (90.0, 70.0))
    _close(session.objects, (Point(90, 70, 1),))
    _tap(screen.buttons["tool:box"])
    _pen(canvas, (120.0, 120.0), (200.0, 180.0))
    _tap(screen.buttons["tool:delete"])
    _pen(canvas, (200.0, 150.0))  # on the box's right edge
    _close(session.objects, (Point(90, 70, 1),))
    _tap(screen.buttons["undo"])
    assert len(session.objects) == 2
    _tap(screen.buttons["class:2"])
    _tap(screen.buttons["tool:reclass"])
    _pen(canvas, (90.5, 70.0))  # Set class takes the point under the pen
    assert session.objects[0].class_id == 2 and session.objects[1].class_id == 1
    _tap(screen.buttons["tool:pick"])
    _pen(canvas, (120.0, 150.0))  # on the box's left edge: its class becomes the active one
    assert screen.presenter.active_class == 1 and canvas.selected_mark == 1
    from kivy.core.window import Window

    Window.dispatch("on_key_down", 111, 0, "o", [])  # docked keyboard: o for Point
    pump(2)
    assert canvas.tool == "point" and screen.buttons["tool:point"].state == "down"
    Window.dispatch("on_key_down", 120, 0, "x", [])  # and x for Box
    pump(2)
    assert canvas.tool == "box" and screen.buttons["tool:box"].state == "down"
    down = [k for k, w in screen.buttons.items() if k.startswith("tool:") and w.state == "down"]
    assert down == ["tool:box"]  # one tool at a time, chosen by a letter too


def test_an_image_with_imported_geojson_points_shows_them_in_the_list(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2, size=256)
    settings.PRELABEL.set(project, "none")
    target = project.images()[1]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "MultiPoint", "coordinates": [[12.5, 20.0], [200, 80]]},
                "properties": {"objectType": "annotation", "classification": {"name": "debris"}},
            }
        ],
    }
    path = tmp_path / f"{target.name.rsplit('.', 1)[0]}.geojson"
    path.write_text(json.dumps(doc))
    summary = import_geojson(project, path)
    assert not summary.failed and not summary.unmatched
    screen = fresh(project.root)
    screen.presenter.jump(target.id)
    wait_for(lambda: screen.work is not None and screen.work.image_id == target.id)
    pump(2)
    assert screen.work.session.objects == (Point(12.5, 20.0, 2), Point(200, 80, 2))
    assert len(_drawn(screen.canvas_view)[0]) == 2  # two markers
    _tap(screen.buttons["objects"])
    assert "point:0" in screen.buttons and "point:1" in screen.buttons
    assert (
        "debris" in screen.buttons["point:1"].text and "200, 80" in screen.buttons["point:1"].text
    )
    _tap(screen.buttons["objects"])


def test_thousands_of_marks_are_drawn_with_a_few_instructions(app):
    """A QuPath import of thousands of cells pans smoothly: the marks are batched per class."""
    from kivy.graphics import InstructionGroup
    from kivy.graphics import Point as PointInstruction

    from appliance.ui.marks import draw_marks

    points = tuple(Point(float(i % 50) * 10, float(i // 50) * 10, 1 + i % 3) for i in range(2000))
    boxes = tuple(Box(i, i, i + 20.0, i + 30.0, 1 + i % 2) for i in range(500))
    group = InstructionGroup()
    draw_marks(group, points + boxes, lambda x, y: (2 * x, 3 * y), {}, selected=7)
    assert len(group.children) < 30
    drawn = [
        i.points
        for i in group.children
        if isinstance(i, PointInstruction) and i.pointsize == pytest.approx(_marker())
    ]
    found = sorted(zip(*(iter(v for pts in drawn for v in pts),) * 2, strict=True))
    assert found == sorted((2 * p.x, 3 * p.y) for p in points)


def _marker() -> float:
    from kivy.metrics import mm

    return mm(MARKER_MM)


def test_a_prelabels_points_are_drawn_until_rejected(fresh, tmp_path):
    from appliance.labels import Label
    from appliance.session.presenter import Offer

    project = make_project(tmp_path / "p", n=2, size=256)
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    canvas, presenter = screen.canvas_view, screen.presenter
    offered = Label(np.zeros((256, 256), np.uint32), {}, (Point(90, 40, 2),))
    presenter.offer = Offer("previous", offered)
    screen.show_layers()
    screen.show_panel()
    pump(2)
    assert _drawn(canvas)[0] == [pytest.approx(canvas.to_window(90, 40))]
    assert "1 objects" in screen.assist_box.children[-1].text  # the offer's panel counts it
    _tap(screen.buttons["offer_reject"])
    assert _drawn(canvas)[0] == [] and screen.work.session.objects == ()
