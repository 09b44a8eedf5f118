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

import numpy as np
from kivy.clock import Clock
from kivy.core.window import Window

Step = tuple[str | None, Callable[[object], object]]


def _annotate(app: object) -> object:
    return app.sm.get_screen("annotate")


def _home(app: object) -> None:
    """Leave the first-start screen as a new annotator would: by giving a name."""
    if not app.annotator:
        app.set_annotator("Dr Demo")
    app.go("home")


def _first_project(app: object) -> None:
    dirs = app.project_dirs()
    if dirs:
        app.open_project(dirs[0])


def _pen_stroke(app: object) -> None:
    """Accept the pre-label for editing, then pen strokes: a hole, a speck and a rough loop."""
    screen = _annotate(app)
    if screen.work is None:  # an empty workspace: nothing to edit
        return
    if screen.offer is not None:
        screen.accept_prelabel(edit=True)
    session, canvas = screen.work.session, screen.canvas_view
    ids = sorted(session.classes)
    if ids:  # a sloppy edit for the post-assistance pictures: a hole and a speck
        rect = session.instance_rect(ids[0])
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
    screen: object, points: list[tuple[float, float]], radius: float, erase: bool = False
) -> None:
    session, canvas = screen.work.session, screen.canvas_view
    canvas.refresh(session.begin_stroke(*points[0], radius, erase=erase))
    for x, y in points[1:]:
        canvas.refresh(session.stroke_to(x, y, radius))
    canvas.refresh(session.end_stroke())
    screen._on_stroke_done()


def _upgrade(app: object) -> None:
    screen = _annotate(app)
    screen.canvas_view.fit()
    screen.upgrade()


def _press(label: str) -> Callable[[object], None]:
    def press(app: object) -> None:
        widget = _annotate(app).buttons.get(label)
        if widget is not None:
            widget.dispatch("on_release")

    return press


def _save(app: object) -> None:
    _annotate(app).save_and_next()


def _suggest(app: object) -> None:
    screen = _annotate(app)
    for name, widget in list(screen.buttons.items()):
        if name.startswith("Suggest:"):
            widget.dispatch("on_release")
            return


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
    ("11-annotate-light", lambda app: (app.apply_theme("light"), app.go("annotate"))),
    (None, lambda app: app.apply_theme("dark")),
]


def schedule_tour(app: object, out: Path) -> None:
    """Run STEPS once the app has started, then stop it."""
    out.mkdir(parents=True, exist_ok=True)
    steps = list(STEPS)
    state: dict[str, object] = {"settle": 0, "pending": None}

    def tick(_dt: float) -> bool:
        if app.busy:
            state["settle"] = 0
            return True
        state["settle"] = int(state["settle"]) + 1
        if int(state["settle"]) < 6:
            return True
        state["settle"] = 0
        if state["pending"]:
            shot = Window.screenshot(name=str(out / "shot.png"))
            os.replace(shot, out / f"{state['pending']}.png")
            state["pending"] = None
        if not steps:
            app.stop()
            return False
        name, action = steps.pop(0)
        app.safely(action, app)
        state["pending"] = name
        return True

    Clock.schedule_once(lambda _dt: Clock.schedule_interval(tick, 0.1), 1.0)
