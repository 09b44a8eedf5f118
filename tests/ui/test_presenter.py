"""The annotate flow without Kivy: real project, real job runner, a recording view.

Background jobs run on the core's real `JobRunner`; their results are delivered on the test's
thread by `Jobs.settle()`, as the Kivy clock does in the app.
"""

from __future__ import annotations

import queue
import sys
import time

import numpy as np
import pytest

from appliance import settings
from appliance.assist import prelabel
from appliance.assist.jobs import JobRunner
from appliance.labels import Label
from appliance.session.presenter import AnnotatePresenter, merge_under
from tests.ui.projects import make_project


class Jobs:
    """`run_job` for the presenter: work on the real runner, callbacks on this thread."""

    def __init__(self) -> None:
        self.runner = JobRunner(workers=2)
        self.results: queue.Queue = queue.Queue()
        self.pending = 0

    def __call__(self, fn, done, key=None, failed=None):
        self.pending += 1

        def finish(job):
            self.results.put((job, done, failed))

        return self.runner.submit(fn, key=key, on_done=finish)

    def settle(self, until=lambda: False, timeout: float = 120.0) -> None:
        """Deliver finished jobs until `until()` holds or nothing is left in flight."""
        end = time.monotonic() + timeout
        while not until() and time.monotonic() < end:
            try:
                job, done, failed = self.results.get(timeout=0.05)
            except queue.Empty:
                if not self.runner._pending and self.results.empty():
                    return
                continue
            if job.error is not None:
                (failed or _raise)(job.error)
            else:
                done(job.result(0))


def _raise(exc: BaseException) -> None:
    raise exc


