"""Issue 25 defect 10: quit the app mid-edit, start again: undo still works, the zoom and pan
and the chosen class are back (the Kivy-free part is in test_resume.py)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import settings
from testkit.touch import pen_stroke, pump, tap
from tests.ui.projects import make_project


def test_quit_mid_edit_and_start_again_keeps_undo_zoom_and_class(fresh, app, tmp_path):
    project = make_project(tmp_path / "p", n=3, classes=("nucleus", "debris", "mitosis"))
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    image_id = screen.work.image_id
    tap(screen.buttons["class:3"])
    canvas = screen.canvas_view
    canvas.zoom_about(canvas.zoom * 3, *canvas.center)
    pump(2)
    states = []
    for i in range(3):
        states.append(canvas.session.instances.copy())
        x, y = canvas.to_window(110 + 12 * i, 120)
        pen_stroke([(x, y), (x, y - 40)])
    drawn = canvas.session.instances.copy()
    zoom, centre = canvas.zoom, canvas.to_image(*canvas.center)
    screen.leave()  # what quitting does (App.on_stop), then the app starts again
    app.go("home")
    pump(2)
    screen = fresh(project.root)
    canvas = screen.canvas_view
    assert screen.work.image_id == image_id and np.array_equal(canvas.session.instances, drawn)
    assert screen.presenter.active_class == 3 and screen.buttons["class:3"].state == "down"
    assert canvas.zoom == pytest.approx(zoom)
    assert canvas.to_image(*canvas.center) == pytest.approx(centre, abs=0.5)
    assert not screen.buttons["undo"].disabled
    for before in reversed(states):
        tap(screen.buttons["undo"])
        assert np.array_equal(canvas.session.instances, before)
    x, y = canvas.to_window(120, 100)  # in view
    pen_stroke([(x, y), (x + 20, y)])
    assert screen.work.session.class_of(int(canvas.session.instances[100, 121])) == 3
