"""Home: a bad model bundle chosen with the touch file chooser gives a message, changes nothing."""

from __future__ import annotations

from appliance.store.models import list_models
from testkit.touch import tap, wait_for
from tests.ui.projects import make_project


def test_bad_bundle_shows_a_message_and_installs_nothing(app, tmp_path):
    from kivy.core.window import Window  # not at import time: the app fixture sizes it first

    from appliance.ui.widgets import ChooserPopup

    project = make_project(app.workspace / "bundle-test", n=1)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "models.zip").write_bytes(b"PK\x03\x04 this is not a real bundle")
    app.errors.clear()
    app.message.opacity = 0
    app.go("home")
    home = app.sm.get_screen("home")
    tap(home.buttons[("bundle-test", "Install models")])
    popup = next(w for w in Window.children if isinstance(w, ChooserPopup))
    popup.show(usb)
    tap(popup.entries["models.zip"])
    tap(popup.ok)
    wait_for(lambda: app.message.opacity == 1 and "models.zip" in app.message.text)
    assert app.message.error
    assert list_models(project) == []
    assert not app.errors
