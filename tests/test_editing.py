"""EditSession: every gesture changes exactly the pixels it should and undoes as one step."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.editing import EditSession, Rect, capsule_mask
from appliance.errors import ApplianceError
from appliance.labels import Label


def _expected_capsule(shape, xa, ya, xb, yb, r):
    """Independent reference: brute-force distance of every pixel centre to the segment."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]] + 0.5
    d = np.array([xb - xa, yb - ya])
    length2 = float(d @ d)
    t = np.zeros(shape) if length2 == 0 else ((xs - xa) * d[0] + (ys - ya) * d[1]) / length2
    t = np.clip(t, 0, 1)
    return (xa + t * d[0] - xs) ** 2 + (ya + t * d[1] - ys) ** 2 <= r * r


def _label_with_square():
    inst = np.zeros((64, 64), np.uint32)
    inst[10:20, 10:20] = 7
    return Label(inst, {7: 2})


def test_brush_stroke_paints_exactly_the_capsule_and_makes_one_new_instance():
    s = EditSession(Label.empty((80, 100)), active_class=3)
    s.begin_stroke(20.0, 30.0, 5.0)
    s.stroke_to(60.0, 35.0, 5.0)
    rect = s.end_stroke()
    expected = _expected_capsule((80, 100), 20, 30, 60, 35, 5)
    assert np.array_equal(s.instances > 0, expected)
    ids = np.unique(s.instances[expected])
    assert ids.size == 1 and s.classes == {int(ids[0]): 3}
    assert rect == Rect.of_mask(expected)


def test_stroke_starting_on_an_instance_extends_it():
    s = EditSession(_label_with_square())
    s.begin_stroke(15.0, 15.0, 2.0)
    s.stroke_to(30.0, 15.0, 2.0)
    s.end_stroke()
    assert set(np.unique(s.instances)) == {0, 7}
    assert s.instances[15, 28] == 7 and s.classes == {7: 2}


def test_eraser_removes_pixels_and_forgets_an_erased_instance():
    s = EditSession(_label_with_square())
    s.begin_stroke(15.0, 15.0, 12.0, erase=True)
    s.end_stroke()
    assert not s.instances.any()
    assert s.classes == {}
    s.undo()
    assert s.classes == {7: 2} and (s.instances == 7).sum() == 100


def test_undo_redo_restore_the_exact_label_for_whole_strokes():
    start = _label_with_square()
    s = EditSession(start)
    s.begin_stroke(5.0, 5.0, 3.0)
    for x in range(6, 50, 3):
        s.stroke_to(float(x), 5.0 + x / 3, 3.0)
    s.end_stroke()
    after_first = s.label()
    s.begin_stroke(40.0, 50.0, 4.0, erase=False)
    s.stroke_to(15.0, 15.0, 4.0)
    s.end_stroke()
    after_second = s.label()
    assert s.undo() is not None
    assert s.label().equals(after_first) and s.classes == after_first.classes
    assert s.undo() is not None
    assert s.label().equals(start) and s.classes == {7: 2}
    assert s.undo() is None
    s.redo()
    s.redo()
    assert s.label().equals(after_second) and s.classes == after_second.classes
    assert not s.can_redo


def test_new_edit_clears_redo():
    s = EditSession(_label_with_square())
    s.delete_instance(7)
    s.undo()
    s.begin_stroke(40.0, 40.0, 2.0)
    s.end_stroke()
    assert not s.can_redo


def test_cancel_stroke_restores_everything():
    start = _label_with_square()
    s = EditSession(start)
    s.begin_stroke(30.0, 30.0, 4.0)
    s.stroke_to(12.0, 12.0, 4.0)
    s.cancel_stroke()
    assert s.label().equals(start) and s.classes == {7: 2} and not s.can_undo


def test_fill_background_inside_an_outline_joins_the_outline():
    inst = np.zeros((50, 50), np.uint32)
    inst[10:31, 10:31] = 4
    inst[12:29, 12:29] = 0
    s = EditSession(Label(inst, {4: 1}))
    rect = s.fill(20.0, 20.0)
    assert rect == Rect(12, 12, 29, 29)
    assert (s.instances[10:31, 10:31] == 4).all() and (s.instances == 4).sum() == 441


def test_fill_of_open_background_is_refused():
    s = EditSession(_label_with_square())
    with pytest.raises(ApplianceError, match="not enclosed"):
        s.fill(40.0, 40.0)
    assert not s.can_undo


def test_fill_inside_an_instance_fills_its_holes_only():
    inst = np.zeros((40, 40), np.uint32)
    inst[5:25, 5:25] = 1
    inst[10:12, 10:12] = 0  # a hole
    inst[30:35, 30:35] = 2
    s = EditSession(Label(inst, {1: 1, 2: 1}))
    s.fill(6.0, 6.0)
    assert (s.instances[5:25, 5:25] == 1).all() and (s.instances == 2).sum() == 25


def test_lasso_fills_the_polygon_as_a_new_instance_of_the_active_class():
    s = EditSession(Label.empty((40, 40)), active_class=2)
    s.lasso([(10.0, 10.0), (30.0, 10.0), (30.0, 30.0), (10.0, 30.0)])
    ids = np.unique(s.instances[s.instances > 0])
    assert ids.size == 1 and s.classes[int(ids[0])] == 2
    assert (s.instances[11:29, 11:29] > 0).all() and not s.instances[:9].any()


def test_delete_and_reclass_are_single_undo_steps():
    s = EditSession(_label_with_square())
    s.set_class(7, 5)
    assert s.classes == {7: 5}
    s.delete_instance(7)
    assert not s.instances.any() and s.classes == {}
    s.undo()
    assert s.classes == {7: 5} and (s.instances == 7).sum() == 100
    s.undo()
    assert s.classes == {7: 2}


def test_replace_is_one_undo_step_and_checks_shape():
    s = EditSession(Label.empty((64, 64)))
    s.replace(_label_with_square())
    assert (s.instances == 7).sum() == 100
    s.undo()
    assert not s.instances.any()
    with pytest.raises(ApplianceError):
        s.replace(Label.empty((10, 10)))


def test_revision_moves_with_every_change():
    s = EditSession(Label.empty((20, 20)))
    r0 = s.revision
    s.begin_stroke(5.0, 5.0, 2.0)
    s.end_stroke()
    assert s.revision > r0
    r1 = s.revision
    s.undo()
    assert s.revision > r1


def test_capsule_mask_matches_reference_with_offset():
    rect = Rect(5, 7, 40, 50)
    got = capsule_mask(rect, 12.3, 9.8, 33.1, 30.2, 4.5)
    ref = _expected_capsule((40, 50), 12.3, 9.8, 33.1, 30.2, 4.5)[5:40, 7:50]
    assert np.array_equal(got, ref)
