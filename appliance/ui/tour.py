"""`appliance run DIR --screenshot-tour OUT`: visit every screen once, save a PNG of each, quit.

Used to produce docs/screenshots and to eyeball layouts on the target resolution. The tour is a
list of steps run from the Kivy clock; after each step it waits until background jobs are done
and two frames were drawn, so every picture shows a settled screen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kivy.clock import Clock
from kivy.core.window import Window

Step = tuple[str | None, Callable[[object], object]]


def _annotate(app: object) -> object:
    return app.sm.get_screen("annotate")


def _first_project(app: object) -> None:
    dirs = app.project_dirs()
    if dirs:
        app.open_project(dirs[0])


def _accept_and_edit(app: object) -> None:
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
        canvas.refresh(session.begin_stroke(cx, cy, 2.0, erase=True))
        session.end_stroke()
        canvas.refresh(session.begin_stroke(cx + 40, cy + 40, 1.5))
        session.end_stroke()
    canvas.zoom_about(canvas.zoom * 3, *canvas.to_window(*_centre(screen)))


def _centre(screen: object) -> tuple[float, float]:
    h, w = screen.work.session.shape
    return w / 2, h / 2


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
    ("02-home", lambda app: app.go("home")),
    ("03-annotate-prelabel", _first_project),
    ("04-annotate-editing-zoomed", _accept_and_edit),
    ("05-post-assistance", _save),
    ("06-before-after", _suggest),
    ("07-models", lambda app: app.go("models")),
    ("08-settings", lambda app: app.go("settings")),
    ("09-annotate-light", lambda app: (app.apply_theme("light"), app.go("annotate"))),
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
