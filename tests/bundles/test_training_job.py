"""Training-job bundles: what the workstation reads back is what the tablet labeled."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from appliance.assist import preprocess
from appliance.bundles.archive import BundleError
from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.cli import main
from appliance.store import Project


def _good_versions(project: Project) -> dict[str, object]:
    """Image name -> the label version the export should choose (newest non-low-quality)."""
    out = {}
    for rec in project.images():
        good = [v for v in project.history(rec.id) if v.source != "prelabel" and not v.coarse]
        if good:
            out[rec.name] = good[-1]
    return out


def test_round_trip_gives_back_images_labels_and_provenance(
    labeled_project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "job.zip"
    h = preprocess.Preprocessing.from_dict({"clahe": True})
    preprocess.save(labeled_project, h)
    job_id, counts = write_training_job(labeled_project, out, task="all", seed=3)
    expected = _good_versions(labeled_project)
    records = {r.name: r for r in labeled_project.images()}
    with read_training_job(out) as job:
        assert job.id == job_id and job.task == "all"
        assert job.preprocessing == h.to_dict()  # explicit values, not "defaults"
        assert job.classes == ["background", "nucleus", "debris"]
        assert set(job.annotator_scores) == {"alice", "bob", "model"}
        names = {item.name for item in job.items}
        assert names == set(expected) - {"img9.tif"}  # the control item never leaves
        assert sum(counts.values()) == len(job.items) == 8
        for item in job.items:
            rec, version = records[item.name], expected[item.name]
            assert np.array_equal(item.image(), labeled_project.load_pixels(rec.id))
            assert item.image().dtype == np.uint16
            assert version.label.equals(item.label)
            assert item.label.classes == version.label.classes
            assert (item.author, item.source) == (version.author, version.source)
            assert item.seconds_spent == version.seconds_spent
        by_name = {item.name: item for item in job.items}
        assert by_name["img1.tif"].coarse is not None  # the pre-label bob corrected
        assert by_name["img2.tif"].coarse is not None  # bob's coarse scribble
        assert by_name["img0.tif"].coarse is None
        assert by_name["img1.tif"].vote_authors == ["alice", "bob"]
        assert len(by_name["img1.tif"].votes) == 2 and by_name["img0.tif"].votes == []


def test_zip_members_hold_the_original_image_bytes(
    labeled_project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "job.zip"
    write_training_job(labeled_project, out)
    with read_training_job(out) as job:
        for item in job.items:
            rec = next(r for r in labeled_project.images() if r.name == item.name)
            assert job.read_member(item.image_member) == rec.path.read_bytes()


def test_split_is_deterministic_for_a_seed(labeled_project: Project, tmp_path: Path) -> None:
    def splits(name: str, seed: int) -> dict[str, str]:
        write_training_job(labeled_project, tmp_path / name, split=(0.5, 0.25, 0.25), seed=seed)
        with read_training_job(tmp_path / name) as job:
            return {item.name: item.split for item in job.items}

    first, again, other = splits("a.zip", 7), splits("b.zip", 7), splits("c.zip", 8)
    assert first == again
    assert sorted(first.values()).count("train") == 4
    assert first != other


def test_upgrade_task_pairs_low_quality_and_good_labels(
    labeled_project: Project, tmp_path: Path
) -> None:
    """Every good label is exported (the trainer perturbs it); a low-quality one travels along."""
    out = tmp_path / "up.zip"
    write_training_job(labeled_project, out, task="upgrade")
    with read_training_job(out) as job:
        assert len(job.items) == 8
        paired = sorted(item.name for item in job.items if item.coarse is not None)
        assert paired == ["img1.tif", "img2.tif"]
        for item in job.items:
            assert item.coarse is None or not item.coarse.equals(item.label)


def test_only_reviewed_skips_unreviewed_versions(labeled_project: Project, tmp_path: Path) -> None:
    out = tmp_path / "rev.zip"
    _, counts = write_training_job(labeled_project, out, task="segment", only_reviewed=True)
    with read_training_job(out) as job:
        assert "img5.tif" not in {item.name for item in job.items}
        assert all(item.coarse is None for item in job.items)
    assert sum(counts.values()) == 7


def test_job_pickles_for_data_loader_workers(labeled_project: Project, tmp_path: Path) -> None:
    out = tmp_path / "job.zip"
    write_training_job(labeled_project, out)
    with read_training_job(out) as job:
        clone = pickle.loads(pickle.dumps(job))
        assert np.array_equal(clone.items[0].image(), job.items[0].image())
        clone.close()


def test_cli_export_job(labeled_project: Project, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.zip"
    root = str(labeled_project.root)
    assert (
        main(
            [
                "export-job",
                root,
                str(out),
                "--task",
                "segment",
                "--seed",
                "2",
                "--split",
                "0.6,0.2,0.2",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: job ") and "task segment" in printed
    with read_training_job(out) as job:
        assert job.split == {"ratios": [0.6, 0.2, 0.2], "seed": 2}
    with pytest.raises(SystemExit):
        main(["export-job", root, str(out), "--split", "0.9,0.9"])


def test_tampered_job_is_refused_naming_the_member(
    labeled_project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "job.zip"
    write_training_job(labeled_project, out)
    with zipfile.ZipFile(out) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    victim = next(info.filename for info, _ in entries if info.filename.startswith("labels/"))
    spoiled = tmp_path / "spoiled.zip"
    with zipfile.ZipFile(spoiled, "w") as zf:
        for info, data in entries:
            zf.writestr(
                info, data[:-1] + bytes([data[-1] ^ 1]) if info.filename == victim else data
            )
    with pytest.raises(BundleError) as caught:
        read_training_job(spoiled)
    assert caught.value.member == victim and "sha256 mismatch" in caught.value.problem
