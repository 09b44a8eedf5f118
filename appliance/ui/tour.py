"""`appliance run DIR --screenshot-tour OUT`: visit every screen once, save a PNG of each, quit.

Used to produce docs/screenshots and to eyeball layouts on the target resolution. The tour is a
list of steps run from the Kivy clock; after each step it waits until background jobs are done
and two frames were drawn, so every picture shows a settled screen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kivy.clock import Clock
from kivy.core.window import Window

if TYPE_CHECKING:
    from appliance.ui.app import ApplianceApp
    from appliance.ui.screens.annotate import AnnotateScreen

Step = tuple[str | None, Callable[["ApplianceApp"], object]]


def _annotate(app: ApplianceApp) -> AnnotateScreen:
    assert app.sm is not None, "the tour runs after the app has built its screens"
    screen: AnnotateScreen = app.sm.get_screen("annotate")
    return screen


def _home(app: ApplianceApp) -> None:
    """Leave the first-start screen as a new annotator would: by giving a name."""
    if not app.annotator:
        app.set_annotator("Dr Demo")
    app.go("home")


def _first_project(app: ApplianceApp) -> None:
    dirs = app.project_dirs()
    if dirs:
        app.open_project(dirs[0])


def _pen_stroke(app: ApplianceApp) -> None:
    """Accept the pre-label for editing, then pen strokes: a hole, a speck and a rough loop."""
    screen = _annotate(app)
    if screen.work is None:  # an empty workspace: nothing to edit
        return
    if screen.offer is not None:
        screen.accept_prelabel(edit=True)
    session, canvas = screen.work.session, screen.canvas_view
    ids = sorted(session.classes)
    rect = session.instance_rect(ids[0]) if ids else None
    if rect is not None:  # a sloppy edit for the post-assistance pictures: a hole and a speck
        cx, cy = (rect.x0 + rect.x1) / 2, (rect.y0 + rect.y1) / 2
        _stroke(screen, [(cx, cy)], 2.0, erase=True)
        _stroke(screen, [(cx + 40, cy + 40)], 1.5)
    h, w = session.shape
    loop = [
        (w * 0.5 + 14 * math.cos(t), h * 0.5 + 14 * math.sin(t))
        for t in np.linspace(0, 2 * math.pi, 24)
    ]
    _stroke(screen, loop, 5.0)
    canvas.zoom_about(canvas.zoom * 3, *canvas.to_window(w / 2, h / 2))


def _stroke(
    screen: AnnotateScreen, points: list[tuple[float, float]], radius: float, erase: bool = False
) -> None:
    assert screen.work is not None
    session, canvas = screen.work.session, screen.canvas_view
    canvas.refresh(session.begin_stroke(*points[0], radius, erase=erase))
    for x, y in points[1:]:
        canvas.refresh(session.stroke_to(x, y, radius))
    canvas.refresh(session.end_stroke())
    screen._on_stroke_done()


def _upgrade(app: ApplianceApp) -> None:
    screen = _annotate(app)
    screen.canvas_view.fit()
    screen.upgrade()


def _press(label: str) -> Callable[[ApplianceApp], None]:
    def press(app: ApplianceApp) -> None:
        widget = _annotate(app).buttons.get(label)
        if widget is not None:
            widget.dispatch("on_release")

    return press


def _save(app: ApplianceApp) -> None:
    _annotate(app).save_and_next()


def _suggest(app: ApplianceApp) -> None:
    screen = _annotate(app)
    for name, widget in list(screen.buttons.items()):
        if name.startswith("Suggest:"):
            widget.dispatch("on_release")
            return


def _light_annotate(app: ApplianceApp) -> None:
    app.apply_theme("light")
    app.go("annotate")


STEPS: list[Step] = [
    ("01-welcome", lambda app: app.go("welcome")),
    ("02-home", _home),
    ("03-annotate-prelabel", _first_project),
    ("04-annotate-pen-strokes-zoomed", _pen_stroke),
    ("05-upgrade-before-after", _upgrade),
    ("06-upgrade-accepted", _press("Accept")),
    ("07-post-assistance", _save),
    ("08-postprocess-before-after", _suggest),
    ("09-models", lambda app: app.go("models")),
    ("10-settings", lambda app: app.go("settings")),
    ("11-annotate-light", _light_annotate),
    (None, lambda app: app.apply_theme("dark")),
]


def schedule_tour(app: ApplianceApp, out: Path) -> None:
    """Run STEPS once the app has started, then stop it."""
    out.mkdir(parents=True, exist_ok=True)
    steps = list(STEPS)
    settle = 0  # ticks since the app was last busy
    pending: str | None = None  # the step whose screenshot is due

    def tick(_dt: float) -> bool:
        nonlocal settle, pending
        if app.busy:
            settle = 0
            return True
        settle += 1
        if settle < 6:
            return True
        settle = 0
        if pending:
            shot = Window.screenshot(name=str(out / "shot.png"))
            os.replace(shot, out / f"{pending}.png")
            pending = None
        if not steps:
            app.stop()
            return False
        name, action = steps.pop(0)
        app.safely(action, app)
        pending = name
        return True

    Clock.schedule_once(lambda _dt: Clock.schedule_interval(tick, 0.1), 1.0)
