"""Viewport maths (pure functions, no Kivy): fit, round trips, zoom about a point, clamps."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.session import viewport as vp

SHAPE, SIZE = (400, 800), (1000.0, 600.0)  # image h×w, widget w×h


def test_fit_centres_the_whole_image():
    view = vp.fit(SHAPE, SIZE)
    assert view.zoom == pytest.approx(1.25)  # 800 px wide into 1000
    assert view.offset == pytest.approx((0.0, (600 - 400 * 1.25) / 2))
    assert vp.visible(view, SHAPE, SIZE) == pytest.approx((0, 0, 800, 400))


def test_image_and_widget_coordinates_round_trip_with_rows_down():
    view = vp.View(2.0, (10.0, 20.0))
    assert vp.to_widget(view, 400, 0, 400) == (10.0, 20.0)  # bottom-left image corner
    assert vp.to_image(view, 400, 10.0, 820.0) == (0.0, 0.0)  # top-left is row 0
    for point in ((3.5, 7.25), (799.0, 1.0)):
        assert vp.to_image(view, 400, *vp.to_widget(view, 400, *point)) == pytest.approx(point)


def test_zoom_about_keeps_the_point_under_the_finger_and_clamps():
    view = vp.fit(SHAPE, SIZE)
    under = vp.to_image(view, 400, 300.0, 200.0)
    zoomed = vp.zoom_about(view, SHAPE, SIZE, 5.0, 300.0, 200.0)
    assert zoomed.zoom == 5.0
    assert vp.to_image(zoomed, 400, 300.0, 200.0) == pytest.approx(under)
    assert vp.zoom_about(view, SHAPE, SIZE, 1000.0, 0, 0).zoom == vp.MAX_ZOOM
    assert vp.zoom_about(view, SHAPE, SIZE, 0.01, 0, 0).zoom == vp.min_zoom(SHAPE, SIZE) == 1.0


def test_visible_part_when_zoomed_and_panned():
    view = vp.place(4.0, 400, 100.0, 50.0, 0.0, 600.0)  # image (100, 50) at the top-left
    x0, y0, x1, y1 = vp.visible(view, SHAPE, SIZE)
    assert (x0, y0) == pytest.approx((100.0, 50.0))
    assert (x1, y1) == pytest.approx((100 + 1000 / 4, 50 + 600 / 4))
    assert vp.pan(view, 8, -4).offset == (view.offset[0] + 8, view.offset[1] - 4)


def test_double_tap_toggles_between_fit_and_one_to_one():
    fitted = vp.fit(SHAPE, SIZE)
    one = vp.toggle_fit(fitted, SHAPE, SIZE, 500.0, 300.0)
    assert one.zoom == 1.0
    assert vp.to_image(one, 400, 500, 300) == pytest.approx(vp.to_image(fitted, 400, 500, 300))
    assert vp.toggle_fit(one, SHAPE, SIZE, 10, 10) == fitted


def test_focus_centres_an_object_and_keeps_the_zoom_sane():
    fitted = vp.fit(SHAPE, SIZE)  # 1.25
    centre = (SIZE[0] / 2, SIZE[1] / 2)
    # a mid-sized object: zoomed in until it fills 40 % of the view, centred
    view = vp.focus(fitted, SHAPE, SIZE, (100, 100, 160, 140))
    assert view.zoom == pytest.approx(min(1000 * 0.4 / 60, 600 * 0.4 / 40))
    assert vp.to_widget(view, 400, 130, 120) == pytest.approx(centre)
    # a speck: zoomed in no further than 8×
    assert vp.focus(fitted, SHAPE, SIZE, (10, 10, 11, 11)).zoom == vp.FOCUS_MAX_ZOOM
    # already closer than that: the zoom stays, only the view moves
    close = vp.View(20.0, (0.0, 0.0))
    view = vp.focus(close, SHAPE, SIZE, (10, 10, 12, 12))
    assert view.zoom == 20.0 and vp.to_widget(view, 400, 11, 11) == pytest.approx(centre)
    # an object larger than the view at this zoom: zoomed out until all of it fits
    view = vp.focus(close, SHAPE, SIZE, (0, 0, 400, 300))
    assert view.zoom == pytest.approx(600 * 0.8 / 300)
    x0, y0, x1, y1 = vp.visible(view, SHAPE, SIZE)
    assert x0 <= 0 + 1e-9 and y0 <= 0 + 1e-9 and x1 >= 400 and y1 >= 300


@pytest.mark.parametrize(
    "view",
    [
        vp.fit(SHAPE, SIZE),  # letterboxed above and below
        vp.fit((800, 400), SIZE),  # pillarboxed left and right
        vp.View(0.5, (30.0, 40.0)),  # small, off-centre: four bands
        vp.View(4.0, (-100.0, -200.0)),  # zoomed in past every edge: none
        vp.View(1.0, (5000.0, 0.0)),  # panned off: the whole widget
    ],
)
def test_the_margins_and_the_image_tile_the_widget(view):
    """The background is painted only beside the image (it is opaque): the bands and the
    visible image cover the widget exactly, without overlapping."""
    w, h = SIZE
    cover = np.zeros((int(h), int(w)), int)
    for x, y, bw, bh in vp.margins(view, SHAPE, SIZE):
        cover[int(y) : int(y + bh), int(x) : int(x + bw)] += 1
    ox, oy = view.offset
    x0, y0 = max(0, int(ox)), max(0, int(oy))
    x1, y1 = int(ox + SHAPE[1] * view.zoom), int(oy + SHAPE[0] * view.zoom)
    if x0 < min(x1, w) and y0 < min(y1, h):
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_the_image_level_is_never_magnified_nor_minified_by_two():
    """`texture_step`: zoomed out, the level drawn is between its own size and half of it on
    the screen (never blown up: no blur; never 2× smaller: no cache-missing minification)."""
    for zoom in np.geomspace(1 / 64, 4, 97):
        step = vp.texture_step(float(zoom))
        if step == 1:
            assert zoom > 0.5, zoom  # the full image from half size up
        else:
            assert 0.5 < zoom * step <= 1.0, zoom


def test_no_zoom_yet_draws_the_image_itself():
    """A widget not laid out yet has no size and a fitted zoom of 0: the full image, at once
    (a doubling loop never ended there)."""
    assert vp.texture_step(0.0) == 1
    assert vp.texture_step(vp.fit(SHAPE, (0.0, 0.0)).zoom) == 1
