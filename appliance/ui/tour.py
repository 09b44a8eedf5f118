"""`appliance run DIR --screenshot-tour OUT`: visit every screen once, save a PNG of each, quit.

Used to produce docs/screenshots and to eyeball layouts on the target resolution. The tour is a
list of steps run from the Kivy clock; after each step it waits until background jobs are done
and two frames were drawn, so every picture shows a settled screen.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kivy.clock import Clock
from kivy.core.window import Window

log = logging.getLogger(__name__)
Step = tuple[str | None, Callable[["ApplianceApp"], object], Callable[["ApplianceApp"], object]]
if TYPE_CHECKING:
    from appliance.ui.app import ApplianceApp
    from appliance.ui.screens.annotate import AnnotateScreen


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


def _presenter(app: object) -> object:
    return _annotate(app).presenter


def _pen_stroke(app: object) -> None:
    """Accept the pre-label for editing, then pen strokes: a hole, a speck and a rough loop."""
    screen = _annotate(app)
    if screen.work is None:  # an empty workspace: nothing to edit
        return
    if screen.offer is not None:
        screen.presenter.accept_offer(edit=True)
    session, canvas = screen.work.session, screen.canvas_view
    ids = sorted(session.classes)
    rect = session.instance_rect(ids[0]) if ids else None
    if rect is not None:  # a sloppy edit for the post-assistance pictures: a hole and a speck
        cx, cy = (rect.x0 + rect.x1) / 2, (rect.y0 + rect.y1) / 2
        _stroke(screen, [(cx, cy)], 3.0, erase=True)
        _stroke(screen, [(cx + 40, cy + 40)], 1.0)
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
    screen.presenter.stroke_done()


def _upgrade(app: ApplianceApp) -> None:
    screen = _annotate(app)
    screen.canvas_view.fit()
    screen.presenter.upgrade()


def _accept(app: object) -> None:
    _presenter(app).accept_compare()


def _save(app: object) -> None:
    _presenter(app).save_and_next()


def _suggest(app: object) -> None:
    presenter = _presenter(app)
    if presenter.review is not None and presenter.review.suggestions:
        presenter.suggest(presenter.review.suggestions[0].name)


def _light(app: object) -> None:
    app.apply_theme("light")
    app.go("annotate")


# Each step: screenshot name, action, and what the picture must show (checked before saving,
# so a tour whose flow went elsewhere fails instead of producing a misleading picture).
STEPS: list[Step] = [
    ("01-welcome", lambda app: app.go("welcome"), lambda app: app.sm.current == "welcome"),
    ("02-home", _home, lambda app: app.sm.current == "home"),
    ("03-annotate-prelabel", _first_project, lambda app: _presenter(app).offer is not None),
    (
        "04-annotate-pen-strokes-zoomed",
        _pen_stroke,
        lambda app: _annotate(app).work.dirty and _annotate(app).canvas_view.zoom > 1,
    ),
    ("05-upgrade-before-after", _upgrade, lambda app: _presenter(app).compare is not None),
    (
        "06-upgrade-accepted",
        _accept,
        lambda app: (
            _presenter(app).compare is None and _annotate(app).work.parent_source == "upgrade"
        ),
    ),
    ("07-post-assistance", _save, lambda app: _presenter(app).review is not None),
    (
        "08-postprocess-before-after",
        _suggest,
        lambda app: (
            _presenter(app).compare is not None and _presenter(app).compare.source == "postprocess"
        ),
    ),
    ("09-models", lambda app: app.go("models"), lambda app: app.sm.current == "models"),
    ("10-settings", lambda app: app.go("settings"), lambda app: app.sm.current == "settings"),
    ("11-annotate-light", _light, lambda app: app.sm.current == "annotate"),
    (
        "12-gallery",
        lambda app: app.go("gallery"),
        lambda app: (
            app.sm.current == "gallery"
            and all(i.texture for i in app.sm.get_screen("gallery").images.values())
        ),
    ),
    (None, lambda app: app.apply_theme("dark"), lambda app: True),
]


def schedule_tour(app: ApplianceApp, out: Path, failures: list[str]) -> None:
    """Run STEPS once the app has started, then stop it; names of failed steps go to
    `failures` (the command then exits with an error)."""
    out.mkdir(parents=True, exist_ok=True)
    steps = list(STEPS)
    settle = 0  # ticks since the app was last busy
    pending: tuple[str, Callable[[ApplianceApp], object]] | None = None  # shot due, its check

    def tick(_dt: float) -> bool:
        nonlocal settle, pending
        if app.busy:
            settle = 0
            return True
        settle += 1
        if settle < 6:
            return True
        settle = 0
        if pending is not None:
            name, shows = pending
            if not app.safely(shows, app):
                failures.append(name)
                log.error("tour: %s does not show the state it names; no picture", name)
            else:
                shot = Window.screenshot(name=str(out / "shot.png"))
                os.replace(shot, out / f"{name}.png")
            pending = None
        if not steps:
            app.stop()
            return False
        step_name, action, check = steps.pop(0)
        app.safely(action, app)
        pending = (step_name, check) if step_name else None
        return True

    Clock.schedule_once(lambda _dt: Clock.schedule_interval(tick, 0.1), 1.0)
