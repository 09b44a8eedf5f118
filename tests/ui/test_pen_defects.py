"""Issue 12's defects, one UI test each: the real app under Xvfb, synthetic pen and fingers."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import settings
from appliance.bundles.install import install_model_bundle
from appliance.labels import Label
from testkit.touch import SynthHover, SynthTouch, pen_stroke, pump, tap, wait_for
from tests.ui.projects import make_project, upgrade_bundle


def _open(fresh, tmp_path, prelabel="none", n=3):
    project = make_project(tmp_path / "p", n=n)
    settings.PRELABEL.set(project, prelabel)
    screen = fresh(project.root)
    assert screen.work is not None
    return project, screen, screen.canvas_view


def test_a_late_prelabel_never_replaces_strokes_nor_blocks_the_pen(fresh, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path)
    cx, cy = canvas.to_window(40, 40)
    pen_stroke([(cx, cy), (cx + 30, cy)])
    drawn = canvas.session.label()
    settings.PRELABEL.set(project, "otsu")
    screen.presenter._start_prelabel()  # a pre-label that lands after the expert drew
    screen.show_panel()
    assert "cancel_prelabel" in screen.buttons
    wait_for(lambda: screen.offer is not None)
    assert canvas.session.label().equals(drawn)  # nothing drawn was replaced
    assert canvas.offer is not None and canvas.preview is None  # outlined, not swapped in
    assert "offer_reject" in screen.buttons
    pen_stroke([(cx, cy - 60), (cx + 30, cy - 60)])  # the pen still draws
    assert not canvas.session.label().equals(drawn)
    with_second = canvas.session.label()
    tap(screen.buttons["offer_reject"])
    assert screen.offer is None and canvas.offer is None
    assert canvas.session.label().equals(with_second)


def test_a_before_after_never_blocks_the_pen(fresh, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path)
    install_model_bundle(project, upgrade_bundle(tmp_path / "bundles"))
    cx, cy = canvas.to_window(128, 128)
    pen_stroke([(cx - 40 + 8 * i, cy) for i in range(11)])
    tap(screen.buttons["upgrade"])
    wait_for(lambda: "compare_reject" in screen.buttons)
    assert canvas.preview is not None
    coarse = canvas.session.label()
    pen_stroke([(cx, cy - 80), (cx + 20, cy - 80)])
    assert screen.presenter.compare is None and canvas.preview is None
    assert not canvas.session.label().equals(coarse)  # the stroke was drawn


def test_settings_round_trip_keeps_undo_class_zoom_pan_and_saves_nothing(fresh, app, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path)
    work = screen.work
    tap(screen.buttons["class:2"])
    cx, cy = canvas.to_window(60, 60)
    pen_stroke([(cx, cy), (cx + 40, cy)])
    canvas.zoom_about(canvas.zoom * 2.5, cx, cy)
    zoom, offset = canvas.zoom, canvas.offset
    label = canvas.session.label()
    visit = screen.buttons["settings"]
    scroll = visit.parent.parent.parent  # the side panel's scrolling part
    pump(2)
    if scroll.do_scroll_y:
        scroll.scroll_to(visit, animate=False)  # as the expert scrolls the panel to it
        pump(2)
    tap(visit)
    wait_for(lambda: app.sm.current == "settings")  # a scrolling panel releases 0.2 s late
    app.go("annotate")  # "Back to images"
    pump(2)
    assert screen.work is work and canvas.session.label().equals(label)
    assert (canvas.zoom, canvas.offset) == (zoom, offset)
    assert screen.presenter.active_class == 2 and screen.buttons["class:2"].state == "down"
    assert project.latest_label(work.image_id) is None  # no silent save
    tap(screen.buttons["undo"])
    assert not canvas.session.instances.any()


def test_the_eraser_end_and_the_barrel_button_erase(fresh, tmp_path):
    _project, screen, canvas = _open(fresh, tmp_path)
    cx, cy = canvas.to_window(128, 128)
    pen_stroke([(cx - 60 + 6 * i, cy) for i in range(21)])
    painted = canvas.session.instances.copy()
    assert screen.canvas_view.tool == "brush"
    eraser = SynthTouch("Wacom Intuos Pro M Pen Eraser", cx, cy, pressure=1.0).down()
    eraser.up()
    erased = canvas.session.instances
    assert (erased != painted).any() and not (erased > painted).any()
    ix, iy = canvas.to_image(cx, cy)
    assert erased[int(iy), int(ix)] == 0
    before = erased.copy()
    barrel = SynthTouch("pen", cx - 40, cy, pressure=1.0, button="right").down()
    barrel.up()
    assert not (canvas.session.instances > before).any()
    assert (canvas.session.instances != before).any()


def test_palm_is_ignored_app_wide_while_the_pen_is_down_or_hovering(
    fresh, app, tmp_path, monkeypatch
):
    from appliance.ui import palm as palm_guard  # not at import: it opens the window

    # a hover report counts for a minute here, not 0.5 s: a machine stalled that long between
    # the hover and the palm below would otherwise let the palm through
    monkeypatch.setattr(palm_guard, "HOVER_GRACE", 60.0)
    _project, screen, canvas = _open(fresh, tmp_path)
    image_id = screen.work.image_id
    cx, cy = canvas.to_window(100, 100)
    pen = SynthTouch("pen", cx, cy, pressure=0.7).down()
    tap(screen.buttons["skip"])  # the palm lands on Skip mid-stroke
    pen.move_to(cx + 30, cy)
    pen.up()
    pump(2)
    assert screen.work.image_id == image_id
    hover = SynthHover("pen", cx, cy)
    hover.at(cx, cy, "begin")
    skip = screen.buttons["skip"]
    hover.at(cx + 1, cy)  # drivers report hover continuously; the palm lands meanwhile
    palm = SynthTouch("finger", *skip.to_window(*skip.center)).down()
    palm.up()
    pump(2)
    assert screen.work.image_id == image_id
    hover.at(cx, cy, "end")
    tap(screen.buttons["skip"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != image_id)


def test_left_handed_layout_puts_navigation_left_of_the_image(fresh, app, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path)
    save = screen.buttons["save_next"]
    assert save.to_window(*save.center)[0] > canvas.right
    settings.LEFT_HANDED.set(project, True)
    app.go("settings")
    app.go("annotate")
    pump(3)
    assert save.to_window(*save.center)[0] < canvas.x
    tool = screen.buttons["tool:brush"]
    assert tool.to_window(*tool.center)[0] > canvas.right
    settings.LEFT_HANDED.set(project, False)


def test_mouse_multitouch_emulation_is_off_and_right_drag_pans(fresh, tmp_path):
    from kivy.config import Config
    from kivy.input.providers.mouse import MouseMotionEventProvider

    assert "disable_multitouch" in Config.get("input", "mouse")
    provider = MouseMotionEventProvider("mouse", Config.get("input", "mouse").split(",", 1)[1])
    assert provider.disable_multitouch
    _project, _screen, canvas = _open(fresh, tmp_path)
    offset, before = canvas.offset, canvas.session.instances.copy()
    cx, cy = canvas.center
    for _ in range(2):  # twice: the second right-drag must pan too, not zoom
        drag = SynthTouch("mouse", cx, cy, button="right").down()
        drag.move_to(cx + 50, cy + 20)
        drag.up()
    assert canvas.offset == pytest.approx((offset[0] + 100, offset[1] + 40))
    assert np.array_equal(canvas.session.instances, before)


def test_status_line_shows_progress_state_time_and_suggested_objects(fresh, app, tmp_path):
    _project, screen, canvas = _open(fresh, tmp_path, prelabel="otsu")
    wait_for(lambda: screen.offer is not None)
    screen.show_status()
    text = screen.status_label.text
    suggested = len(screen.offer.label.ids())
    assert screen.title_label.text == screen.work.record.name
    assert screen.progress_label.text.startswith("Image 1 of 3 · 0 done")
    assert f"0 objects + {suggested} suggested" in text and "· not saved ·" in text
    assert text.endswith((" s", " min"))  # elapsed time
    for line in (screen.title_label, screen.status_label):  # one line each, nothing cut off
        assert line._label.get_extents(line.text)[0] <= line.width
    tap(screen.buttons["offer_accept_edit"])
    cx, cy = canvas.to_window(20, 20)
    pen_stroke([(cx, cy), (cx + 10, cy)])
    assert "unsaved" in screen.status_label.text
    objects = len(canvas.session.classes)
    assert f"{objects} objects" in screen.status_label.text and objects >= suggested
    assert screen.zoom_label.text == f"{canvas.zoom:.0%}"


def test_messages_sit_in_their_slot_expand_and_clear_when_fixed(fresh, app, tmp_path):
    _project, screen, canvas = _open(fresh, tmp_path)
    from kivy.core.window import Window

    screen.set_tool("fill")
    x, y = canvas.to_window(2, 2)  # background touching the border: refused
    pen_stroke([(x, y)])
    bar = app.message
    assert bar.error and bar.opacity == 1 and bar.parent is Window
    slot = screen.message_slot
    assert bar.y >= slot.to_window(*slot.pos)[1] - 1 and bar.top <= canvas.y + 1  # not on the image
    screen.set_tool("brush")
    cx, cy = canvas.to_window(60, 60)
    pen_stroke([(cx, cy), (cx + 20, cy)])
    assert bar.opacity == 0  # solved: the error went away
    long = "A long message that explains in detail what happened. " * 8
    app.notify(long)
    pump(2)
    assert bar.shortened
    height = bar.height
    tap(bar)
    assert bar.expanded and bar.height > height and not bar.shortened
    tap(bar)
    assert bar.opacity == 0


def test_all_labeled_says_so_and_offers_export(fresh, app, tmp_path):
    from kivy.core.window import Window

    from appliance.ui.widgets import ChooserPopup

    project = make_project(tmp_path / "p", n=2, size=64)
    for image in project.images():
        project.save_label(image.id, Label.empty((64, 64)), author="x", source="manual")
    screen = fresh(project.root)
    assert screen.presenter.all_done and screen.work is None
    assert "All images are labeled" in screen.title_label.text
    assert screen.buttons["save_next"].disabled and screen.buttons["tool:brush"].disabled
    tap(screen.buttons["export"])
    assert app.sm.current == "home"
    popup = next(w for w in Window.children if isinstance(w, ChooserPopup))
    assert "training job" in popup.children[0].children[-1].text
    popup.dismiss()
    pump(2)
