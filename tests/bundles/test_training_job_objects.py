"""Training-job bundles carry point and box objects as training targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.bundles.archive import BundleError
from appliance.bundles.training_job import read_training_job, write_training_job
from appliance.labels import Box, Label, Point
from appliance.store import Project


def test_points_and_boxes_travel_with_their_classes(labeled_project: Project, tmp_path: Path):
    rec = labeled_project.images()[0]
    base = labeled_project.latest_label(rec.id)
    assert base is not None
    objects = (Point(3.5, 4.25, 2), Box(10, 2, 30.5, 20, 1))
    labeled_project.save_label(
        rec.id,
        Label(base.label.instances, base.label.classes, objects),
        author="alice",
        source="manual",
        reviewed=True,
        parent_id=base.id,
    )
    out = tmp_path / "job.zip"
    write_training_job(labeled_project, out, task="all", seed=3)
    with read_training_job(out) as job:
        item = next(i for i in job.items if i.name == rec.name)
        assert item.label.objects == objects
        assert item.label.equals(labeled_project.latest_label(rec.id).label)
        others = [i for i in job.items if i.name != rec.name]
        assert all(i.label.objects == () for i in others)


def test_an_object_of_a_class_the_job_lacks_is_refused(labeled_project: Project, tmp_path: Path):
    rec = labeled_project.images()[0]
    base = labeled_project.latest_label(rec.id)
    assert base is not None
    bad = Label(base.label.instances, base.label.classes, (Point(1, 1, 7),))
    labeled_project.save_label(rec.id, bad, author="alice", source="manual", reviewed=True)
    out = tmp_path / "job.zip"
    write_training_job(labeled_project, out, task="all", seed=3)
    with pytest.raises(BundleError, match=r"objects\[0\] class 7 is not a class of this job"):
        read_training_job(out)
