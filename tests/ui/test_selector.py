"""The selector's strategies work in the app: opening a project fills the feature and
uncertainty caches in the background, raising the uncertainty weight serves the image the model
is least sure of, and flagged images come first with the cherry-pick weight up."""

from __future__ import annotations

import numpy as np
import tifffile

from appliance.assist import features
from appliance.assist.selector import WEIGHTS_KEY, Selector, load_pool
from appliance.bundles.install import install_model_bundle
from appliance.cli import main
from appliance.importer import import_paths
from appliance.store import Project, cache
from appliance.store.models import active_model
from testkit.touch import tap, wait_for
from tests.ui.projects import cell_image, prelabel_bundle


def _project(tmp_path) -> tuple[Project, int]:
    """Four cell images the threshold model is fairly sure about and one noise field whose
    pixels all sit near its threshold."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        tifffile.imwrite(src / f"img{i}.tif", cell_image(i, 128))
    noise = np.random.default_rng(0).normal(30000, 1000, (128, 128)).astype(np.uint16)
    tifffile.imwrite(src / "noise.tif", noise)
    project = Project.create(tmp_path / "p", ["nucleus"])
    assert not import_paths(project, [src]).failed
    install_model_bundle(project, prelabel_bundle(tmp_path / "bundles"))
    project.set_setting("ui.prelabel", "none")
    noise_id = project.find_image("noise.tif").id
    # a seed whose random order serves the noise neither first nor second
    for seed in range(20):
        project.set_setting("selector", {"seed": seed})
        order = [c.image_id for c in Selector(load_pool(project), {"random": 1.0}, seed).next(5)]
        if noise_id not in order[:2]:
            break
    return project, noise_id


def _reenter(app) -> None:
    """Leave and re-enter the annotate screen: it reopens the same image, re-reads the weights."""
    app.go("settings")
    app.go("annotate")


def test_uncertainty_and_cherry_pick_weights_change_what_is_served(app, fresh, tmp_path):
    project, noise_id = _project(tmp_path)
    seed = project.get_setting("selector")["seed"]
    order = [c.image_id for c in Selector(load_pool(project), {"random": 1.0}, seed).next(5)]
    project.set_setting(WEIGHTS_KEY, {"random": 1.0})
    screen = fresh(project.root)
    assert screen.work.image_id == order[0]

    # the app filled both caches in the background, with no CLI run
    wait_for(lambda: app.selector_job is not None and app.selector_job.done(), timeout=60)
    assert app.selector_job.status == "done" and features.missing(project) == []
    model_id = active_model(project, "prelabel").id
    scores = dict(cache.uncertainty_rows(project, model_id))
    assert len(scores) == 5 and max(scores, key=scores.get) == noise_id

    # uncertainty weight up: the next image is the noise field, not the random order's second
    project.set_setting(WEIGHTS_KEY, {"random": 1.0, "uncertainty": 10.0})
    _reenter(app)
    assert screen.work.image_id == order[0]
    tap(screen.buttons["Skip"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != order[0])
    assert screen.work.image_id == noise_id != order[1]

    # flag the random order's last image (CLI), and the open one with the button
    last = project.image(order[-1]).name
    assert main(["flag", str(project.root), last]) == 0
    tap(screen.buttons["Flag"])
    wait_for(lambda: project.image(noise_id).cherry_picked)
    project.set_setting(WEIGHTS_KEY, {"random": 1.0, "uncertainty": 10.0, "cherry_pick": 100.0})
    _reenter(app)
    assert screen.buttons["Flag"].state == "down"
    tap(screen.buttons["Skip"])
    wait_for(lambda: screen.work is not None and screen.work.image_id != noise_id)
    assert screen.work.image_id == order[-1]
    assert screen.buttons["Flag"].state == "down"
