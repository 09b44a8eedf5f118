"""ImageWork bookkeeping (no screen): drafts survive a crash, leaving autosaves, time is kept."""

from __future__ import annotations

import numpy as np

from appliance.session.workflow import ImageWork, pending_draft
from tests.ui.projects import make_project


def test_a_crash_loses_only_the_stroke_in_progress(tmp_path):
    project = make_project(tmp_path / "p", n=2)
    work = ImageWork(project, 1, "Dr Test")
    work.session.begin_stroke(50.0, 50.0, 8.0)
    work.session.end_stroke()
    work.save_draft()
    finished = work.session.instances.copy()
    work.session.begin_stroke(100.0, 100.0, 8.0)  # in progress when the power goes
    project.close()

    from appliance.store.project import Project

    reopened = Project.open(project.root)
    again = ImageWork(reopened, 1, "Dr Test")
    assert again.recovered and again.dirty
    assert np.array_equal(again.session.instances, finished)
    version = again.leave()
    assert version is not None and pending_draft(reopened) is None
    assert reopened.latest_label(1).source == "manual"


def test_draft_of_an_outdated_version_is_not_restored(tmp_path):
    project = make_project(tmp_path / "p", n=1)
    work = ImageWork(project, 1, "Dr Test")
    work.session.begin_stroke(20.0, 20.0, 4.0)
    work.session.end_stroke()
    work.save_draft()
    from appliance.labels import Label

    project.save_label(1, Label.empty((256, 256)), author="someone else", source="manual")
    again = ImageWork(project, 1, "Dr Test")
    assert not again.recovered and not again.session.instances.any()


def test_time_is_recorded_with_the_version(tmp_path):
    project = make_project(tmp_path / "p", n=1)
    now = [100.0]
    work = ImageWork(project, 1, "Dr Test", clock=lambda: now[0])
    work.session.begin_stroke(20.0, 20.0, 4.0)
    work.session.end_stroke()
    now[0] += 42.0
    version = work.leave()
    assert project.label_version(version).seconds_spent == 42.0
    assert not work.dirty
