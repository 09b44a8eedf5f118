"""Issue 25 defect 10: undo, zoom and class were lost on quit. Kept on leaving (no screen here;
the app's own quit is in test_resume_app.py)."""

from __future__ import annotations

import json

import numpy as np

from appliance import settings
from appliance.session import resume
from appliance.session.resume import UNDO_KEPT, ViewState
from appliance.session.workflow import ImageWork
from appliance.store.project import Project
from tests.ui.projects import make_project


def _strokes(work: ImageWork, n: int) -> list[np.ndarray]:
    """`n` strokes; the label before each, oldest first."""
    states = []
    for i in range(n):
        states.append(work.session.instances.copy())
        work.session.begin_stroke(10.0 + 5 * i, 20.0, 3.0)
        work.session.stroke_to(10.0 + 5 * i, 60.0, 3.0)
        work.session.end_stroke()
    return states


def test_leaving_mid_edit_keeps_the_undo_history_and_the_view(tmp_path):
    project = make_project(tmp_path / "p", n=1, size=128)
    work = ImageWork(project, 1, "Dr Test")
    states = _strokes(work, UNDO_KEPT + 3)
    work.park(ViewState(3.5, (40.0, 30.0)))
    project.close()

    reopened = Project.open(project.root)
    again = ImageWork(reopened, 1, "Dr Test")
    assert again.recovered and again.resumed_view == ViewState(3.5, (40.0, 30.0))
    for before in reversed(states[-UNDO_KEPT:]):  # the newest 20 strokes undo one by one
        assert again.session.undo() is not None
        assert np.array_equal(again.session.instances, before)
    assert not again.session.can_undo  # older steps are not kept (bounded)
    again.session.begin_stroke(100.0, 100.0, 3.0)  # a new object gets a fresh id
    again.session.end_stroke()
    assert again.session.instances[100, 100] not in np.unique(states[-1])


def test_a_kept_history_that_does_not_fit_is_dropped_and_the_label_stays(tmp_path):
    project = make_project(tmp_path / "p", n=1, size=128)
    work = ImageWork(project, 1, "Dr Test")
    _strokes(work, 2)
    work.park(None)
    label = work.session.instances.copy()
    draft = settings.DRAFT.get(project)
    draft["undo"][-1]["rect"] = [0, 0, 500, 500]  # outside the 128×128 image
    draft["view"] = {"zoom": -1, "centre": [1, 2]}
    settings.DRAFT.set(project, json.loads(json.dumps(draft)))
    again = ImageWork(project, 1, "Dr Test")
    assert again.recovered and np.array_equal(again.session.instances, label)
    assert not again.session.can_undo and again.resumed_view is None


def test_the_chosen_class_is_kept_per_annotator(tmp_path):
    project = make_project(tmp_path / "p", n=1, classes=("nucleus", "debris", "mitosis"))
    classes = project.classes()
    assert resume.remembered_class(project, "Dr A", classes) is None
    resume.remember_class(project, "Dr A", 3)
    resume.remember_class(project, "Dr B", 2)
    assert resume.remembered_class(project, "Dr A", classes) == 3
    assert resume.remembered_class(project, "Dr B", classes) == 2
    assert resume.remembered_class(project, "Dr A", {1: "nucleus"}) is None  # class gone
