"""The Point and Box tools without a screen (`appliance.session.marks`): what a pen gesture
places, moves, resizes or selects, each change one undo step in the masks' history."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.editing import EditSession
from appliance.labels import Box, Label, Point, decode_label, encode_label
from appliance.session.marks import BOX, POINT, finish, grab, mark_at, shaped

TOL = 3.0  # grab tolerance in image px


def _session(objects: tuple = ()) -> EditSession:
    return EditSession(Label(np.zeros((100, 120), np.uint32), {}, objects), active_class=2)


def _gesture(session, tool, a, b, tapped=None):
    drag = grab(session.objects, tool, *a, TOL)
    if tapped is None:
        tapped = a == b
    return finish(session, drag, *b, tapped, TOL)


def test_point_tool_tap_places_a_point_of_the_active_class_and_a_tap_on_it_selects_it():
    session = _session()
    rect, selected = _gesture(session, POINT, (30.5, 40.0), (30.5, 40.0))
    assert session.objects == (Point(30.5, 40.0, 2),) and selected is None and rect is not None
    session.active_class = 1
    rect, selected = _gesture(session, POINT, (32.0, 41.0), (32.0, 41.0))  # on the first
    assert rect is None and selected == 0 and len(session.objects) == 1
    _gesture(session, POINT, (80.0, 10.0), (80.0, 10.0))
    assert session.objects[1] == Point(80.0, 10.0, 1)
    assert _gesture(session, POINT, (-5.0, 10.0), (-5.0, 10.0)) == (None, None)  # off the image


def test_point_tool_drag_from_a_point_moves_it_as_one_undo_step_kept_on_the_image():
    session = _session((Point(30, 40, 1), Point(60, 60, 2)))
    drag = grab(session.objects, POINT, 61, 59, TOL)
    assert drag.index == 1
    assert shaped(drag, session, 70, 20) == Point(70, 20, 2)  # what is drawn while dragging
    rect, selected = finish(session, drag, 70, 20, False, TOL)
    assert session.objects == (Point(30, 40, 1), Point(70, 20, 2)) and selected == 1
    assert rect is not None and rect.x0 <= 60 and rect.y1 >= 60  # old and new place redrawn
    _gesture(session, POINT, (30, 40), (500, -9), tapped=False)
    assert session.objects[0] == Point(120, 0, 1)  # clamped to the image's corner
    session.undo()
    session.undo()
    assert session.objects == (Point(30, 40, 1), Point(60, 60, 2))
    session.redo()
    assert session.objects[1] == Point(70, 20, 2)


def test_box_tool_drag_draws_a_box_a_short_one_is_a_tap_that_selects():
    session = _session((Point(5, 5, 1),))
    rect, selected = _gesture(session, BOX, (50, 60), (20, 30), tapped=False)
    assert session.objects[1] == Box(20, 30, 50, 60, 2) and rect is not None and selected is None
    rect, selected = _gesture(session, BOX, (30, 40), (31, 40.5), tapped=False)  # < 2 px
    assert rect is None and selected == 1 and len(session.objects) == 2  # inside: selected
    rect, selected = _gesture(session, BOX, (90, 90), (90, 90))
    assert (rect, selected) == (None, None) and len(session.objects) == 2  # nothing there
    assert _gesture(session, BOX, (6, 5), (6, 5)) == (None, 0)  # a tap near a point selects it


def test_box_tool_corner_resizes_with_the_opposite_corner_fixed_edge_moves_within_the_image():
    session = _session((Box(20, 30, 50, 60, 1),))
    drag = grab(session.objects, BOX, 51, 61, TOL)  # the bottom-right corner
    assert drag.index == 0 and drag.anchor == (20, 30)
    finish(session, drag, 80, 90, False, TOL)
    assert session.objects == (Box(20, 30, 80, 90, 1),)
    drag = grab(session.objects, BOX, 50, 31, TOL)  # the top edge: move
    assert drag.index == 0 and drag.anchor is None
    finish(session, drag, 150, 31, False, TOL)
    assert session.objects == (Box(60, 30, 120, 90, 1),)  # stopped at the right border
    drag = grab(session.objects, BOX, 60, 30, TOL)  # a corner pulled onto its opposite one
    assert finish(session, drag, 119, 89, False, TOL) == (None, 0)
    assert session.objects == (Box(60, 30, 120, 90, 1),)  # too thin: unchanged
    session.undo()
    session.undo()
    assert session.objects == (Box(20, 30, 50, 60, 1),)
    assert grab(session.objects, BOX, 35, 45, TOL).index is None  # inside: a new box


def test_marks_and_masks_share_one_history_and_are_saved_in_one_label():
    session = _session()
    session.begin_stroke(10, 10, 4)
    session.end_stroke()
    _gesture(session, POINT, (60, 20), (60, 20))
    session.active_class = 1
    _gesture(session, BOX, (70, 50), (100, 90), tapped=False)
    mask = session.instances.copy()
    label = session.label()
    stored = decode_label(encode_label(label), label.classes)
    assert stored.objects == (Point(60, 20, 2), Box(70, 50, 100, 90, 1))
    assert np.array_equal(stored.instances, mask)
    session.undo()
    assert session.objects == (Point(60, 20, 2),)
    session.undo()
    assert session.objects == () and np.array_equal(session.instances, mask)
    session.undo()
    assert not session.instances.any()
    for _ in range(3):
        session.redo()
    assert session.label().objects == label.objects
    assert np.array_equal(session.instances, mask)


def test_delete_reclass_and_pick_take_a_point_or_a_box_outline_first():
    objects = (Box(0, 0, 40, 40, 1), Point(20, 20, 2))
    assert mark_at(objects, 21, 21, TOL) == 1
    assert mark_at(objects, 39, 10, TOL) == 0
    assert mark_at(objects, 10, 10, TOL) is None  # inside the box: a mask there comes first


def test_set_object_refuses_a_place_off_the_image_and_a_missing_index():
    session = _session((Point(5, 5, 1),))
    assert session.set_object(0, Point(5, 5, 1)) is None  # no change
    assert session.set_object(0, Point(130, 5, 1)) is None
    assert session.set_object(3, Point(6, 5, 1)) is None
    assert not session.can_undo


@pytest.mark.parametrize("tool", [POINT, BOX])
def test_a_new_mark_on_an_image_border_stays_inside(tool):
    session = _session()
    drag = grab(session.objects, tool, 110, 90, TOL)
    finish(session, drag, 140, 130, False, TOL)
    (obj,) = session.objects
    assert obj.bounds()[2] <= 120 and obj.bounds()[3] <= 100


def test_gallery_pictures_show_points_and_boxes_in_class_colours():
    """A version of marked cells does not look empty in the gallery or its before/after."""
    from appliance.overlay import class_colour
    from appliance.session.gallery_data import picture

    display = np.full((200, 100), 60, np.uint8)
    label = Label(np.zeros((200, 100), np.uint32), {}, (Point(20, 40, 1), Box(50, 100, 90, 180, 2)))
    out = picture(display, label, size=100)  # half size
    assert out.shape == (100, 50, 3)
    assert tuple(out[20, 10]) == class_colour(1)  # the point's disc
    assert tuple(out[70, 25]) == class_colour(2)  # the box's left edge
    assert tuple(out[70, 35]) == (60, 60, 60)  # inside the box: the image
    assert np.array_equal(picture(display, Label(label.instances), size=100), np.full_like(out, 60))


def test_the_slide_viewers_mark_gesture_tap_point_drag_box_and_takes_hold_of_marks():
    from appliance.session.marks import MARK

    session = _session()
    assert _gesture(session, MARK, (30.0, 40.0), (30.0, 40.0)) == (_rect_of(session, 0), None)
    _gesture(session, MARK, (50.0, 50.0), (80.0, 90.0), tapped=False)
    assert session.objects == (Point(30, 40, 2), Box(50, 50, 80, 90, 2))
    assert _gesture(session, MARK, (60.0, 60.0), (60.5, 60.5), tapped=False) == (None, None)
    assert len(session.objects) == 2  # a drag too thin for a box is a slip: nothing
    assert _gesture(session, MARK, (31.0, 40.0), (31.0, 40.0)) == (None, 0)  # tap: select
    _gesture(session, MARK, (80.0, 90.0), (100.0, 95.0), tapped=False)  # a corner: resize
    assert session.objects[1] == Box(50, 50, 100, 95, 2)


def _rect_of(session, index):
    from appliance.editing import Rect

    return Rect.around(session.objects[index], session.shape)
