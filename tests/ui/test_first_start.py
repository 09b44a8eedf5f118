"""First start with a USB stick: name, tap the stick, then Home's import opens on it.

The stick is a folder in a fake media root injected through `APPLIANCE_MEDIA_ROOTS` (see
`appliance.media`); the session's app is put back to its first-start state (no annotator, no
image source) and restored afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

import tifffile

from appliance.media import ROOTS_ENV
from appliance.store.project import Project
from testkit.touch import pump, tap, wait_for
from tests.ui.projects import cell_image, make_project


def _popup() -> object:
    from kivy.core.window import Window

    from appliance.ui.widgets import ChooserPopup

    wait_for(lambda: any(isinstance(w, ChooserPopup) for w in Window.children))
    return next(w for w in Window.children if isinstance(w, ChooserPopup))


def _close(popup: object, button: object) -> None:
    """Tap a popup's button and wait until the popup is gone (the next tap must not hit it)."""
    from kivy.core.window import Window

    tap(button)
    wait_for(lambda: popup not in Window.children)
    pump(2)


def test_first_start_picks_the_stick_and_home_imports_from_it(app, tmp_path, monkeypatch):
    stick = tmp_path / "media" / "SCANS"
    (stick / "day1").mkdir(parents=True)
    for k in range(3):
        tifffile.imwrite(stick / "day1" / f"cell{k}.tif", cell_image(500 + k))
    (stick / "readme.txt").write_text("not an image")
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path / "media"))
    saved, saved_name = dict(app.prefs), app.annotator
    make_project(app.workspace / "usb-import", n=0).close()
    app.errors.clear()
    try:
        for key in ("annotator", "annotators", "image_source"):
            app.prefs.pop(key, None)
        app.annotator = ""
        app.start()
        pump(2)
        assert app.sm.current == "welcome"
        welcome = app.sm.get_screen("welcome")
        welcome.field.text = "Dr First"  # typed once with the on-screen keyboard
        tap(welcome.go_on)
        wait_for(lambda: welcome.step == "source")
        assert welcome.media["SCANS"].text == "SCANS (3 images)"
        tap(welcome.media["SCANS"])
        wait_for(lambda: app.sm.current == "home")
        stored = json.loads((app.workspace / "tablet.json").read_text())
        assert stored["annotator"] == "Dr First"
        assert stored["image_source"] == {"kind": "usb", "path": str(stick), "name": "SCANS"}

        home = app.sm.get_screen("home")
        tap(home.buttons[("usb-import", "Import images")])
        popup = _popup()
        assert popup.folder == stick
        assert popup.heading.text == "Import from USB stick SCANS (3 images)"
        _close(popup, popup.ok)  # "Use this folder": the whole stick
        wait_for(lambda: "imported 3" in app.message.text)
        with Project.open(app.workspace / "usb-import") as project:
            assert project.status()["images"] == 3

        stick.rename(tmp_path / "media" / ".unplugged")  # the stick is pulled out
        app.message.hide()
        tap(home.buttons[("usb-import", "Import images")])
        popup = _popup()
        wait_for(lambda: "not plugged in" in app.message.text)
        assert app.message.error and "\n" not in app.message.text
        assert app.message.text.startswith("USB stick SCANS is not plugged in")
        assert popup.folder == Path.home()  # another folder can still be chosen
        _close(popup, popup.cancel)
        assert not app.errors
    finally:
        app.prefs.clear()
        app.prefs.update(saved)
        app.annotator = saved_name
        app._save_prefs()
        app.message.hide()
        app.go("home")
        pump(2)
