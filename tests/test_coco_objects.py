"""COCO carries box objects as detections (bbox, no segmentation); points are counted out."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.labels import Box, Label
from appliance.store import Project
from tests.robust.conftest import cli
from tests.test_geojson import CLASSES, _cells, project_dir  # noqa: F401  (fixture)


def test_boxes_round_trip_through_coco(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    with Project.open(project_dir) as p:
        p.save_label(p.find_image("slide_a").id, _cells((60, 80)), author="vet", source="manual")
    out = tmp_path / "coco.json"
    res = cli("export-coco", project_dir, out)
    assert res.rc == 0 and "note: 3 point objects are not in COCO" in res.out
    doc = json.loads(out.read_text())
    boxes = [a for a in doc["annotations"] if "segmentation" not in a]
    assert boxes == [
        {
            "id": 5,
            "image_id": 1,
            "category_id": 1,
            "bbox": [61.0, 20.0, 18.5, 13.0],
            "area": 18.5 * 13.0,
            "iscrowd": 0,
            "label_version": boxes[0]["label_version"],
        }
    ]
    fresh = tmp_path / "fresh"
    assert cli("init", fresh, "--classes", CLASSES).rc == 0
    doc["categories"] = [{"id": i, "name": n} for i, n in enumerate(CLASSES.split(","), 1)]
    out.write_text(json.dumps(doc))
    res = cli("import", fresh, tmp_path / "imgs", "--labels", out)
    assert res.rc == 0, res.err
    with Project.open(fresh) as p:
        label = p.latest_label(p.find_image("slide_a").id).label
    want = _cells((60, 80))
    assert label.boxes == want.boxes and label.points == []
    assert Label(label.instances, label.classes).equals(Label(want.instances, want.classes))


def test_a_bbox_leaving_the_image_fails_that_image_only(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    doc = {
        "images": [{"id": 1, "file_name": "slide_a.tif"}, {"id": 2, "file_name": "slide_b.tif"}],
        "categories": [{"id": 1, "name": "neutrophil"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [70, 50, 20, 5]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [7, 5, 20, 5.5]},
        ],
    }
    src = tmp_path / "c.json"
    src.write_text(json.dumps(doc))
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src)
    assert res.rc == 1 and "leaves the image" in res.err
    with Project.open(project_dir) as p:
        assert p.latest_label(p.find_image("slide_a").id) is None
        assert p.latest_label(p.find_image("slide_b").id).label.objects == (Box(7, 5, 27, 10.5, 1),)
