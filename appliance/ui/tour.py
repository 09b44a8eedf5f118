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

import cv2
import numpy as np
from kivy.clock import Clock
from kivy.core.window import Window

log = logging.getLogger(__name__)
Step = tuple[str | None, Callable[["ApplianceApp"], object], Callable[["ApplianceApp"], object]]
if TYPE_CHECKING:
    from kivy.uix.screenmanager import ScreenManager

    from appliance.session.presenter import AnnotatePresenter
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


def _ask_source(app: ApplianceApp) -> None:
    """First start's second question (the sticks come from `APPLIANCE_MEDIA_ROOTS` if set)."""
    _manager(app).get_screen("welcome").ask_source()


def _asks_source(app: ApplianceApp) -> bool:
    return bool(_manager(app).get_screen("welcome").step == "source")


def _first_project(app: ApplianceApp) -> None:
    dirs = app.project_dirs()
    if dirs:
        app.open_project(dirs[0])


def _presenter(app: ApplianceApp) -> AnnotatePresenter:
    presenter = _annotate(app).presenter
    assert presenter is not None, "the tour opened a project before this step"
    return presenter


def _manager(app: ApplianceApp) -> ScreenManager:
    assert app.sm is not None, "the tour runs after the app has built its screens"
    return app.sm


def _go(name: str) -> Callable[[ApplianceApp], None]:
    """A step action: show screen `name`."""

    def action(app: ApplianceApp) -> None:
        app.go(name)

    return action


def _shows(name: str) -> Callable[[ApplianceApp], bool]:
    """A step check: screen `name` is the current one."""

    def check(app: ApplianceApp) -> bool:
        return bool(_manager(app).current == name)

    return check


def _pen_stroke(app: ApplianceApp) -> None:
    """Accept the pre-label for editing, then pen strokes: a hole, a speck and a rough loop."""
    screen = _annotate(app)
    if screen.work is None:  # an empty workspace: nothing to edit
        return
    if screen.offer is not None:
        _presenter(app).accept_offer(edit=True)
    session, canvas = screen.work.session, screen.canvas_view
    _sloppy_edit(screen)
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
    assert screen.presenter is not None
    screen.presenter.stroke_done()


def _upgrade(app: ApplianceApp) -> None:
    screen = _annotate(app)
    screen.canvas_view.fit()
    _presenter(app).upgrade()


def _accept(app: ApplianceApp) -> None:
    _presenter(app).accept_compare()


def _sloppy_edit(screen: AnnotateScreen) -> None:
    """A hole inside the largest cell and a speck far from any cell: what post-assistance is
    there to catch (placed by distance transform, so they are a hole and a speck whatever the
    label looks like)."""
    assert screen.work is not None
    instances = screen.work.session.instances
    areas = np.bincount(instances.ravel())
    areas[0] = 0
    if areas.max() == 0:
        return
    cell = (instances == int(areas.argmax())).astype(np.uint8)
    cy, cx = np.unravel_index(cv2.distanceTransform(cell, cv2.DIST_L2, 3).argmax(), cell.shape)
    _stroke(screen, [(float(cx), float(cy))], 2.0, erase=True)
    empty = (instances == 0).astype(np.uint8)
    sy, sx = np.unravel_index(cv2.distanceTransform(empty, cv2.DIST_L2, 3).argmax(), empty.shape)
    _stroke(screen, [(float(sx), float(sy))], 1.5)


def _save(app: ApplianceApp) -> None:
    """Save after a last sloppy edit (the upgrade may have cleaned the earlier one away)."""
    _sloppy_edit(_annotate(app))
    _presenter(app).save_and_next()


def _suggest(app: ApplianceApp) -> None:
    presenter = _presenter(app)
    if presenter.review is not None and presenter.review.suggestions:
        presenter.suggest(presenter.review.suggestions[0].name)


def _light(app: ApplianceApp) -> None:
    app.apply_theme("light")
    app.go("annotate")


def _edited_and_zoomed(app: ApplianceApp) -> bool:
    screen = _annotate(app)
    assert screen.work is not None, "the tour drew on an open image"
    return screen.work.dirty and screen.canvas_view.zoom > 1


def _upgrade_accepted(app: ApplianceApp) -> bool:
    if _presenter(app).compare is not None:
        return False
    work = _annotate(app).work
    assert work is not None, "the tour accepted an upgrade of an open image"
    return work.parent_source == "upgrade"


def _postprocess_shown(app: ApplianceApp) -> bool:
    compare = _presenter(app).compare
    return compare is not None and compare.source == "postprocess"


