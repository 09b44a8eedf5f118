"""Issue 25 defect 9: no text cut at 1920×1200, 1280×800 and 1200×1920 with 12 classes.

The gallery tile's Open/Flag/History, the side panel's last row (Models, Settings and, with the
high score on, Scores) and the rows of an image's History showed "O...", "M...ls / S...gs" and
"v1...ts"; upright, class names, the brush size and Home's annotator were cut too. Cut text
is read from Kivy's own layout (`testkit.fit.cut_texts`).
"""

from __future__ import annotations

import pytest

from appliance.labels import Label
from appliance.supervision import config as supervision_config
from testkit.fit import cut_texts
from testkit.touch import pen_stroke, pump, tap, wait_for
from tests.ui.conftest import SIZES
from tests.ui.projects import DEMO_CLASSES, make_project

IDS = [f"{w}x{h}" for w, h in SIZES]


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_gallery_tiles_show_open_flag_history_whole(fresh, app, window, tmp_path, size):
    project = make_project(tmp_path / "p", n=6, size=64, classes=DEMO_CLASSES)
    project.save_label(1, Label.empty((64, 64)), author="Dr Test", source="manual")
    window(*size)
    fresh(project.root)
    app.go("gallery")
    gallery = app.sm.get_screen("gallery")
    wait_for(lambda: all(img.texture is not None for img in gallery.images.values()))
    pump(3)
    assert not cut_texts(gallery), cut_texts(gallery)
    texts = [w.text for w in gallery.walk() if isinstance(getattr(w, "text", None), str)]
    assert any(t.endswith("· 1 version") for t in texts) and not any(
        "1 versions" in t for t in texts
    )
    app.go("annotate")
    pump(2)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_annotate_buttons_class_names_and_annotator_whole(fresh, app, window, tmp_path, size):
    project = make_project(tmp_path / "p", n=2, size=64, classes=DEMO_CLASSES)
    supervision_config.save(project, supervision_config.Supervision(highscore=True))
    window(*size)
    screen = fresh(project.root)
    pump(3)
    scores = screen.buttons["scores"]
    assert scores.get_root_window() is not None and scores.opacity == 1
    from appliance.ui.screens.annotate import LONG_NAME  # not at import: Kivy opens a window

    # a long class name (the TIL one) is shortened in its button by design: the heading says
    # it whole; every other name, button and the brush size are whole
    long = {b for b in screen.buttons.values() if len(getattr(b, "text", "")) > LONG_NAME}
    cut = [t for b in screen.buttons.values() if b not in long for t in cut_texts(b)]
    assert not cut + cut_texts(screen.size_label), cut + cut_texts(screen.size_label)
    app.go("home")
    pump(3)
    home = app.sm.get_screen("home")
    assert not cut_texts(home.who), cut_texts(home.who)  # the annotator's name


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_history_rows_say_version_source_author_objects_whole(fresh, app, window, tmp_path, size):
    project = make_project(tmp_path / "p", n=2, size=64, classes=DEMO_CLASSES)
    project.set_setting("ui.prelabel", "none")
    window(*size)
    screen = fresh(project.root)
    x, y = screen.canvas_view.to_window(*screen.canvas_view.center)
    pen_stroke([(x, y), (x + 30, y)])
    screen.work.save("manual")
    pen_stroke([(x, y - 30), (x + 30, y - 30)])
    screen.work.save("manual")
    image_id = screen.work.image_id
    app.go("gallery")
    gallery = app.sm.get_screen("gallery")
    tap(gallery.buttons[f"history:{image_id}"])
    from kivy.core.window import Window

    from appliance.ui.screens.gallery import HistoryPopup

    # a scrolling page releases a tap 0.2 s late
    wait_for(lambda: any(isinstance(w, HistoryPopup) for w in Window.children))
    popup = next(w for w in Window.children if isinstance(w, HistoryPopup))
    try:
        wait_for(lambda: popup.shown is not None)
        pump(3)
        rows = [w for w in popup.walk() if getattr(w, "text", "").startswith("v")]
        assert len(rows) == 2 and all("objects" in w.text for w in rows)
        assert not cut_texts(popup), cut_texts(popup)
    finally:
        popup.dismiss()
        wait_for(lambda: popup not in Window.children)
        app.go("annotate")
        pump(2)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_object_list_rows_delete_and_class_pick_whole(fresh, app, window, tmp_path, size):
    """The open object list with a point and a mask selected in turn: rows, Delete and the
    class pick list whole (upright the pick list showed "apopto...", at 1280×800 the rows
    "P1 debris · 12, 2..." and "Delet...ject 8")."""
    project = make_project(tmp_path / "p", n=2, size=64, classes=DEMO_CLASSES)
    project.set_setting("ui.prelabel", "none")
    window(*size)
    screen = fresh(project.root)
    screen.canvas_view.brush_size = 8
    x, y = screen.canvas_view.to_window(40, 40)  # image point (40, 40): one mask
    pen_stroke([(x - 6, y), (x + 6, y), (x, y + 6)])
    pump(1)
    screen.work.session.place_point(12.0, 20.0)
    tap(screen.buttons["objects"])
    pump(2)
    from appliance.ui.screens.annotate import LONG_NAME  # not at import: Kivy opens a window

    try:
        for key in ("object:1", "point:0"):
            wait_for(lambda k=key: k in screen.buttons)
            tap(screen.buttons[key])
            pump(3)
            assert "object_delete" in screen.buttons
            panel = screen.object_panel
            # a name over LONG_NAME characters is shortened by design (the heading says it)
            long = [n for n in DEMO_CLASSES if len(n) > LONG_NAME]
            cut = [t for t in cut_texts(panel) if not any(repr(n) in t for n in long)]
            assert not cut, cut
    finally:
        tap(screen.buttons["objects"])
        pump(2)
