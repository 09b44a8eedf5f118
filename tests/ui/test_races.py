"""Issue 25's races (defects 4 and 7), each through real taps on the running app: a late
upgrade never replaces a newer label, Upgrade is not tappable while it runs, a fast double tap
on Save & next never skips the check unseen, and accepting the only suggestion stays on the
image. Checks run after the frame that follows each tap (Kivy releases buttons deferred)."""

from __future__ import annotations

import threading

import numpy as np

from appliance import settings
from appliance.bundles.install import install_model_bundle
from appliance.session import assistant
from testkit.touch import pen_stroke, pump, tap, wait_for
from tests.ui.projects import make_project, upgrade_bundle


def _tap(widget: object) -> None:
    """A real tap, then the frames that follow it (the deferred release included)."""
    tap(widget)
    pump(3)


def _held_upgrade(monkeypatch) -> threading.Event:
    """The upgrade model waits for the returned event: the test decides when it finishes."""
    release = threading.Event()
    real = assistant.upgrade_label

    def slow(*args, **kwargs):
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(assistant, "upgrade_label", slow)
    return release


def _open(fresh, tmp_path, prelabel: str):
    project = make_project(tmp_path / "p", n=3)
    settings.PRELABEL.set(project, prelabel)
    install_model_bundle(project, upgrade_bundle(tmp_path / "bundles"))
    screen = fresh(project.root)
    return project, screen, screen.canvas_view


def test_upgrade_is_not_tappable_while_it_runs_and_two_taps_store_one_coarse_version(
    fresh, tmp_path, monkeypatch
):
    release = _held_upgrade(monkeypatch)
    project, screen, canvas = _open(fresh, tmp_path, "none")
    cx, cy = canvas.to_window(128, 128)
    pen_stroke([(cx - 40 + 8 * i, cy) for i in range(11)])
    _tap(screen.buttons["upgrade"])
    assert screen.buttons["upgrade"].disabled  # greyed while the model runs
    _tap(screen.buttons["upgrade"])  # a second tap: no second job, no second version
    release.set()
    wait_for(lambda: "compare_accept" in screen.buttons)
    pump(3)
    history = project.history(screen.work.image_id)
    assert [(v.source, v.coarse) for v in history] == [("manual", True)]
    assert not screen.buttons["upgrade"].disabled


def test_a_late_upgrade_never_replaces_a_prelabel_accepted_meanwhile(
    fresh, app, tmp_path, monkeypatch
):
    release = _held_upgrade(monkeypatch)
    project, screen, canvas = _open(fresh, tmp_path, "otsu")
    wait_for(lambda: screen.offer is not None)
    cx, cy = canvas.to_window(20, 20)
    pen_stroke([(cx, cy), (cx + 30, cy)])
    _tap(screen.buttons["upgrade"])
    _tap(screen.buttons["offer_accept_edit"])  # while the upgrade of the stroke runs
    merged = canvas.session.label()
    release.set()
    wait_for(lambda: not app.busy)
    pump(3)
    # the upgrade of the old drawing is not shown as a before/after of the newer label
    assert screen.presenter.compare is None and "compare_accept" not in screen.buttons
    assert canvas.preview is None
    assert canvas.session.label().equals(merged)
    assert project.latest_label(screen.work.image_id).source == "prelabel"


def test_accept_of_a_stale_before_after_keeps_the_newer_label(fresh, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path, "none")
    cx, cy = canvas.to_window(128, 128)
    pen_stroke([(cx - 40 + 8 * i, cy) for i in range(11)])
    _tap(screen.buttons["upgrade"])
    wait_for(lambda: "compare_accept" in screen.buttons)
    _tap(screen.buttons["undo"])  # the label changes under the before/after
    after_undo = canvas.session.label()
    _tap(screen.buttons["compare_accept"])
    assert canvas.session.label().equals(after_undo)
    assert project.latest_label(screen.work.image_id).source == "manual"


def _ring(canvas) -> list[tuple[float, float]]:
    return [canvas.to_window(128 + 30 * np.cos(t), 128 + 30 * np.sin(t))
            for t in np.linspace(0, 2 * np.pi, 80)]  # fmt: skip


def _checked_while_resting(screen) -> None:
    """Wait until the resting-pen check of the label as drawn is ready (so Save & next shows
    its result in the same tap, as it does for an expert who paused)."""
    p = screen.presenter
    wait_for(
        lambda: (
            p._prereviewed is not None
            and p._prereviewed[:2] == (p.work.image_id, p.work.session.revision)
        )
    )


def test_a_fast_double_tap_on_save_and_next_does_not_skip_the_check_unseen(fresh, tmp_path):
    _project, screen, canvas = _open(fresh, tmp_path, "none")
    canvas.brush_size = 6
    pen_stroke(_ring(canvas))  # a ring: post-assistance suggests filling its hole
    _checked_while_resting(screen)
    now = [1000.0]
    screen.presenter._clock = lambda: now[0]  # both taps within the same instant
    image_id = screen.work.image_id
    _tap(screen.buttons["save_next"])
    _tap(screen.buttons["save_next"])
    assert screen.work.image_id == image_id  # still here, the suggestion on show
    assert "suggest:Fill holes" in screen.buttons and "next_image" in screen.buttons
    now[0] += 5.0  # the expert looked, and taps Save & next again: that moves on
    _tap(screen.buttons["save_next"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != image_id)


def test_accepting_the_only_suggestion_stays_on_the_image(fresh, tmp_path):
    project, screen, canvas = _open(fresh, tmp_path, "none")
    canvas.brush_size = 6
    pen_stroke(_ring(canvas))
    image_id = screen.work.image_id
    _tap(screen.buttons["save_next"])
    wait_for(lambda: "suggest:Fill holes" in screen.buttons)
    review = screen.presenter.review
    assert [s.name for s in review.suggestions] == ["Fill holes"]  # the only suggestion
    _tap(screen.buttons["suggest:Fill holes"])
    _tap(screen.buttons["compare_accept"])
    wait_for(lambda: not screen.presenter.reviewing)
    pump(3)
    assert screen.work is not None and screen.work.image_id == image_id
    assert "next_image" in screen.buttons  # the expert moves on when ready
    assert project.latest_label(image_id).source == "postprocess"
    _tap(screen.buttons["next_image"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != image_id)


def test_the_on_screen_keyboard_leaves_the_welcome_screens_continue_free(app):
    """Issue 25 defect 8: the docked keyboard covered Continue (a tap there typed "7")."""
    from kivy.core.window import Window
    from kivy.uix.vkeyboard import VKeyboard

    welcome = app.sm.get_screen("welcome")
    current = app.sm.current
    app.sm.current = "welcome"
    welcome.refresh()
    try:
        pump(3)
        tap(welcome.field)  # a finger on the name field brings the keyboard
        pump(3)

        def keyboards():
            stack, found = list(Window.children), []
            while stack:
                widget = stack.pop()
                found += [widget] if isinstance(widget, VKeyboard) else []
                stack.extend(widget.children)
            return found

        wait_for(lambda: keyboards())
        pump(3)
        keyboard = keyboards()[0]
        _, bottom = welcome.go_on.to_window(*welcome.go_on.pos)
        top = keyboard.to_window(keyboard.x, keyboard.top)[1]
        assert bottom >= top  # Continue lies above the keyboard, not under it
    finally:
        welcome.field.focus = False
        pump(2)
        app.sm.current = current
