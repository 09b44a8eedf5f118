"""Label imports never lose labels, and hostile label files are refused in one line (#1, #5, #6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.store import Project
from tests.robust.conftest import assert_one_line_refusal, cli, unchanged


def coco(path: Path, annotations: object, images: object = None, **extra: object) -> Path:
    doc = {
        "images": images
        if images is not None
        else [
            {"id": 1, "file_name": "img1.tif", "height": 32, "width": 40},
            {"id": 2, "file_name": "img2.tif", "height": 32, "width": 40},
        ],
        "categories": [{"id": 1, "name": "nucleus"}],
        "annotations": annotations,
        **extra,
    }
    path.write_text(json.dumps(doc))
    return path


def box(ann_id: int, image_id: int, x: int, y: int, **extra: object) -> dict:
    poly = [x, y, x + 6, y, x + 6, y + 6, x, y + 6]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": [poly], **extra}


def newest_instances(root: Path, name: str) -> int:
    with Project.open(root) as project:
        latest = project.latest_label(project.find_image(name).id)
        return -1 if latest is None else latest.n_instances


def test_listed_image_without_annotations_keeps_its_label(labeled: Path, tmp_path: Path) -> None:
    # exporters list every image; img1 has none here and unknown image ids point nowhere
    path = coco(tmp_path / "c.json", [box(1, 99, 2, 2)])
    with unchanged(labeled):
        res = cli("import", labeled, tmp_path / "imgs", "--labels", path)
    assert res.rc == 0, res.err
    assert "labels imported 0" in res.out
    assert "skipped: img1.tif: no annotations" in res.out
    assert "skipped: annotation 1: unknown image_id 99" in res.out
    assert newest_instances(labeled, "img1") == 3
    export = tmp_path / "out.json"
    assert cli("export-coco", labeled, export).rc == 0
    assert len(json.loads(export.read_text())["annotations"]) == 3


def test_shrinking_import_needs_replace(labeled: Path, tmp_path: Path) -> None:
    path = coco(tmp_path / "c.json", [box(1, 1, 2, 2), box(2, 2, 5, 5)])
    res = cli("import", labeled, tmp_path / "imgs", "--labels", path)
    assert res.rc == 0, res.err
    assert "labels imported 1" in res.out  # img2 gets its first label
    assert "skipped: img1.tif: would replace 3 objects with 1" in res.out
    assert newest_instances(labeled, "img1") == 3
    res = cli("import", labeled, tmp_path / "imgs", "--labels", path, "--replace")
    assert res.rc == 0 and "labels imported 2" in res.out
    assert newest_instances(labeled, "img1") == 1
    with Project.open(labeled) as project:  # the manual version is still in the history
        assert [v.n_instances for v in project.history(project.find_image("img1").id)] == [3, 1]


def test_empty_mask_file_needs_replace(labeled: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "img1.tif", np.zeros((32, 40), np.uint16))
    with unchanged(labeled):
        res = cli("import", labeled, tmp_path / "imgs", "--labels", masks)
    assert res.rc == 0 and "skipped: " in res.out and "no annotations" in res.out
    assert cli("import", labeled, tmp_path / "imgs", "--labels", masks, "--replace").rc == 0
    assert newest_instances(labeled, "img1") == 0


def _rle(counts: list[int] | str, size: list[int]) -> dict:
    return {
        "id": 1,
        "image_id": 2,
        "category_id": 1,
        "segmentation": {"size": size, "counts": counts},
    }


MALFORMED = {
    "annotations not a list": {"annotations": {"a": 1}},
    "images not a list": {"images": 5},
    "top level a list": [1, 2],
    "degenerate polygon": {"annotations": [box(1, 2, 1, 1) | {"segmentation": [[1, 2, 3, 4]]}]},
    "polygon with NaN": {
        "annotations": [box(1, 2, 1, 1) | {"segmentation": [[1, 2, 3, "x", 5, 6]]}]
    },
    "negative RLE counts": {"annotations": [_rle([-5, 1285], [32, 40])]},
    "RLE counts not covering the image": {"annotations": [_rle([5, 6], [32, 40])]},
    "huge RLE size": {"annotations": [_rle([1600000000], [40000, 40000])]},
    "instance id -1": {"annotations": [box(1, 2, 1, 1, instance_id=-1)]},
    "instance id 2**40": {"annotations": [box(1, 2, 1, 1, instance_id=2**40)]},
    "instance id twice": {
        "annotations": [box(1, 2, 1, 1, instance_id=4), box(2, 2, 9, 9, instance_id=4)]
    },
    "polygon far outside": {
        "annotations": [box(1, 2, 1, 1) | {"segmentation": [[0, 0, 1e9, 0, 1e9, 1e9]]}]
    },
    "compressed RLE cut inside a number": {"annotations": [_rle("0`", [32, 40])]},
    "compressed RLE outside its alphabet": {"annotations": [_rle("\u00ff\u00fe", [32, 40])]},
    "unknown category": {"annotations": [box(1, 2, 1, 1) | {"category_id": 7}]},
    "segmentation a string": {"annotations": [box(1, 2, 1, 1) | {"segmentation": "abc"}]},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_coco_refused_untouched(labeled: Path, tmp_path: Path, case: str) -> None:
    spec = MALFORMED[case]
    path = tmp_path / "bad.json"
    if isinstance(spec, list):
        path.write_text(json.dumps(spec))
    else:
        base = json.loads(coco(tmp_path / "base.json", []).read_text())
        path.write_text(json.dumps(base | spec))
    with unchanged(labeled):
        res = cli("import", labeled, tmp_path / "imgs", "--labels", path)
    assert res.rc in (1, 2), res
    assert "Traceback" not in res.err
    if res.rc == 2:
        assert_one_line_refusal(res, "bad.json")
    else:
        assert [ln for ln in res.err.splitlines() if ln.startswith("failed: img2.tif")]


def test_deeply_nested_json_and_fifo_refused(labeled: Path, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with unchanged(labeled):
        assert_one_line_refusal(cli("import", labeled, tmp_path / "imgs", "--labels", deep), "deep")
    fifo = tmp_path / "labels.json"
    os.mkfifo(fifo)
    with unchanged(labeled):
        res = cli("import", labeled, tmp_path / "imgs", "--labels", fifo)
    assert_one_line_refusal(res, "not a regular file")


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0, -1], np.int8),
        ([0, 1, -7], np.int32),
        ([0, 2**33], np.int64),
        ([0, 1e12], np.float32),
        ([0, np.inf], np.float32),
        ([0, 1.5], np.float32),
    ],
)
def test_mask_values_that_would_wrap_are_refused(
    labeled: Path, tmp_path: Path, values, dtype
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    mask = np.zeros((32, 40), dtype)
    mask[:4, :4], mask[10:14, 10:14] = values[0] if len(values) < 3 else values[2], values[1]
    tifffile.imwrite(masks / "img2.tif", mask)
    with unchanged(labeled):
        res = cli("import", labeled, tmp_path / "imgs", "--labels", masks)
    assert res.rc == 1 and "Traceback" not in res.err
    failed = [ln for ln in res.err.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "img2.tif" in failed[0]


def test_compressed_rle_decoder_agrees_and_never_crashes() -> None:
    """Our decoder equals pycocotools on valid strings and refuses garbage in one line (the C
    decoder corrupts the heap on some of these strings)."""
    from pycocotools import mask as coco_mask

    from appliance.errors import ApplianceError
    from appliance.labels import decode_coco_rle

    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = np.asfortranarray((rng.random((32, 40)) < 0.3).astype(np.uint8))
        counts = coco_mask.encode(mask)["counts"].decode("ascii")
        decoded = decode_coco_rle({"size": [32, 40], "counts": counts}, 32, 40)
        assert np.array_equal(decoded, mask.astype(bool))
    alphabet = [chr(c) for c in range(32, 127)]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet, int(rng.integers(0, 30))))
        with pytest.raises(ApplianceError):
            decode_coco_rle({"size": [32, 40], "counts": text}, 32, 40)
