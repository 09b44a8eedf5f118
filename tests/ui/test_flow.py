"""Save and next follows the selector; a corrupt image gives a message and the app goes on."""

from __future__ import annotations

from appliance.assist import selector
from appliance.session.workflow import pending_draft
from testkit.touch import pen_stroke, tap, wait_for
from tests.ui.projects import make_project


def test_save_and_next_moves_to_the_selectors_choice(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=6)
    project.set_setting("ui.prelabel", "none")
    project.set_setting("inspection", {"warning_threshold": 0.0})
    for image_id in (2, 5):
        project.set_cherry_picked(image_id)
    expected = [c.image_id for c in selector.from_project(project).next(2)]
    screen = fresh(project.root)
    assert screen.work.image_id == expected[0]
    cx, cy = screen.canvas_view.to_window(60, 60)
    pen_stroke([(cx, cy), (cx + 30, cy + 10)])
    tap(screen.buttons["save_next"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != expected[0])
    assert screen.work.image_id == expected[1]
    saved = project.latest_label(expected[0])
    assert saved.source == "manual" and saved.author == "Dr Test" and saved.seconds_spent > 0
    tap(screen.buttons["previous"])
    wait_for(lambda: screen.work is not None and screen.work.image_id == expected[0])


def test_corrupt_image_shows_a_message_and_the_app_goes_on(fresh, app, tmp_path):
    project = make_project(tmp_path / "p", n=3)
    project.set_setting("ui.prelabel", "none")
    bad = project.image(2)
    bad.path.write_bytes(bad.path.read_bytes()[:200])  # a truncated file on disk
    project.set_cherry_picked(2)
    screen = fresh(project.root)
    assert screen.work is not None and screen.work.image_id != 2
    assert app.message.error and app.message.opacity == 1
    assert "cannot be shown" in app.message.text and bad.name in app.message.text
    cx, cy = screen.canvas_view.to_window(50, 50)
    pen_stroke([(cx, cy), (cx + 10, cy)])
    assert screen.work.session.instances.any()


def test_after_a_crash_the_app_reopens_the_image_with_every_finished_stroke(fresh, app, tmp_path):
    project = make_project(tmp_path / "p", n=3)
    project.set_setting("ui.prelabel", "none")
    screen = fresh(project.root)
    image_id = screen.work.image_id
    cx, cy = screen.canvas_view.to_window(80, 80)
    pen_stroke([(cx, cy), (cx + 40, cy + 5)])
    # its draft is written on the writer thread within tens of ms (docs/ui.md): the power
    # cut comes after that (under load the test reopened the project before it was written)
    wait_for(lambda: pending_draft(project) is not None)
    finished = screen.work.session.instances.copy()
    screen.work.session.begin_stroke(20.0, 20.0, 5.0)  # the stroke the power cut interrupts
    screen.presenter.closed = True  # the process dies: nothing is saved on the way out,
    screen.presenter = None  # and nothing it had started reports back
    app.go("home")
    assert project.latest_label(image_id) is None
    screen = fresh(project.root)
    assert screen.work.image_id == image_id and screen.work.recovered
    assert (screen.work.session.instances == finished).all()
    assert "recovered" in app.message.text
