"""Point and box objects in the annotate flow without Kivy: object list rows, edits by row key,
status counts, a pre-label accepted beside them, and a control with point truth scored when
saved from the annotate screen's flow."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import settings
from appliance.labels import Box, Label, Point
from appliance.session.marks import BOX, POINT, finish, grab
from appliance.store.controls import add_control, score_rows
from tests.ui.projects import make_project
from tests.ui.test_presenter import Jobs, View, _start


@pytest.fixture
def flow(tmp_path):
    project = make_project(tmp_path / "p", n=3, size=128)
    settings.PRELABEL.set(project, "none")
    jobs = Jobs()
    yield project, jobs, View()
    jobs.runner.shutdown()
    project.close()


def _mark(presenter, tool, a, b):
    session = presenter.work.session
    drag = grab(session.objects, tool, *a, 2.0)
    finish(session, drag, *b, a == b, 2.0)
    presenter.stroke_done()


def test_rows_status_and_row_edits_of_points_and_boxes(flow):
    project, jobs, view = flow
    presenter = _start(project, jobs, view)
    session = presenter.work.session
    session.begin_stroke(10, 10, 3)
    session.end_stroke()
    _mark(presenter, POINT, (40.0, 50.0), (40.0, 50.0))
    presenter.set_class(2)
    _mark(presenter, BOX, (60.0, 60.0), (90.0, 80.0))
    rows = presenter.objects()
    assert [r.key for r in rows] == ["object:1", "point:0", "box:1"]
    assert rows[1].text == "P1   nucleus · 40, 50"
    assert rows[2].text == "B1   debris · 30×20" and rows[2].area == 600
    status = presenter.status()
    assert (status.objects, status.points, status.boxes) == (1, 1, 1)
    box = presenter.select_object("box:1")
    assert (
        box is not None and box.x0 <= 60 and box.x1 >= 90 and presenter.selected_object == "box:1"
    )
    assert presenter.select_object("point:1") is None  # index 1 is a box, not a point
    presenter.reclass_row("point:0", 2)
    assert session.objects[0] == Point(40, 50, 2)
    presenter.select_object("point:0")
    presenter.delete_row("point:0")
    assert session.objects == (Box(60, 60, 90, 80, 2),) and presenter.selected_object is None
    presenter.undo()
    presenter.undo()
    assert session.objects == (Point(40, 50, 1), Box(60, 60, 90, 80, 2))
    presenter.delete_row("object:1")  # a mask row through the same call
    assert not session.instances.any()


def test_accepting_a_prelabel_keeps_the_points_in_the_version_it_saves(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = _start(project, jobs, view)
    jobs.settle(lambda: presenter.offer is not None)
    _mark(presenter, POINT, (20.0, 30.0), (20.0, 30.0))
    presenter.accept_offer(edit=True)
    presenter.settle_save()  # Accept and edit stores in the background
    saved = project.latest_label(presenter.work.image_id).label
    assert saved.objects == (Point(20, 30, 1),) and saved.instances.any()
    assert presenter.work.session.objects == (Point(20, 30, 1),)


def test_a_control_with_point_truth_is_scored_when_saved_from_the_flow(flow):
    project, jobs, view = flow
    image_id = project.images()[2].id
    truth = Label(
        np.zeros((128, 128), np.uint32),
        {},
        (Point(30, 30, 1), Point(90, 40, 2), Box(10, 80, 50, 120, 1)),
    )
    with project.transaction():
        add_control(project, image_id, "gold", truth)
    presenter = _start(project, jobs, view)
    presenter.open_image(image_id)
    jobs.settle(lambda: presenter.work is not None and presenter.work.image_id == image_id)
    _mark(presenter, POINT, (31.0, 32.0), (31.0, 32.0))  # found, right class
    presenter.set_class(2)
    _mark(presenter, POINT, (100.0, 100.0), (100.0, 100.0))  # no cell there
    presenter.set_class(1)
    _mark(presenter, BOX, (12.0, 82.0), (50.0, 118.0))  # IoU 0.9
    presenter.save_and_next()
    jobs.settle()
    (row,) = score_rows(project, "Dr Test")
    assert (row.n_truth, row.n_label, row.matched, row.class_correct) == (3, 3, 2, 2)


def test_a_prelabels_points_are_suggested_rows_until_accepted(flow):
    """A pre-label with marks (the previous frame's label, say) lists them as suggested."""
    from appliance.session.presenter import Offer

    project, jobs, view = flow
    presenter = _start(project, jobs, view)
    _mark(presenter, POINT, (40.0, 50.0), (40.0, 50.0))
    offered = Label(np.zeros((128, 128), np.uint32), {}, (Box(5, 5, 25, 30, 2), Point(90, 9, 2)))
    presenter.offer = Offer("previous", offered)
    rows = presenter.objects()
    assert [(r.key, r.suggested) for r in rows] == [
        ("point:0", False),
        ("suggested-point:1", True),
        ("suggested-box:0", True),
    ]
    assert rows[1].text == "P1   debris · 90, 9"
    assert presenter.status().suggested == 2
    assert presenter.select_object("suggested-box:0") is not None
    assert presenter.select_object("suggested-box:1") is None  # index 1 is a point
    presenter.delete_row("suggested-point:1")  # not editable before Accept
    assert presenter.work.session.objects == (Point(40, 50, 1),)
    presenter.accept_offer(edit=True)
    assert presenter.work.session.objects == (Point(40, 50, 1), *offered.objects)
