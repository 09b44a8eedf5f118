"""Issue 25 defect 10, first part: the status line said "saved" for an image never saved; a
message followed to the next screen and covered its buttons; the pen drew under the minimap;
the before/after bar shrank the image."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.session.presenter import Compare
from testkit.touch import SynthTouch, pen_stroke, pump, tap, wait_for
from tests.ui.conftest import SIZES
from tests.ui.projects import make_project


@pytest.fixture
def opened(opened_new):
    screen = opened_new(n=3)
    return screen, screen.canvas_view


def test_status_says_not_saved_until_a_version_exists(opened):
    screen, canvas = opened
    pump(2)
    assert "not saved" in screen.status_label.text  # opened, nothing stored for it
    first = screen.work.image_id
    cx, cy = canvas.to_window(20, 20)
    pen_stroke([(cx, cy), (cx + 20, cy)])
    pump(1)
    assert "unsaved" in screen.status_label.text
    tap(screen.buttons["save_next"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != first)
    pump(2)
    assert "not saved" in screen.status_label.text  # the next one was never saved either
    tap(screen.buttons["previous"])
    wait_for(lambda: screen.work is not None and screen.work.image_id == first)
    pump(2)
    words = screen.status_label.text.split(" · ")
    assert "saved" in words  # the version Save & next stored


def test_a_message_does_not_follow_to_the_next_screen(opened, app):
    screen, _canvas = opened
    tap(screen.buttons["on_slide"])  # not a region of a slide: a red message on annotate
    pump(2)
    assert app.message.opacity == 1 and app.message.parent is not None
    app.go("settings")  # as the Settings button does
    pump(2)
    assert app.message.opacity == 0 and app.message.parent is None
    app.go("annotate")
    pump(2)


def test_a_pen_stroke_that_starts_on_the_minimap_moves_the_view_and_draws_nothing(opened):
    _screen, canvas = opened
    cx, cy = canvas.center
    canvas.zoom_about(canvas.zoom * 6, cx, cy)
    pump(2)
    assert canvas.minimap_shown
    before = canvas.session.instances.copy()
    mx, my = canvas._minimap.pos
    mw, mh = canvas._minimap.size
    pen_stroke([(mx + mw * 0.2, my + mh * 0.8), (mx + mw * 0.3, my + mh * 0.7)])
    pump(2)
    assert np.array_equal(canvas.session.instances, before) and not canvas.session.can_undo
    h, w = canvas.session.shape
    ix, iy = canvas.to_image(canvas.center_x, canvas.center_y)
    assert ix == pytest.approx(w * 0.3, abs=2) and iy == pytest.approx(h * 0.3, abs=2)
    # a finger on the minimap navigates too, and the pen draws again off it
    touch = SynthTouch("finger", mx + mw / 2, my + mh / 2).down()
    touch.up()
    ix, iy = canvas.to_image(canvas.center_x, canvas.center_y)
    assert ix == pytest.approx(w / 2, abs=2) and iy == pytest.approx(h / 2, abs=2)
    pen_stroke([(cx, cy), (cx + 30, cy)])
    assert canvas.session.can_undo


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_before_after_bar_keeps_the_image_size_and_messages_off_its_buttons(
    fresh, app, window, tmp_path, size
):
    project = make_project(tmp_path / "p", n=2)
    project.set_setting("ui.prelabel", "otsu")
    window(*size)
    screen = fresh(project.root)
    wait_for(lambda: screen.offer is not None)
    pump(3)
    canvas = screen.canvas_view
    size_before, zoom_before = tuple(canvas.size), canvas.zoom
    offer = screen.offer.label
    screen.presenter.show_compare(Compare("Upgrade", offer, offer, "upgrade"))
    pump(4)
    assert screen.buttons["compare_accept"].get_root_window() is not None
    assert tuple(canvas.size) == size_before and canvas.zoom == zoom_before
    app.notify("a message while the before/after is on show")
    pump(2)
    for wid in ("compare_before", "compare_after", "compare_accept", "compare_reject"):
        assert not app.message.collide_widget(screen.buttons[wid]), wid
    tap(screen.buttons["compare_reject"])
    pump(4)
    assert tuple(canvas.size) == size_before and canvas.zoom == zoom_before
