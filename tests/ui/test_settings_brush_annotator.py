"""Issue 25 defect 10, second part: the brush size in Settings moved in coarse jumps (a slider
from 1 to 200 px under a finger) and switching annotator could not be cancelled."""

from __future__ import annotations

import pytest

from appliance import settings
from testkit.fit import cut_texts
from testkit.touch import SynthTouch, pump, tap, wait_for
from tests.ui.conftest import SIZES
from tests.ui.projects import make_project


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_brush_size_moves_one_pixel_at_a_time_in_settings(fresh, app, window, tmp_path, size):
    project = make_project(tmp_path / "p", n=2, size=64)
    window(*size)
    fresh(project.root)
    app.go("settings")
    pump(4)
    screen = app.sm.get_screen("settings")
    if screen.grid.cols == 2:  # side by side, both columns start under the title
        tops = [col.children[-1].top for col in screen.grid.children]
        assert abs(tops[0] - tops[1]) < 2, tops
    slider = screen.sliders["brush size"]
    assert slider.step == 1
    plus, minus = screen.buttons["brush size:+"], screen.buttons["brush size:-"]
    screen.children[0].children[0].scroll_to(plus, animate=False)  # as the expert scrolls
    pump(3)
    tap(plus)
    wait_for(lambda: settings.BRUSH_SIZE.get(project) == 21)  # a scrolling page: 0.2 s late
    pump(2)
    assert "21 px" in [t.split("\n")[-1] for t in _texts(screen)]
    tap(minus)
    tap(minus)
    wait_for(lambda: settings.BRUSH_SIZE.get(project) == 19)
    # a drag on the slider lands on whole pixels
    x, y = slider.to_window(*slider.value_pos)
    drag = SynthTouch("finger", x, y).down()
    drag.move_to(x + 7.3, y)
    drag.up()
    pump(2)
    assert slider.value == int(slider.value) and settings.BRUSH_SIZE.get(project) > 19
    assert not cut_texts(screen), cut_texts(screen)
    app.go("annotate")
    pump(2)
    assert app.sm.get_screen("annotate").canvas_view.brush_size == slider.value


def _texts(screen) -> list[str]:
    return [w.text for w in screen.walk() if isinstance(getattr(w, "text", None), str)]


def test_switching_annotator_can_be_cancelled(app, tmp_path):
    app.go("home")
    pump(2)
    home = app.sm.get_screen("home")
    before = app.annotator
    tap(home.who)
    welcome = app.sm.get_screen("welcome")
    wait_for(lambda: app.sm.current == "welcome")
    pump(2)
    assert welcome.cancel is not None and welcome.cancel.get_root_window() is not None
    welcome.field.text = "Somebody else"  # typed, then the expert changes their mind
    tap(welcome.cancel)
    wait_for(lambda: app.sm.current == "home")
    assert app.annotator == before
