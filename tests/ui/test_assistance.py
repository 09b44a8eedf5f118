"""Accepting a pre-label, an upgrade and a post-processing suggestion each store the expected
label version with the right source."""

from __future__ import annotations

import cv2
import numpy as np

from appliance.assist import prelabel
from appliance.bundles.install import install_model_bundle
from appliance.labels import Label
from testkit.touch import pen_stroke, tap, wait_for
from tests.ui.projects import make_project, upgrade_bundle


def test_accept_prelabel_stores_a_prelabel_version(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=3)
    project.set_setting("ui.prelabel", "otsu")
    screen = fresh(project.root)
    wait_for(lambda: screen.offer is not None)
    image_id = screen.work.image_id
    expected, _ = prelabel.run(project, image_id, "otsu", save=False)
    assert np.array_equal(screen.canvas_view.offer.instances, expected.instances)
    tap(screen.buttons["offer_accept_all"])
    wait_for(lambda: screen.work is None or screen.work.image_id != image_id)
    latest = project.latest_label(image_id)
    assert latest.source == "prelabel" and latest.author == "Dr Test" and latest.reviewed
    assert latest.label.equals(expected)


def test_prelabel_accept_and_edit_then_save_keeps_the_chain(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2)
    project.set_setting("ui.prelabel", "otsu")
    screen = fresh(project.root)
    wait_for(lambda: screen.offer is not None)
    image_id = screen.work.image_id
    tap(screen.buttons["offer_accept_edit"])
    cx, cy = screen.canvas_view.to_window(30, 30)
    pen_stroke([(cx, cy), (cx + 20, cy)])
    tap(screen.buttons["save_next"])
    wait_for(lambda: project.latest_label(image_id).source != "prelabel")
    history = project.history(image_id)
    assert [v.source for v in history] == ["prelabel", "manual"]
    assert history[1].parent_id == history[0].id


def test_upgrade_shows_before_after_and_accept_stores_an_upgrade_version(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2)
    project.set_setting("ui.prelabel", "none")
    install_model_bundle(project, upgrade_bundle(tmp_path / "bundles"))
    screen = fresh(project.root)
    canvas = screen.canvas_view
    cx, cy = canvas.to_window(128, 128)
    pen_stroke([(cx - 60 + 6 * i, cy) for i in range(21)])
    coarse = canvas.session.label()
    tap(screen.buttons["upgrade"])
    wait_for(lambda: "compare_accept" in screen.buttons)
    grown = cv2.dilate(coarse.binary().astype(np.uint8), np.ones((3, 3), np.uint8))
    assert np.array_equal(canvas.preview.instances > 0, grown > 0)
    tap(screen.buttons["compare_accept"])
    history = project.history(screen.work.image_id)
    assert [(v.source, v.coarse) for v in history] == [("manual", True), ("upgrade", False)]
    assert history[1].parent_id == history[0].id
    assert np.array_equal(history[1].label.instances > 0, grown > 0)
    assert np.array_equal(canvas.session.instances > 0, grown > 0)


def test_postprocess_suggestion_before_after_accept_stores_a_postprocess_version(fresh, tmp_path):
    project = make_project(tmp_path / "p", n=2)
    project.set_setting("ui.prelabel", "none")
    screen = fresh(project.root)
    canvas = screen.canvas_view
    canvas.brush_size = 6
    ring = [canvas.to_window(128 + 30 * np.cos(t), 128 + 30 * np.sin(t))
            for t in np.linspace(0, 2 * np.pi, 80)]  # fmt: skip
    pen_stroke(ring)
    drawn = canvas.session.label()
    image_id = screen.work.image_id
    tap(screen.buttons["save_next"])
    wait_for(lambda: "suggest:Fill holes" in screen.buttons)
    tap(screen.buttons["suggest:Fill holes"])
    assert canvas.preview is not None
    tap(screen.buttons["compare_accept"])
    history = project.history(image_id)
    assert [v.source for v in history] == ["manual", "postprocess"]
    assert history[0].label.equals(drawn)
    filled = history[1].label
    ids = filled.ids()
    assert ids.size == 1 and filled.instances[128, 128] == ids[0]
    hole = drawn.instances == 0
    assert (filled.instances[hole] > 0).sum() > 1500
    assert isinstance(filled, Label)


def test_auto_offers_no_prelabel_when_none_can_be_judged_suitable(fresh, app, tmp_path):
    project = make_project(tmp_path / "p", n=2)  # nothing labeled: eq. 4 cannot vouch for any
    screen = fresh(project.root)
    wait_for(lambda: not app.busy)
    assert screen.offer is None and screen.canvas_view.preview is None
    assert "offer_accept_all" not in screen.buttons
