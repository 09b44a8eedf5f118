"""Label TIFFs for napari/Fiji out and back; Cellpose masks in, its pickled _seg.npy refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from appliance.labels import Label
from appliance.store import Project
from tests.robust.conftest import cli, unchanged
from tests.test_geojson import CLASSES, _cells, project_dir  # noqa: F401  (fixture)


def test_label_tiffs_round_trip_instances_and_write_classes(
    project_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    big = np.zeros((60, 80), np.uint32)
    big[1:3, 1:3] = 70_000  # an id beyond uint16 forces a uint32 file
    big[5:9, 5:9] = 3
    with Project.open(project_dir) as p:
        p.save_label(p.find_image("slide_a").id, _cells((60, 80)), author="v", source="manual")
        p.save_label(
            p.find_image("slide_b").id,
            Label(big, {70_000: 2, 3: 1}),
            author="v",
            source="manual",
        )
    out = tmp_path / "tiffs"
    res = cli("export-label-tiff", project_dir, out)
    assert res.rc == 0 and "2 images" in res.out and "note: 4 point and box objects" in res.out
    a = tifffile.imread(out / "instances" / "slide_a.tif")
    b = tifffile.imread(out / "instances" / "slide_b.tif")
    assert a.dtype == np.uint16 and np.array_equal(a, _cells((60, 80)).instances)
    assert b.dtype == np.uint32 and np.array_equal(b, big)
    assert np.array_equal(
        tifffile.imread(out / "classes" / "slide_a.tif"), _cells((60, 80)).semantic()
    )
    fresh = tmp_path / "fresh"
    assert cli("init", fresh, "--classes", CLASSES).rc == 0
    res = cli("import", fresh, tmp_path / "imgs", "--labels", out / "instances")
    assert "labels imported 2" in res.out
    with Project.open(fresh) as p:
        got = p.latest_label(p.find_image("slide_b").id).label
        assert np.array_equal(got.instances, big)


def test_cellpose_mask_png_and_tif_match_their_images(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    masks = tmp_path / "cellpose"
    masks.mkdir()
    a = np.zeros((60, 80), np.uint16)
    a[3:9, 3:9], a[20:30, 40:50] = 1, 2
    cv2.imwrite(str(masks / "slide_a_cp_masks.png"), a)
    tifffile.imwrite(masks / "slide_b_cp_masks.tif", a * 3)
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", masks)
    assert "labels imported 2" in res.out, res.out + res.err
    with Project.open(project_dir) as p:
        assert np.array_equal(p.latest_label(p.find_image("slide_a").id).label.instances, a)
        assert np.array_equal(p.latest_label(p.find_image("slide_b").id).label.instances, a * 3)


def test_cellpose_seg_npy_is_refused_unread(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "cp"
    folder.mkdir()
    evil = folder / "slide_a_seg.npy"
    # a pickle that would run code if anything loaded it with allow_pickle
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (), }".ljust(117) + b"\n"
    evil.write_bytes(b"\x93NUMPY\x01\x00v\x00" + header + b"cos\nsystem\n(S'touch x'\ntR.")
    for target in (evil, folder):
        with unchanged(project_dir):
            res = cli("import", project_dir, tmp_path / "imgs", "--labels", target)
        assert res.rc == 1
        (line,) = [x for x in res.err.splitlines() if x.startswith("failed: ")]
        assert "slide_a_seg.npy" in line and "needs pickle" in line and "--save_png" in line
