"""Pen draws exactly, fingers navigate without drawing, palm is ignored, undo/redo are exact."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest

from appliance.editing import Rect, capsule_mask
from appliance.labels import decode_instances
from appliance.session.workflow import pending_draft
from testkit.touch import SynthTouch, pen_stroke, pump, tap, wait_for
from tests.ui.projects import make_project


def _open(fresh, tmp_path):
    screen = fresh(make_project(tmp_path / "p", n=3).root)
    canvas = screen.canvas_view
    assert screen.work is not None
    return screen, canvas


def _expected(canvas, window_points, radius):
    """Independent of the editor: pixels whose centre is within radius of the pen's path."""
    shape = canvas.session.shape
    image_points = [canvas.to_image(x, y) for x, y in window_points]
    out = np.zeros(shape, bool)
    full = Rect.full(shape)
    for (xa, ya), (xb, yb) in itertools.pairwise(image_points):
        out |= capsule_mask(full, xa, ya, xb, yb, radius)
    return out


def test_pen_stroke_changes_exactly_the_pixels_under_it(fresh, tmp_path):
    screen, canvas = _open(fresh, tmp_path)
    screen.canvas_view.brush_size = 20
    before = canvas.session.instances.copy()
    cx, cy = canvas.to_window(128, 128)
    points = [(cx - 150 + 10 * i, cy - 40 + 3 * i) for i in range(31)]
    pen_stroke(points, pressure=1.0)
    pump(2)
    after = canvas.session.instances
    expected = _expected(canvas, points, 10.0)
    assert expected.sum() > 1000
    assert np.array_equal(after != before, expected)
    assert len(np.unique(after[expected])) == 1
    wait_for(lambda: pending_draft(screen.work.project) is not None)  # the writer thread's
    draft = pending_draft(screen.work.project)
    assert draft is not None and draft["image_id"] == screen.work.image_id
    assert np.array_equal(decode_instances(base64.b64decode(draft["instances"])), after)


def test_finger_pinch_zooms_without_drawing_and_palm_is_ignored(fresh, tmp_path):
    screen, canvas = _open(fresh, tmp_path)
    before = canvas.session.instances.copy()
    zoom0 = canvas.zoom
    cx, cy = canvas.center
    a = SynthTouch("finger", cx - 100, cy).down()
    b = SynthTouch("finger", cx + 100, cy).down()
    for step in range(1, 11):
        a.move_to(cx - 100 - 20 * step, cy)
        b.move_to(cx + 100 + 20 * step, cy)
    a.up()
    b.up()
    pump(2)
    assert canvas.zoom == pytest.approx(zoom0 * 3.0, rel=1e-6)
    assert np.array_equal(canvas.session.instances, before)
    offset = canvas.offset
    one = SynthTouch("finger", cx, cy).down()
    one.move_to(cx + 80, cy + 30)
    one.up()
    assert canvas.offset == pytest.approx((offset[0] + 80, offset[1] + 30))
    assert np.array_equal(canvas.session.instances, before)
    # palm rejection: a finger landing and moving while the pen is down does nothing
    pen = SynthTouch("pen", cx, cy, pressure=0.8).down()
    palm = SynthTouch("finger", cx + 200, cy - 200).down()
    palm.move_to(cx + 400, cy - 100)
    pen.move_to(cx + 5, cy + 5)
    palm.up()
    pen.up()
    assert canvas.offset == pytest.approx((offset[0] + 80, offset[1] + 30))
    assert canvas.zoom == pytest.approx(zoom0 * 3.0, rel=1e-6)
    assert len(screen.work.session.classes) == 1


def test_undo_redo_restore_the_exact_label(fresh, tmp_path):
    screen, canvas = _open(fresh, tmp_path)
    start = canvas.session.label()
    cx, cy = canvas.to_window(100, 100)
    pen_stroke([(cx + 4 * i, cy) for i in range(20)])
    first = canvas.session.label()
    pen_stroke([(cx + 30, cy - 60 + 6 * i) for i in range(20)])
    second = canvas.session.label()
    assert not second.equals(first)
    tap(screen.buttons["undo"])
    assert canvas.session.label().equals(first)
    tap(screen.buttons["undo"])
    assert canvas.session.label().equals(start)
    tap(screen.buttons["redo"])
    tap(screen.buttons["redo"])
    assert canvas.session.label().equals(second)
    assert canvas.session.classes == second.classes
    from kivy.core.window import Window

    Window.dispatch("on_key_down", 122, 0, "z", ["ctrl"])  # docked keyboard: Ctrl+Z
    assert canvas.session.label().equals(first)
