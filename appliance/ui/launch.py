"""Start the app: settle the display and Kivy's configuration before Kivy opens a window."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.session.display import TABLET_SIZE


def launch(
    workspace: Path,
    tour: Path | None = None,
    kiosk: bool = False,
    smoke: Path | None = None,
    window: tuple[int, int] = TABLET_SIZE,
) -> int:
    """Run the app on `workspace`; with `tour`, drive every screen once and save screenshots.

    `kiosk`: the tablet appliance's way to start, fullscreen and borderless with no mouse
    multitouch emulation (its red dots and right-drag zoom confuse a pen user). `smoke`: start,
    run the active model, take one screenshot, write a JSON report there and quit.
    `window`: the window size (pixels) of the tour and the smoke check, e.g. (1280, 800) for an
    8-inch tablet or (1200, 1920) for the 10-inch one held upright.
    """
    os.environ.setdefault("KIVY_NO_ARGS", "1")  # our arguments are not Kivy's
    if tour is not None or smoke is not None:
        from appliance.session.display import emulate_tablet, start_virtual_display

        side = max(window)  # a square screen holds the window in either orientation
        if not start_virtual_display((side, side)):
            raise ApplianceError("screenshots need a display or Xvfb (package xvfb)")
        emulate_tablet()
    configure_kivy()
    from kivy.config import Config

    if tour is not None or smoke is not None:  # the target tablet's resolution, for screenshots
        Config.set("graphics", "width", str(window[0]))
        Config.set("graphics", "height", str(window[1]))
    elif kiosk:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "borderless", "1")
    else:
        Config.set("graphics", "window_state", "maximized")
    if kiosk or smoke is not None:
        Config.set("input", "mouse", "mouse,disable_multitouch")
        Config.set("kivy", "exit_on_escape", "0")
    # these import the window, so only after the configuration above
    from appliance.ui.app import ApplianceApp
    from appliance.ui.smoke import schedule_smoke
    from appliance.ui.tour import schedule_tour

    app = ApplianceApp(workspace)
    failures: list[str] = []
    if tour is not None:
        schedule_tour(app, tour, failures)
    if smoke is not None:
        schedule_smoke(app, smoke)
    app.run()
    if failures:
        raise ApplianceError(f"screenshot tour: {', '.join(failures)} did not show their state")
    return 0


def configure_kivy() -> None:
    """Kivy settings the app relies on, set before the window exists (also used by the tests).

    - No multitouch emulation: otherwise a right click leaves a red dot that turns the next
      right-drag (laptop-mode panning) into a pinch.
    - A docked on-screen keyboard appears whenever a text field is focused (tablets have no
      keyboard; a docked physical one still works).
    - No multisampling (Kivy asks for 2 samples by default): the screen is rectangles,
      textures and text, whose edges it does not change, while every pixel of every frame was
      rendered and resolved per sample. Under Xvfb's software GL it cost more than half of each
      frame (issue 25: ~180 → ~75 ms of CPU per 1920×1200 frame); on a tablet's GPU it is
      memory bandwidth, i.e. battery. Point markers are textured discs with soft edges.
    """
    from kivy.config import Config

    Config.set("graphics", "multisamples", "0")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    Config.set("kivy", "keyboard_mode", "systemanddock")
