"""Features pen users expect: hold to compare, double tap fit/1:1, minimap, zoom %, brush size
buttons and a brush outline before the pen touches."""

from __future__ import annotations

import pytest

from appliance import settings
from testkit.touch import SynthHover, SynthTouch, pump, tap


@pytest.fixture
def opened(opened_new):
    screen = opened_new(n=2)
    return screen, screen.canvas_view


def test_hold_to_compare_hides_the_overlay_only_while_pressed(opened):
    screen, canvas = opened
    hold = screen.buttons["hold_compare"]
    x, y = hold.to_window(*hold.center)
    touch = SynthTouch("finger", x, y).down()
    assert canvas.hide_overlay and canvas._overlay_color.a == 0
    touch.up()
    assert not canvas.hide_overlay and canvas._overlay_color.a == 1


def test_double_tap_toggles_fit_and_one_to_one_and_the_minimap_follows_zoom(opened):
    screen, canvas = opened
    fitted = canvas.zoom
    cx, cy = canvas.center
    SynthTouch("finger", cx, cy, double=True).down().up()
    assert canvas.zoom == 1.0
    SynthTouch("finger", cx, cy, double=True).down().up()
    assert canvas.zoom == pytest.approx(fitted)
    assert screen.zoom_label.text == f"{canvas.zoom:.0%}"
    assert not canvas.minimap_shown
    canvas.zoom_about(fitted * 6, cx, cy)
    pump(1)
    assert canvas.minimap_shown and screen.zoom_label.text == f"{fitted * 6:.0%}"
    x, _y, w, _h = canvas._minimap_view.rectangle
    mx, _my = canvas._minimap.pos
    mw, _mh = canvas._minimap.size
    shown = canvas.width / canvas.zoom / canvas.session.shape[1]  # fraction of the width
    assert mx <= x and x + w <= mx + mw + 1 and w == pytest.approx(mw * shown, rel=0.05)
    tap(screen.buttons["fit"])
    assert not canvas.minimap_shown


def test_brush_buttons_and_the_outline_before_the_pen_touches(opened):
    screen, canvas = opened
    size = canvas.brush_size
    tap(screen.buttons["brush_bigger"])
    assert canvas.brush_size == round(size * 1.25)
    assert screen.size_label.text == f"{round(canvas.brush_size)} px"
    tap(screen.buttons["brush_smaller"])
    tap(screen.buttons["brush_smaller"])
    assert canvas.brush_size < size
    cx, cy = canvas.center
    hover = SynthHover("pen", cx, cy)
    hover.at(cx, cy, "begin")
    pump(1)  # Kivy builds the circle when it draws
    x, y, radius_px = canvas._cursor.circle[:3]  # the outline shows before any contact
    assert (x, y) == pytest.approx((cx, cy), abs=2)
    assert radius_px == pytest.approx(canvas.brush_size / 2 * canvas.zoom, rel=0.01)
    hover.at(cx, cy, "end")
    pump(1)
    assert not canvas._cursor.points
    assert not canvas.session.instances.any()


def _two_fingers(a, b, da, db):
    """Two fingers down at window points a and b, moved by da and db in reports of at most
    10 px, one finger at a time as touch drivers do; both still down."""
    ta, tb = SynthTouch("finger", *a).down(), SynthTouch("finger", *b).down()
    steps = max(1, round(max(map(abs, (*da, *db))) / 10))
    for k in range(1, steps + 1):
        f = k / steps
        ta.move_to(a[0] + da[0] * f, a[1] + da[1] * f)
        tb.move_to(b[0] + db[0] * f, b[1] + db[1] * f)
    pump(1)
    return ta, tb


def test_two_fingers_dragged_up_together_grow_the_brush_and_a_pinch_still_zooms(opened):
    screen, canvas = opened
    project = screen.presenter.project
    zoom, offset, size = canvas.zoom, canvas.offset, canvas.brush_size
    cx, cy = canvas.center
    a, b = (cx - 150, cy - 200), (cx + 150, cy - 200)
    ta, tb = _two_fingers(a, b, (4, 220), (-3, 210))  # slightly uneven, as real fingers are
    grown = canvas.brush_size
    assert grown > size * 1.5
    assert (canvas.zoom, canvas.offset) == (zoom, offset)  # no zoom, no pan
    # while it changes: the outline between the fingers and the size in px
    x, y, radius = canvas._cursor.circle[:3]
    assert (x, y) == pytest.approx((cx, cy - 200 + 215), abs=3)
    assert radius == pytest.approx(grown / 2 * canvas.zoom, rel=0.01)
    assert canvas._size_text.size[0] > 0
    assert screen.size_label.text == f"{round(grown)} px"
    ta.up()
    tb.up()
    pump(1)
    assert not canvas._cursor.points and canvas._size_text.size == (0, 0)
    assert settings.BRUSH_SIZE.get(project) == round(grown)  # kept for the next session
    ta, tb = _two_fingers(a, b, (0, -350), (0, -350))  # down: smaller
    ta.up()
    tb.up()
    small = canvas.brush_size
    assert settings.BRUSH_SIZE.low <= small < grown / 4
    # a pinch (the distance changes) zooms and leaves the brush alone
    ta, tb = _two_fingers(a, b, (-120, 0), (120, 0))
    ta.up()
    tb.up()
    assert canvas.zoom > zoom * 1.5 and canvas.brush_size == small
    assert not canvas.session.instances.any()
