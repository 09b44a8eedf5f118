"""Gallery: label state per image, flag for cherry-picking, jump to an image, compare versions."""

from __future__ import annotations

import numpy as np

from appliance import settings
from appliance.labels import Label
from appliance.session import gallery_data
from testkit.touch import pen_stroke, pump, tap, wait_for
from tests.ui.projects import make_project


def test_gallery_items_and_pictures_without_kivy(tmp_path):
    project = make_project(tmp_path / "p", n=3, size=64)
    label = Label.from_binary(np.pad(np.ones((10, 10)), 27))
    project.save_label(2, label, author="x", source="prelabel")
    project.save_label(3, label, author="x", source="manual")
    project.set_cherry_picked(1)
    states = {
        i.image_id: (i.state, i.versions, i.flagged) for i in gallery_data.items(project, "y")
    }
    assert states == {
        1: ("unlabeled", 0, True),
        2: ("pre-labeled", 1, False),
        3: ("labeled", 1, False),
    }
    plain = gallery_data.thumbnail(project, 1, "y", size=32)
    drawn = gallery_data.thumbnail(project, 3, "y", size=32)
    assert plain.shape == drawn.shape == (32, 32, 3)
    assert not np.array_equal(plain, drawn)  # the label is drawn over the image


def test_gallery_flags_jumps_and_compares_versions(fresh, app, tmp_path):
    project = make_project(tmp_path / "p", n=3, size=64)
    settings.PRELABEL.set(project, "none")
    screen = fresh(project.root)
    first = screen.work.image_id
    cx, cy = screen.canvas_view.to_window(30, 30)
    pen_stroke([(cx, cy), (cx + 40, cy)])
    work = screen.work
    work.save("manual")
    pen_stroke([(cx, cy - 40), (cx + 40, cy - 40)])
    tap(screen.buttons["gallery"])
    gallery = app.sm.get_screen("gallery")
    assert app.sm.current == "gallery" and screen.work is work  # a visit keeps the image
    wait_for(lambda: all(img.texture is not None for img in gallery.images.values()))
    other = next(i for i in (1, 2, 3) if i != first)
    tap(gallery.buttons[f"flag:{other}"])
    assert project.image(other).cherry_picked
    tap(gallery.buttons[f"history:{first}"])
    from kivy.core.window import Window

    from appliance.ui.screens.gallery import HistoryPopup

    popup = next(w for w in Window.children if isinstance(w, HistoryPopup))
    versions = project.history(first)
    assert len(versions) == 1
    wait_for(lambda: popup.shown is not None)
    tap(popup.buttons["close"])
    wait_for(lambda: popup not in Window.children)  # a closing popup still takes touches
    tap(gallery.buttons[f"open:{other}"])
    wait_for(lambda: screen.work is not None and screen.work.image_id == other)
    history = project.history(first)
    assert [v.source for v in history] == ["manual", "manual"]  # the edit was saved on leaving
    tap(screen.buttons["gallery"])
    tap(gallery.buttons[f"history:{first}"])
    popup = next(w for w in Window.children if isinstance(w, HistoryPopup))
    wait_for(lambda: popup.shown == (history[0].id, history[1].id))
    assert popup.picture_before.texture is not None and popup.picture_after.texture is not None
    tap(popup.buttons["before:" + str(history[1].id)])
    wait_for(lambda: popup.shown == (history[1].id, history[1].id))
    tap(popup.buttons["close"])
    app.go("annotate")
    pump(2)
