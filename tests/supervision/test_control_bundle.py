"""Control bundles end to end: workstation `export controls` → tablet `controls install`
(verified, atomic), and control truth never leaving as an annotation (COCO, training jobs)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.cli import main
from appliance.store import Project, oplog
from appliance.store.controls import control_for_image, count_by_kind
from appliance.supervision.controls import score_save
from export.cli import main as export_main
from export.controls import plausible_names
from export.synth import write_dataset


@pytest.fixture
def job_and_project(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    write_dataset(data, 4, size=96, seed=0)
    root = tmp_path / "proj"
    assert main(["init", str(root), "--classes", "nucleus,debris"]) == 0
    assert main(["import", str(root), str(data / "images"), "--labels", str(data / "masks")]) == 0
    job = tmp_path / "job.zip"
    with Project.open(root) as project:
        write_training_job(project, job, task="segment")
    return job, root


def _counts(root: Path) -> tuple[int, int]:
    with Project.open(root) as project:
        return len(project.images()), len(project.control_image_ids())


def test_controls_from_the_workstation_install_verified_and_stay_hidden(
    job_and_project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job, root = job_and_project
    bundle = tmp_path / "controls.zip"
    assert export_main(["controls", str(job), "--out", str(bundle), "--n", "3"]) == 0

    # a tampered member: refused with one line, nothing imported
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("truth/00001"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.writestr(info, data)
    capsys.readouterr()
    assert main(["controls", "install", str(root), str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "sha256 mismatch" in err and "truth/00001" in err
    assert _counts(root) == (4, 0)

    assert main(["controls", "install", str(root), str(bundle)]) == 0
    assert _counts(root) == (7, 3)
    assert main(["controls", "install", str(root), str(bundle)]) == 2
    assert "already installed" in capsys.readouterr().err
    assert _counts(root) == (7, 3)

    with Project.open(root) as project:
        assert count_by_kind(project) == {"synthetic": 3}
        names = sorted(project.image(i).name for i in project.control_image_ids())
        assert names == ["synth_0004.tif", "synth_0005.tif", "synth_0006.tif"]
        ordinary = {r.sequence for r in project.images()} - {None}
        frames = sorted(project.image(i).frame for i in project.control_image_ids())
        assert frames == [4, 5, 6]  # the next frames of the job's own sequence
        for image_id in project.control_image_ids():
            rec = project.image(image_id)
            assert rec.sequence in ordinary and rec.dtype == "uint16"
            truth = control_for_image(project, image_id).truth
            pixels = project.load_pixels(image_id).astype(float)
            assert truth.ids().size >= 1
            # exact truth: the synthetic cells are brighter than what surrounds them
            assert np.median(pixels[truth.instances > 0]) > np.median(pixels[truth.instances == 0])
            # a person labels the control: the save is scored, the label never exported
            version = project.save_label(image_id, truth, author="ann", source="manual")
            result = score_save(project, version)
            assert result is not None and result.dice == 1.0 and result.instance_f1 == 1.0
        scored = [op for op in oplog.pending(project.db) if op.kind == "control.scored"]
        assert len(scored) == 3 and {op.payload["annotator"] for op in scored} == {"ann"}
        assert all(op.payload["score"] == 1.0 for op in scored)  # synced to the lab server
        out = tmp_path / "job2.zip"
        write_training_job(project, out, task="segment")
    with read_training_job(out) as job2:
        assert {i.name for i in job2.items} == {f"synth_{k:04d}.tif" for k in range(4)}
        scores = job2.annotator_scores["ann"]
        assert scores["n_controls"] == 3
        assert scores["scores"]["dice"]["value"] == 1.0
    coco = tmp_path / "coco.json"
    assert main(["export-coco", str(root), str(coco)]) == 0
    doc = json.loads(coco.read_text())
    assert {i["file_name"] for i in doc["images"]} == {f"synth_{k:04d}.tif" for k in range(4)}


def test_a_bundle_whose_classes_differ_is_refused(
    job_and_project: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job, _ = job_and_project
    bundle = tmp_path / "controls.zip"
    assert export_main(["controls", str(job), "--out", str(bundle), "--n", "1"]) == 0
    other = tmp_path / "other"
    assert main(["init", str(other), "--classes", "mitosis"]) == 0
    capsys.readouterr()
    assert main(["controls", "install", str(other), str(bundle)]) == 2
    assert "'nucleus' in the bundle but 'mitosis' in this project" in capsys.readouterr().err
    assert _counts(other) == (0, 0)


def test_gold_controls_refuse_bad_input_without_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_dataset(data, 2, size=48, seed=1)
    root = tmp_path / "proj"
    assert main(["init", str(root), "--classes", "nucleus"]) == 0
    (data / "masks" / "synth_0001.tif").unlink()
    capsys.readouterr()
    code = main(["controls", "add", str(root), "--gold", str(data / "images"), "--labels",
                 str(data / "masks")])  # fmt: skip
    assert code == 2
    assert "no mask with the stem 'synth_0001'" in capsys.readouterr().err
    assert _counts(root) == (0, 0)
    one = data / "images" / "synth_0000.tif"
    mask = data / "masks" / "synth_0000.tif"
    assert main(["controls", "add", str(root), "--gold", str(one), "--labels", str(mask)]) == 0
    assert main(["controls", "add", str(root), "--gold", str(one), "--labels", str(mask)]) == 2
    assert "a control must be new" in capsys.readouterr().err
    assert _counts(root) == (1, 1)
    assert main(["controls", "config", str(root), "--rate", "0.9"]) == 2
    assert "control rate must be in [0, 0.5]" in capsys.readouterr().err


def test_plausible_names_continue_the_pattern() -> None:
    assert plausible_names(["a_009.png", "a_010.png", "x.tif"], 2) == ["a_011.png", "a_012.png"]
    assert plausible_names(["scan.tif"], 1) == ["image_0001.tif"]
