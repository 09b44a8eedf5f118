"""`--targets masks`: points and boxes become coarse masks (refined by an upgrade model when
one is given) and a segmentation model trains on them; the experts' own masks stay as drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("torch")

from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.errors import ApplianceError
from appliance.importer import import_paths
from appliance.labels import Box, Label, Point
from appliance.store import Project
from export.cli import main as export_main
from export.data import samples_from_job
from export.object_masks import mask_targets, upgrader_from_bundle
from tests.ui.projects import prelabel_bundle, upgrade_bundle


def job_with_objects(tmp_path: Path) -> Path:
    """Four 64² images: a drawn mask, a point and a box each (a job of seed 000's kind)."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        tifffile.imwrite(src / f"img{i}.tif", np.full((64, 64), 100 + i, np.uint16))
    with Project.create(tmp_path / "p", ["cell", "debris"]) as project:
        import_paths(project, [src])
        for rec in project.images():
            inst = np.zeros((64, 64), np.uint32)
            inst[2:8, 2:8] = 1
            objects = (Point(40, 12, 2), Box(20, 30, 44, 46, 1))
            label = Label(inst, {1: 1}, objects)
            project.save_label(rec.id, label, author="vet", source="manual", reviewed=True)
        out = tmp_path / "job.zip"
        write_training_job(project, out, task="segment", split=(0.5, 0.5, 0.0))
    return out


def test_points_and_boxes_become_coarse_masks_beside_the_drawn_ones(tmp_path: Path) -> None:
    job_path = job_with_objects(tmp_path)
    with read_training_job(job_path) as job:
        plain, _ = samples_from_job(job, "segment")
        splits, _ = samples_from_job(job, "segment", mask_targets(point_radius=4))
    sample = splits["train"][0]
    assert int((plain["train"][0].target > 0).sum()) == 36  # objects alone train nothing
    assert (sample.target[2:8, 2:8] == 1).all()  # the drawn mask
    assert sample.target[12, 40] == 2 and 40 <= int((sample.target == 2).sum()) <= 60  # disc r 4
    ellipse = (sample.target == 1) & (sample.instances != sample.instances[4, 4])
    assert ellipse[38, 32] and not ellipse[31, 21]  # the box's centre, not its corner
    assert 0.7 * np.pi * 12 * 8 < ellipse.sum() < 1.3 * np.pi * 12 * 8


def test_an_upgrade_model_refines_the_coarse_masks(tmp_path: Path) -> None:
    job_path = job_with_objects(tmp_path)
    upgrade = upgrader_from_bundle(upgrade_bundle(tmp_path / "b"), tmp_path / "x")
    with read_training_job(job_path) as job:
        coarse, _ = samples_from_job(job, "segment", mask_targets(point_radius=4))
        refined, _ = samples_from_job(job, "segment", mask_targets(4, upgrade))
    before, after = coarse["train"][0].target, refined["train"][0].target
    # the test upgrade model grows every coarse cell by a pixel; the drawn mask stays as drawn
    assert (after > 0).sum() > (before > 0).sum()
    assert np.array_equal(after[0:10, 0:10] > 0, before[0:10, 0:10] > 0)
    assert after[12, 40] == 2  # the point's cell keeps its class
    with pytest.raises(ApplianceError, match="holds no upgrade model"):
        upgrader_from_bundle(prelabel_bundle(tmp_path / "c"), tmp_path / "y")


def test_export_train_targets_masks_runs_and_refuses_misuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_path = job_with_objects(tmp_path)
    args = ["train", str(job_path), "--out", str(tmp_path / "m.zip"), "--epochs", "1"]
    args += ["--width", "4", "--depth", "2", "--no-time-budget", "--device", "cpu"]
    args += ["--min-epoch-items", "4", "--run-dir", str(tmp_path / "run")]
    assert export_main([*args, "--targets", "masks", "--output", "softmax"]) == 0
    assert (tmp_path / "m.zip").exists()
    capsys.readouterr()
    for misuse, problem in (
        (["--upgrade-with", str(tmp_path / "m.zip")], "--upgrade-with refines the coarse masks"),
        (["--task", "detect", "--targets", "masks"], "--targets masks trains a segmentation"),
        (["--task", "detect", "--quantize"], "--quantize is not available for --task detect"),
    ):
        assert export_main([*args, *misuse]) != 0
        err = capsys.readouterr().err.strip()
        assert problem in err and "\n" not in err, err
