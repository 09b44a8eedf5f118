"""Honest training data: people's labels are targets and votes, model output never is unless a
person accepted it; the upgrade task exports good labels; empty exports write nothing; a model
is judged (eq. 4) only on images outside its own training job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.assist import prelabel
from appliance.assist.upgrade import upgrade_version
from appliance.bundles.archive import BundleError
from appliance.bundles.install import install_model_bundle
from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.cli import main
from appliance.labels import Label
from appliance.store import Project
from appliance.store.jobs import job_image_ids

from .onnx_builders import contract, threshold_model


def _bright(project: Project, image_id: int) -> Label:
    """What the threshold model predicts: the bright cells, as connected instances."""
    return Label.from_semantic((project.load_pixels(image_id) > 20000).astype(np.uint16))


def test_accepted_prelabel_is_a_good_label(seq_project: Project, tmp_path: Path) -> None:
    first = seq_project.images()[0].id
    guess = _bright(seq_project, first)
    seq_project.save_label(first, guess, author="prelabel:otsu", source="prelabel")
    # "accept all": the same pixels saved by the person, marked reviewed
    accepted = seq_project.save_label(
        first, guess, author="alice", source="prelabel", reviewed=True
    )
    write_training_job(seq_project, tmp_path / "job.zip", task="segment")
    with read_training_job(tmp_path / "job.zip") as job:
        (item,) = job.items
        assert (item.author, item.source) == ("alice", "prelabel")
        assert item.label.equals(seq_project.label_version(accepted).label)


def test_model_output_is_never_a_vote_or_the_target(with_models: Project, tmp_path: Path) -> None:
    image = with_models.images()[1].id
    coarse = _bright(with_models, image)
    coarse.instances[:, 16:] = 0
    mine = with_models.save_label(image, coarse, author="alice", source="manual")
    upgraded = upgrade_version(with_models, mine)
    assert with_models.label_version(upgraded).author == "upgrade"
    for task in ("segment", "upgrade"):
        write_training_job(with_models, tmp_path / f"{task}.zip", task=task)
        with read_training_job(tmp_path / f"{task}.zip") as job:
            (item,) = job.items
            assert item.author == "alice" and item.votes == [] and item.vote_authors == []
            assert item.label.equals(coarse)
    # once a person reviews the upgrade, it is their label and the target
    reviewed = with_models.label_version(upgraded).label
    with_models.save_label(image, reviewed, author="bob", source="upgrade", reviewed=True)
    write_training_job(with_models, tmp_path / "again.zip", task="segment")
    with read_training_job(tmp_path / "again.zip") as job:
        (item,) = job.items
        assert item.author == "bob" and item.vote_authors == ["alice", "bob"]


def test_upgrade_task_exports_good_labels_without_coarse_versions(
    seq_project: Project, tmp_path: Path
) -> None:
    for rec in seq_project.images():
        seq_project.save_label(
            rec.id, _bright(seq_project, rec.id), author="alice", source="manual"
        )
    _, counts = write_training_job(seq_project, tmp_path / "up.zip", task="upgrade")
    assert sum(counts.values()) == 4
    with read_training_job(tmp_path / "up.zip") as job:
        assert len(job.items) == 4 and all(item.coarse is None for item in job.items)


def test_an_empty_export_is_exit_2_and_writes_nothing(
    seq_project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "empty.zip"
    with pytest.raises(BundleError, match="nothing to export"):
        write_training_job(seq_project, out)
    image = seq_project.images()[0].id
    seq_project.save_label(image, _bright(seq_project, image), author="m", source="prelabel")
    root = str(seq_project.root)
    assert main(["export-job", root, str(out), "--task", "upgrade"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to export" in err and "\n" not in err
    assert not out.exists() and list(tmp_path.glob("*.zip")) == []


def test_suitability_judges_a_model_only_outside_its_training_job(
    seq_project: Project, tmp_path: Path
) -> None:
    ids = [r.id for r in seq_project.images()]
    for image_id in ids[:3]:  # labels the threshold model reproduces exactly
        seq_project.save_label(
            image_id, _bright(seq_project, image_id), author="alice", source="manual"
        )
    job_id, _ = write_training_job(seq_project, tmp_path / "job.zip", task="segment")
    assert job_image_ids(seq_project, job_id) == set(ids[:3])
    elsewhere = np.zeros((32, 32), np.uint32)  # a label the model disagrees with completely
    elsewhere[28:31, 0:3] = 1
    seq_project.save_label(ids[3], Label(elsewhere, {}), author="alice", source="manual")

    spec = ModelSpec("prelabel", "seg", threshold_model(tmp_path / "m.onnx"), contract())
    write_model_bundle(tmp_path / "m.zip", [spec], job_id=job_id)
    install_model_bundle(seq_project, tmp_path / "m.zip")
    scores = prelabel.suitability(seq_project, methods=("otsu", "model"))
    # only the image outside the job is judged: the model scores 0 there, not 3 of 4 perfect
    assert scores["model"] == pytest.approx(0.0)
    assert scores["otsu"] == pytest.approx(0.0)
