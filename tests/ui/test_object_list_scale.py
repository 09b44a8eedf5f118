"""Issue 25 defect 6 (object list): with 256 objects, opening the list built 256 row widgets on
the UI thread (0.5-2 s) and every stroke while it was open built them all again (1.1 s). The
list is virtualised: only the rows in sight are widgets, a stroke changes the rows' data and
builds none. Counted in widgets, not timed, so the test holds on any machine."""

from __future__ import annotations

import math

import numpy as np
from kivy.app import App
from kivy.uix.togglebutton import ToggleButton
from kivy.uix.widget import Widget

from appliance.labels import Label
from testkit.touch import pen_stroke, pump, tap, wait_for

OBJECTS = 256


def _grid_label(shape: tuple[int, int]) -> Label:
    """16 × 16 small squares, one object each (class 1), a free margin around each."""
    instances = np.zeros(shape, np.uint32)
    side = shape[0] // 16
    for i in range(OBJECTS):
        y, x = divmod(i, 16)
        instances[y * side + 8 : y * side + side - 8, x * side + 8 : x * side + side - 8] = i + 1
    return Label(instances, {i + 1: 1 for i in range(OBJECTS)})


def test_a_256_object_list_builds_only_the_rows_in_sight_and_a_stroke_builds_none(
    opened_new, monkeypatch
):
    screen = opened_new(size=512)
    canvas, presenter = screen.canvas_view, screen.presenter
    canvas.refresh(canvas.session.replace(_grid_label(canvas.session.shape)))
    presenter.stroke_done()
    pump(2)
    from appliance.ui.object_panel import ObjectRowView

    built: list[Widget] = []
    for cls in (ObjectRowView, ToggleButton):  # rows; the class pick list's toggles
        real_init = cls.__init__

        def counting_init(self: Widget, _real=real_init, **kwargs: object) -> None:
            built.append(self)
            _real(self, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting_init)
    tap(screen.buttons["objects"])
    pump(3)
    panel, app = screen.object_panel, App.get_running_app()
    assert len(presenter.objects()) == OBJECTS
    in_sight = math.ceil(panel.height / (app.touch + app.gap / 2)) + 2
    rows = [w for w in panel.list.children if isinstance(w, ObjectRowView)]
    assert 0 < len(rows) <= in_sight  # was one widget per object: 256
    assert len(built) <= in_sight + 12  # row widgets and the class pick list's toggles
    opened = len(built)
    # a pen stroke while the list is open: a new row in the data, no widget built
    canvas.brush_size = 4
    x, y = canvas.to_window(3, 3)
    pen_stroke([(x, y), (x + 3, y), (x, y + 3)])
    pump(3)
    assert len(presenter.objects()) == OBJECTS + 1
    assert len(built) == opened  # was 257 more: the whole list rebuilt per stroke
    assert [d["key"] for d in panel.scroll.data if "key" in d][-1] == f"object:{OBJECTS + 1}"
    # scrolled to the end: the last rows are in sight, made from recycled widgets
    panel.scroll.scroll_y = 0
    pump(3)
    assert f"object:{OBJECTS + 1}" in screen.buttons
    assert "object:1" not in screen.buttons  # scrolled out: its widget shows another row
    assert len(built) <= in_sight + 12
    tap(screen.buttons[f"object:{OBJECTS}"])
    pump(3)
    assert presenter.selected_object == f"object:{OBJECTS}"
    assert canvas.selected == OBJECTS
    tap(screen.buttons["objects"])  # closed again: the next test's screen starts without it
    pump(2)
    assert panel.parent is None


def test_a_stroke_that_grows_one_object_refreshes_only_its_row(opened_new, monkeypatch):
    from appliance.ui.object_panel import ObjectRowView

    screen = opened_new(size=512)
    canvas, presenter = screen.canvas_view, screen.presenter
    canvas.refresh(canvas.session.replace(_grid_label(canvas.session.shape)))
    presenter.stroke_done()
    pump(2)
    tap(screen.buttons["objects"])
    screen.object_panel.scroll.scroll_y = 1  # the top (the test before left it at the end)
    wait_for(lambda: "object:1" in screen.buttons)
    pump(2)
    panel = screen.object_panel
    row = screen.buttons["object:1"]
    area = presenter.objects()[0].area
    refreshed: list[str] = []
    real = ObjectRowView.refresh_view_attrs

    def counting(self, rv, index, data):
        refreshed.append(data["key"])
        real(self, rv, index, data)

    monkeypatch.setattr(ObjectRowView, "refresh_view_attrs", counting)
    actions = list(panel.actions.children)  # "Tap a row...": nothing selected
    canvas.brush_size = 4
    x, y = canvas.to_window(16, 16)  # inside object 1 (rows and columns 8-23): it grows
    x1, _ = canvas.to_window(28, 16)
    pen_stroke([(x, y), (x1, y)])
    pump(3)
    grown = presenter.objects()[0].area
    assert grown > area and f"· {grown} px" in row.text  # the row on screen says so
    assert screen.buttons["object:1"] is row
    assert refreshed == ["object:1"]  # was every row in sight
    assert panel.actions.children == actions  # not built again for an area
    assert len(panel.scroll.data) == OBJECTS
    tap(screen.buttons["objects"])
    pump(2)