def _gallery_drawn(app: ApplianceApp) -> bool:
    sm = _manager(app)
    return sm.current == "gallery" and all(
        i.texture for i in sm.get_screen("gallery").images.values()
    )


def _dark(app: ApplianceApp) -> None:
    app.apply_theme("dark")


def _open_object_list(app: ApplianceApp) -> None:
    """Back on the image in the dark theme with the object list open (a before/after still on
    show is put aside); the image makes room for it before a row is tapped."""
    app.apply_theme("dark")
    app.go("annotate")
    presenter = _presenter(app)
    if presenter.compare is not None:
        presenter.reject_compare()
    _annotate(app).show_objects(True)


def _pick_from_list(app: ApplianceApp) -> None:
    """Tap a middle-sized object's row: it is highlighted and centred."""
    rows = sorted(_presenter(app).objects(), key=lambda row: row.area)
    if rows:
        _annotate(app).object_panel.select(rows[len(rows) // 2].key)


def _object_list_shown(app: ApplianceApp) -> bool:
    screen, presenter = _annotate(app), _presenter(app)
    rows = [k for k in screen.buttons if k.startswith(("object:", "suggested:"))]
    key = presenter.selected_object
    keys = {row.key for row in presenter.objects()}
    return (
        screen.object_panel.parent is not None
        and bool(rows)
        and set(rows) <= keys  # only the rows in sight are widgets (a virtualised list)
        and key is not None
        and screen.buttons[key].state == "down"
        and screen.canvas_view.selected == int(key.split(":")[1])
    )


def _mark_cells(app: ApplianceApp) -> None:
    """Cells as points and boxes over the label: three points and two boxes of two classes
    placed as the Point and Box tools place them, the list open on the second box."""
    screen, presenter = _annotate(app), _presenter(app)
    work = presenter.work
    if work is None:
        return
    screen.set_tool("point")
    session = work.session
    h, w = session.shape
    for (fx, fy), cid in (((0.2, 0.25), 1), ((0.55, 0.4), 2), ((0.8, 0.7), 1)):
        presenter.set_class(cid)
        session.place_point(fx * w, fy * h)
    for (fx, fy), cid in (((0.1, 0.55), 2), ((0.6, 0.1), 1)):
        presenter.set_class(cid)
        session.draw_box(fx * w, fy * h, (fx + 0.18) * w, (fy + 0.15) * h)
    presenter.stroke_done()
    screen.show_label(None)
    screen.canvas_view.fit()
    screen.show_objects(True)
    boxes = [row.key for row in presenter.objects() if row.kind == "box"]
    screen.object_panel.select(boxes[-1])
    screen.canvas_view.fit()


def _cells_shown(app: ApplianceApp) -> bool:
    screen, presenter = _annotate(app), _presenter(app)
    status = presenter.status()
    key = presenter.selected_object or ""
    return (
        status is not None
        and (status.points, status.boxes) == (3, 2)
        and key.startswith("box:")
        and screen.buttons[key].state == "down"
        and screen.canvas_view.selected_mark == int(key.split(":")[1])
        and screen.buttons["tool:point"].state == "down"
    )


def _always(_app: ApplianceApp) -> bool:
    return True


# Each step: screenshot name, action, and what the picture must show (checked before saving,
# so a tour whose flow went elsewhere fails instead of producing a misleading picture).
STEPS: list[Step] = [
    ("01-welcome", _go("welcome"), _shows("welcome")),
    ("01-welcome-image-source", _ask_source, _asks_source),
    ("02-home", _home, _shows("home")),
    ("03-annotate-prelabel", _first_project, lambda app: _presenter(app).offer is not None),
    ("04-annotate-pen-strokes-zoomed", _pen_stroke, _edited_and_zoomed),
    ("05-upgrade-before-after", _upgrade, lambda app: _presenter(app).compare is not None),
    ("06-upgrade-accepted", _accept, _upgrade_accepted),
    ("07-post-assistance", _save, lambda app: _presenter(app).review is not None),
    ("08-postprocess-before-after", _suggest, _postprocess_shown),
    ("09-models", _go("models"), _shows("models")),
    ("10-settings", _go("settings"), _shows("settings")),
    ("11-annotate-light", _light, _shows("annotate")),
    ("12-gallery", _go("gallery"), _gallery_drawn),
    (None, _open_object_list, _always),
    ("13-annotate-object-list", _pick_from_list, _object_list_shown),
    ("14-annotate-cells", _mark_cells, _cells_shown),
    (None, _dark, _always),
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