class View:
    """Records what the presenter asked to redraw."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.messages: list[tuple[str, bool]] = []

    def __getattr__(self, name: str):
        if name.startswith("show_") or name == "clear_error":
            return lambda *args, **kw: self.calls.append(name)
        raise AttributeError(name)

    def notify(self, text: str, error: bool = False) -> None:
        self.messages.append((text, error))


@pytest.fixture
def flow(tmp_path):
    project = make_project(tmp_path / "p", n=4, size=128)
    jobs = Jobs()
    view = View()
    yield project, jobs, view
    jobs.runner.shutdown()
    project.close()


def _start(project, jobs, view) -> AnnotatePresenter:
    presenter = AnnotatePresenter(project, "Dr Test", view, jobs)
    presenter.start()
    jobs.settle(lambda: presenter.work is not None)
    return presenter


def test_presenter_module_imports_no_kivy():
    import subprocess

    code = "import appliance.session.presenter, sys; print('kivy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_late_prelabel_is_offered_beside_the_drawing_and_accept_keeps_every_drawn_pixel(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = AnnotatePresenter(project, "Dr Test", view, jobs)
    presenter.start()
    jobs.settle(lambda: presenter.work is not None and presenter.prelabel_job is not None)
    work = presenter.work
    # the expert draws before the pre-label arrives
    work.session.begin_stroke(5.0, 5.0, 4.0)
    work.session.end_stroke()
    presenter.stroke_done()
    drawn = work.session.label()
    jobs.settle(lambda: presenter.offer is not None)
    assert presenter.offer is not None and work.session.label().equals(drawn)
    expected, _ = prelabel.run(project, work.image_id, "otsu", save=False)
    assert presenter.offer.label.equals(expected)
    presenter.accept_offer(edit=True)
    after = work.session.instances
    mine = drawn.instances > 0
    assert np.array_equal(after[mine], drawn.instances[mine])  # the drawing is untouched
    machine_only = (expected.instances > 0) & ~mine
    assert (after[machine_only] > 0).all()
    assert presenter.saving  # Accept and edit stores in the background
    jobs.settle(lambda: not presenter.saving)
    assert project.latest_label(work.image_id).source == "prelabel"


def test_reject_and_cancel_leave_the_label_alone(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = _start(project, jobs, view)
    jobs.settle(lambda: presenter.offer is not None)
    presenter.reject_offer()
    assert presenter.offer is None and not presenter.work.has_label
    presenter._start_prelabel()
    presenter.cancel_prelabel()
    jobs.settle()
    assert presenter.offer is None and presenter.prelabel_job is None
    assert ("Pre-label cancelled", False) in view.messages


def test_save_next_opens_the_prefetched_image_with_its_prelabel_at_once(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    settings.INSPECTION.set(project, {"gamma0": 0.0})
    presenter = _start(project, jobs, view)
    first = presenter.work.image_id
    jobs.settle(lambda: presenter._prefetched is not None and presenter.offer is not None)
    upcoming = presenter._prefetched.image_id
    presenter.accept_offer(edit=False)  # Accept all: saved, reviewed, then the next image
    jobs.settle(lambda: presenter.review is not None or presenter.work.image_id != first)
    if presenter.review is not None:  # post-processing suggestions: go on without them
        presenter.review_done()
    assert presenter.work.image_id == upcoming
    assert presenter.offer is not None  # its pre-label came with it
    assert project.latest_label(first).reviewed
    status = presenter.status()
    assert status.position == 2 and status.total == 4 and status.suggested > 0


def test_leaving_parks_a_draft_without_a_version(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "none")
    presenter = _start(project, jobs, view)
    image_id = presenter.work.image_id
    presenter.work.session.begin_stroke(30.0, 30.0, 5.0)
    presenter.work.session.end_stroke()
    presenter.leave()
    assert project.latest_label(image_id) is None
    again = _start(project, jobs, View())
    assert again.work.image_id == image_id and again.work.recovered


def test_every_image_labeled_says_so(flow):
    project, jobs, view = flow
    for image in project.images():
        project.save_label(image.id, Label.empty((128, 128)), author="x", source="manual")
    presenter = AnnotatePresenter(project, "Dr Test", view, jobs)
    presenter.start()
    assert presenter.all_done and presenter.work is None


def test_merge_under_never_changes_a_drawn_pixel():
    drawn = np.zeros((6, 6), np.uint32)
    drawn[1:3, 1:3] = 1
    machine = np.zeros((6, 6), np.uint32)
    machine[2:5, 2:5] = 1
    merged = merge_under(Label(drawn, {1: 2}), Label(machine, {1: 1}))
    assert (merged.instances[1:3, 1:3] == 1).all() and merged.class_of(1) == 2
    new = merged.instances[4, 4]
    assert new not in (0, 1) and merged.class_of(int(new)) == 1


def _draw_two_objects(presenter):
    """Two discs, of class 1 (nucleus) and class 2 (debris), as finished gestures."""
    session = presenter.work.session
    for cls, (x, y) in ((1, (30.0, 30.0)), (2, (90.0, 80.0))):
        presenter.set_class(cls)
        session.begin_stroke(x, y, 6.0)
        session.end_stroke()
        presenter.stroke_done()
    return session


def test_object_rows_list_the_drawing_then_the_suggested_objects(flow):
    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = _start(project, jobs, view)
    jobs.settle(lambda: presenter.offer is not None)
    session = _draw_two_objects(presenter)
    rows = presenter.objects()
    mine = [r for r in rows if not r.suggested]
    suggested = [r for r in rows if r.suggested]
    assert [(r.class_id, r.class_name) for r in mine] == [(1, "nucleus"), (2, "debris")]
    for r in mine:
        assert r.area == int((session.instances == r.instance_id).sum()) > 0
        assert r.key == f"object:{r.instance_id}"
    assert rows[: len(mine)] == mine  # the expert's own first
    offer = presenter.offer.label
    assert [r.instance_id for r in suggested] == [int(i) for i in offer.ids()]
    assert all(r.key.startswith("suggested:") for r in suggested)
    assert mine[0].colour != mine[1].colour  # the class colours of the overlay
    presenter.reject_offer()
    assert presenter.objects() == mine


def test_selecting_a_row_gives_the_box_to_centre_on(flow):
    project, jobs, view = flow
    presenter = _start(project, jobs, view)
    _draw_two_objects(presenter)
    row = presenter.objects()[1]
    box = presenter.select_object(row.key)
    assert presenter.selected_object == row.key
    assert box.y0 <= 80 < box.y1 and box.x0 <= 90 < box.x1
    assert presenter.select_object("object:999") is None and presenter.selected_object is None
    assert presenter.select_object("suggested:1") is None  # no pre-label on offer


def test_delete_and_reclass_from_the_list_are_one_undo_step_each(flow):
    project, jobs, view = flow
    presenter = _start(project, jobs, view)
    session = _draw_two_objects(presenter)
    first, second = presenter.objects()
    start = session.label()
    presenter.select_object(first.key)
    view.calls.clear()
    presenter.delete_object(first.instance_id)
    deleted = session.label()
    assert [r.instance_id for r in presenter.objects()] == [second.instance_id]
    assert presenter.selected_object is None
    assert "show_label" in view.calls and "show_status" in view.calls  # list and status follow
    presenter.reclass_object(second.instance_id, 1)
    reclassed = session.label()
    assert [(r.instance_id, r.class_name) for r in presenter.objects()] == [
        (second.instance_id, "nucleus")
    ]
    assert np.array_equal(reclassed.instances, deleted.instances)  # only the class changed
    presenter.undo()
    assert session.label().equals(deleted) and session.classes == deleted.classes
    presenter.undo()
    assert session.label().equals(start) and session.classes == start.classes
    assert presenter.objects() == [first, second]
    presenter.redo()
    assert session.label().equals(deleted)
    presenter.redo()
    assert session.label().equals(reclassed) and session.classes == reclassed.classes
    assert presenter.work.dirty
    # a no-op change (same class, gone object) adds no undo step
    presenter.reclass_object(second.instance_id, 1)
    presenter.delete_object(first.instance_id)
    presenter.undo()
    assert session.label().equals(deleted)


def test_the_panel_state_names_one_phase_at_each_step_of_the_flow(flow):
    from appliance.session.presenter import Phase

    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = AnnotatePresenter(project, "Dr Test", view, jobs)
    assert presenter.panel().phase is Phase.CLOSED
    presenter.start()
    assert presenter.panel().phase is Phase.LOADING and presenter.panel().loading is not None
    jobs.settle(lambda: presenter.work is not None)
    assert presenter.panel().phase in (Phase.PRELABELING, Phase.OFFER)
    jobs.settle(lambda: presenter.offer is not None)
    state = presenter.panel()
    assert state.phase is Phase.OFFER and state.offer is presenter.offer and state.can_upgrade
    presenter.reject_offer()
    assert presenter.panel().phase is Phase.DRAWING
    presenter.work.session.begin_stroke(40.0, 40.0, 6.0)
    presenter.work.session.end_stroke()
    presenter.stroke_done()
    presenter.save_and_next()
    assert presenter.panel().phase in (Phase.REVIEWING, Phase.REVIEW, Phase.LOADING)


def test_the_object_list_after_a_stroke_counts_only_the_strokes_pixels(flow, monkeypatch):
    """The rows' areas are kept by the edit session, and a pre-label's are counted by the job
    that made it: the list after Accept and after a stroke counts no whole label on the UI
    thread."""
    from appliance import editing
    from appliance.session import objects

    project, jobs, view = flow
    settings.PRELABEL.set(project, "otsu")
    presenter = _start(project, jobs, view)
    jobs.settle(lambda: presenter.offer is not None)
    offered = presenter.offer.areas
    assert offered == editing.areas(presenter.offer.label.instances)
    counted: list[int] = []
    real = editing.areas

    def counting(pixels):
        counted.append(pixels.size)
        return real(pixels)

    monkeypatch.setattr(editing, "areas", counting)
    monkeypatch.setattr(objects, "areas", counting)
    presenter.accept_offer(edit=True)  # the label becomes the offer: its areas come along
    jobs.settle()
    assert {r.instance_id: r.area for r in presenter.objects()} == offered
    assert not counted
    session = _draw_two_objects(presenter)
    rows = presenter.objects()
    assert counted and max(counted) < session.instances.size / 10
    assert {r.instance_id: r.area for r in rows} == real(session.instances)
