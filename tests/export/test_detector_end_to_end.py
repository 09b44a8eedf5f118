"""Points to proposals: a project whose experts placed points → `appliance export-job` →
`python -m export train --task detect` → signed bundle → `appliance install-model` → the
tablet's pre-label proposes points on an image it never saw, where the cells are."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import tifffile

pytest.importorskip("torch")

from appliance.cli import main as appliance_main
from appliance.labels import Label, Point
from appliance.metrics import match_points
from appliance.store import Project
from export.cli import main as export_main
from tests.export.test_detector import blob_image


@pytest.mark.slow
def test_point_labels_to_a_detector_that_proposes_points(tmp_path: Path) -> None:
    src, proj = tmp_path / "src", tmp_path / "proj"
    job, bundle = tmp_path / "job.zip", tmp_path / "detector.zip"
    src.mkdir()
    truths = {}
    for seed in range(12):
        image, cells = blob_image(seed)
        tifffile.imwrite(src / f"cells{seed:02d}.tif", image)
        truths[f"cells{seed:02d}.tif"] = cells
    assert appliance_main(["init", str(proj), "--classes", "lymphocyte,macrophage"]) == 0
    assert appliance_main(["import", str(proj), str(src)]) == 0
    with Project.open(proj) as project:
        images = sorted(project.images(), key=lambda r: r.name)
        unseen = images[-1]  # left unlabeled: the proposal is judged on it
        for rec in images[:-1]:
            points = tuple(Point(x, y, c) for x, y, c in truths[rec.name])
            label = Label.empty((rec.height, rec.width))
            label = Label(label.instances, {}, points)
            project.save_label(rec.id, label, author="vet", source="manual", reviewed=True)
    assert appliance_main(["export-job", str(proj), str(job), "--task", "segment"]) == 0

    args = ["train", str(job), "--task", "detect", "--out", str(bundle), "--epochs", "30"]
    args += ["--batch", "4", "--width", "8", "--depth", "3", "--lr", "3e-3", "--device", "cpu"]
    args += ["--min-epoch-items", "16", "--patience", "100", "--no-time-budget"]
    args += ["--lr-schedule", "constant", "--point-sigma", "2", "--run-dir", str(tmp_path / "run")]
    assert export_main(args) == 0
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    (model,) = manifest["models"]
    assert model["role"] == "detector" and model["contract"]["output_kind"] == "centres"
    assert model["contract"]["decoding"]["boxes"] is False  # points in, points out
    assert model["metrics"]["parity"]["max_abs_diff"] <= 1e-4

    assert appliance_main(["install-model", str(proj), str(bundle)]) == 0
    assert (
        appliance_main(["prelabel", str(proj), "--image", unseen.name, "--method", "detector"]) == 0
    )
    with Project.open(proj) as project:
        proposed = project.latest_label(unseen.id)
        assert proposed is not None and proposed.source == "prelabel"
        found = proposed.label.points
    truth = truths[unseen.name]
    m = match_points([(x, y) for x, y, _ in truth], [(p.x, p.y) for p in found], radius=4)
    assert m.f1 >= 0.8, (truth, found)
    # the class names travel: macrophage cells (class 2) are proposed as macrophages
    assert sum(truth[i][2] == found[j].class_id for i, j in m.pairs) >= 0.8 * len(truth)
