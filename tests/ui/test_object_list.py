"""The object list beside the image, driven by synthetic touches on the real app: rows follow
strokes and undo, a tapped row is highlighted and centred, delete and re-class are one undo
step each, suggested objects of a pre-label are listed apart and cannot be edited there."""

from __future__ import annotations

import numpy as np
import pytest

from appliance import settings
from testkit.touch import pen_stroke, pump, tap, wait_for
from tests.ui.projects import make_project


def _disc(canvas, ix, iy):
    """A short pen stroke about image point (ix, iy): one new object."""
    x, y = canvas.to_window(ix, iy)
    pen_stroke([(x - 6, y), (x + 6, y), (x, y + 6)])
    pump(1)


def _rows(screen):
    """Keys of the row widgets on the list (only the rows in sight are widgets)."""
    return sorted(k for k in screen.buttons if k.startswith(("object:", "suggested:")))


def _listed(screen):
    """Keys of every row of the list, in sight or not, in order."""
    return [d["key"] for d in screen.object_panel.scroll.data if "key" in d]


def test_rows_follow_strokes_select_centres_and_list_edits_undo_exactly(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2)
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    canvas, session = screen.canvas_view, screen.work.session
    canvas.brush_size = 8
    _disc(canvas, 30, 40)
    tap(screen.buttons["class:2"])
    _disc(canvas, 200, 190)
    first, second = sorted(int(i) for i in np.unique(session.instances) if i)
    tap(screen.buttons["objects"])
    pump(2)
    assert screen.object_panel.parent is not None
    assert _rows(screen) == [f"object:{first}", f"object:{second}"]
    assert "debris" in screen.buttons[f"object:{second}"].text
    area = int((session.instances == second).sum())
    assert f"{area} px" in screen.buttons[f"object:{second}"].text
    assert screen.object_panel.summary.text == "2 objects"
    fitted = canvas.zoom
    # a tapped row: highlighted on the image, the view centred on it at a sane zoom
    tap(screen.buttons[f"object:{second}"])
    pump(2)
    assert canvas.selected == second and screen.buttons[f"object:{second}"].state == "down"
    box = session.instance_rect(second)
    centre = canvas.to_window((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
    assert centre == pytest.approx(canvas.center, abs=2)
    assert fitted <= canvas.zoom <= 8
    start = session.label()
    # change its class from the pick list: one undo step
    tap(screen.buttons["object_class:1"])
    pump(2)
    assert session.class_of(second) == 1
    assert "nucleus" in screen.buttons[f"object:{second}"].text
    reclassed = session.label()
    # delete it: one undo step, its row goes
    tap(screen.buttons["object_delete"])
    pump(2)
    assert not (session.instances == second).any()
    assert _rows(screen) == [f"object:{first}"] and "object_delete" not in screen.buttons
    assert screen.object_panel.summary.text == "1 objects"
    deleted = session.label()
    tap(screen.buttons["undo"])
    pump(2)
    assert session.label().equals(reclassed) and session.classes == reclassed.classes
    assert _rows(screen) == [f"object:{first}", f"object:{second}"]
    tap(screen.buttons["undo"])
    pump(2)
    assert session.label().equals(start) and session.classes == start.classes
    assert "debris" in screen.buttons[f"object:{second}"].text
    tap(screen.buttons["redo"])
    tap(screen.buttons["redo"])
    pump(2)
    assert session.label().equals(deleted) and session.classes == deleted.classes
    assert _rows(screen) == [f"object:{first}"]
    # a new stroke while the list is open: its row appears
    tap(screen.buttons["fit"])
    _disc(canvas, 60, 200)
    pump(2)
    assert len(_rows(screen)) == 2
    tap(screen.buttons["objects"])  # closed: the image gets the room back
    pump(2)
    assert screen.object_panel.parent is None


def test_suggested_objects_are_listed_apart_and_only_found(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2)
    settings.PRELABEL.set(project, "otsu")
    screen = fresh(project.root)
    wait_for(lambda: screen.offer is not None)
    tap(screen.buttons["objects"])
    pump(2)
    suggested = [k for k in _listed(screen) if k.startswith("suggested:")]
    assert len(suggested) == len(screen.offer.label.ids()) > 0
    assert not [k for k in _listed(screen) if k.startswith("object:")]
    assert set(_rows(screen)) <= set(suggested)
    assert "suggested" in screen.object_panel.summary.text
    row = screen.buttons[suggested[0]]
    assert row.suggested and row.italic  # hollow swatch, muted italics, under a heading
    tap(row)
    pump(2)
    assert screen.canvas_view.offer_selected == int(suggested[0].split(":")[1])
    assert "object_delete" not in screen.buttons  # accept the pre-label first
    tap(screen.buttons["offer_accept_edit"])
    wait_for(lambda: screen.offer is None)
    pump(2)
    rows = _listed(screen)
    assert rows and all(k.startswith("object:") for k in rows)  # accepted: now the expert's
    assert all(k.startswith("object:") for k in _rows(screen))
    tap(screen.buttons["objects"])
    pump(2)
