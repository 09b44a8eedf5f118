"""A control served among ordinary images looks exactly like them (issue 13, seed 000).

The control here is a twin of an ordinary image (one pixel differs, so it is a new image) with a
gold truth. Serving walks through the project with "Save & next"; the screen's state (every
widget's class, text, state, enabled flag, opacity, size and position) on the control equals
the state on its twin once image names are masked: only pixels differ. Both get the same
pre-label offer (Otsu), which the annotator accepts; the state right after that save (message
bar included) is compared too, so feedback (off by default) would show.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.store import Project
from appliance.supervision import config, serving
from appliance.supervision.controls import add_gold
from testkit.touch import pump, tap, wait_for
from tests.ui.projects import cell_image, make_project

pytestmark = pytest.mark.ui


def screen_state(app: object, names: list[str]) -> list[tuple[object, ...]]:
    """Every widget of the window (screen, message bar) as plain values; image names masked."""
    rows = []
    for w in app.root.walk(restrict=True):
        text = getattr(w, "text", None)
        if isinstance(text, str):
            for name in names:
                text = text.replace(name, "<image>")
            text = re.sub(r"\b\d+ (s|min)\b", "<time>", text)
            # where the image falls in the session is order, not a hint: both are served
            text = re.sub(r"Image \d+ of (\d+) · \d+ done", r"Image <n> of \1 · <k> done", text)
            # object counts are the label's content, as pixels are (a control's planted
            # pre-label has other objects than its twin's)
            text = re.sub(r"\b\d+ (objects|suggested)\b", r"<n> \1", text)
        rows.append(
            (
                type(w).__name__,
                text,
                getattr(w, "state", None),
                getattr(w, "disabled", None),
                round(float(w.opacity), 3),
                tuple(round(v) for v in w.size),
                tuple(round(v) for v in w.pos),
            )
        )
    return rows


def _project_with_twin_control(tmp_path: Path, cfg: config.Supervision) -> Project:
    """Four ordinary images and a gold control that is img1's twin (one pixel differs)."""
    project = make_project(tmp_path / "p", n=4)
    project.set_setting("ui.prelabel", "otsu")
    project.set_setting("inspection", {"gamma0": 0.0})
    twin = cell_image(1)
    twin[0, 0] += 1
    gold, masks = tmp_path / "gold", tmp_path / "masks"
    gold.mkdir()
    masks.mkdir()
    tifffile.imwrite(gold / "img4.tif", twin)
    tifffile.imwrite(masks / "img4.tif", (twin > 2000).astype(np.uint16))
    add_gold(project, gold, masks)
    config.save(project, cfg)
    return project


def _accept_offer(screen: object) -> None:
    """Accept the pre-label on screen and go on to the next image."""
    image_id = screen.work.image_id
    tap(screen.buttons["offer_accept_all"])

    def moved_on() -> bool:
        if screen.work is None or screen.work.image_id != image_id:
            return True
        if "next_image" in screen.buttons and screen.buttons["next_image"].parent:
            tap(screen.buttons["next_image"])  # post-processing suggestions: go on
        return False

    wait_for(moved_on)


def test_a_control_differs_from_an_ordinary_image_only_in_pixels(
    app, fresh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project_with_twin_control(tmp_path, config.Supervision(rate=0.5))
    monkeypatch.setattr(serving.secrets, "randbits", lambda _bits: 3)  # a fixed serving order
    names = {r.id: r.name for r in project.images()}
    control = next(i for i, n in names.items() if n == "img4.tif")
    ordinary = next(i for i, n in names.items() if n == "img1.tif")

    shown = list(names.values())
    screen = fresh(project.root)
    opened: dict[int, list[tuple[object, ...]]] = {}
    saved: dict[int, list[tuple[object, ...]]] = {}
    while screen.work is not None and len(opened) < len(names):
        image_id = screen.work.image_id
        wait_for(lambda: screen.offer is not None)
        opened[image_id] = screen_state(app, shown)
        _accept_offer(screen)
        saved[image_id] = screen_state(app, shown)
    assert set(opened) == set(names)  # the control was served among the others
    assert opened[control] == opened[ordinary]
    assert saved[control] == saved[ordinary]
    assert project.latest_label(control).author == "Dr Test"  # saved like the rest


def test_feedback_and_high_score_when_the_project_switches_them_on(
    app, fresh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config.Supervision(rate=0.5, feedback=True, highscore=True)
    project = _project_with_twin_control(tmp_path, cfg)
    monkeypatch.setattr(serving.secrets, "randbits", lambda _bits: 3)
    control = next(r.id for r in project.images() if r.name == "img4.tif")
    screen = fresh(project.root)
    assert screen.buttons["scores"].opacity == 1 and not screen.buttons["scores"].disabled
    while screen.work is not None and screen.work.image_id != control:
        wait_for(lambda: screen.offer is not None)
        _accept_offer(screen)
    wait_for(lambda: screen.offer is not None)
    _accept_offer(screen)
    assert app.message.text.startswith("Check item: ") and "cells matched" in app.message.text
    scores = screen.buttons["scores"]
    scroll = scores.parent.parent.parent  # the side panel's scrolling part (issue 25 layout)
    pump(2)  # the panel laid out for the next image: scroll_to reads positions
    if getattr(scroll, "do_scroll_y", False):
        scroll.scroll_to(scores, animate=False)  # as the expert scrolls the panel to it
    tap(scores)
    board = app.sm.get_screen("highscore")
    wait_for(lambda: bool(board.shown))  # a scrolling panel releases a tap 0.2 s late
    assert board.shown and board.shown[0][0] == "Dr Test" and board.shown[0][2] == 1
    assert board.shown[0][1] > 900  # the accepted Otsu pre-label matched the gold truth well
