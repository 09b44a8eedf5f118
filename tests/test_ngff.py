"""OME-Zarr (NGFF 0.4) export: image, instance ids and per-instance class for napari."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from appliance.labels import Label, Point
from appliance.store import Project
from appliance.store.slides import regions
from testkit.slides import tissue_image, write_ome_pyramid
from tests.robust.conftest import cli
from tests.test_geojson import _cells, project_dir  # noqa: F401  (fixture)


def test_images_and_labels_as_ngff(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    with Project.open(project_dir) as p:
        rec = p.find_image("slide_a")
        p.save_label(rec.id, _cells((60, 80)), author="v", source="manual")
        pixels = p.load_pixels(rec.id)
    out = tmp_path / "zarr"
    for _ in range(2):  # a second export replaces the first whole
        res = cli("export-ome-zarr", project_dir, out)
        assert res.rc == 0 and "1 images" in res.out and "note: 4 point and box" in res.out
    root = zarr.open_group(str(out / "slide_a.ome.zarr"), mode="r")
    assert np.array_equal(root["0"][...], pixels)
    assert [a["name"] for a in root.attrs["multiscales"][0]["axes"]] == ["y", "x"]
    cells = root["labels/cells"]
    assert root["labels"].attrs["labels"] == ["cells"]
    assert np.array_equal(cells["0"][...], _cells((60, 80)).instances)
    meta = cells.attrs["image-label"]
    assert meta["version"] == "0.4" and meta["source"] == {"image": "../../"}
    classes = {p["label-value"]: p["class"] for p in meta["properties"]}
    assert classes == {7: "lymphocyte", 9: "neutrophil", 12: "macrophage", 40: "macrophage"}
    assert sorted(c["label-value"] for c in meta["colors"]) == [7, 9, 12, 40]
    assert [p.name for p in out.iterdir()] == ["slide_a.ome.zarr"]  # no staging left behind


def test_a_slide_region_keeps_its_level_0_place(tmp_path: Path) -> None:
    slide = tmp_path / "s.ome.tif"
    img = tissue_image(600, 800, seed=2)
    write_ome_pyramid(slide, img, levels=2, tile=128)
    root = tmp_path / "p"
    assert cli("init", root, "--classes", "a").rc == 0
    assert cli("import", root, slide, "--region", "300,200,128,64").rc == 0
    with Project.open(root) as p:
        (r,) = regions(p)
        inst = np.zeros((64, 128), np.uint32)
        inst[5:9, 5:9] = 3
        p.save_label(r.image_id, Label(inst, {3: 1}, (Point(1, 1),)), author="v", source="manual")
    assert cli("export-ome-zarr", root, tmp_path / "z").rc == 0
    (store,) = (tmp_path / "z").iterdir()
    group = zarr.open_group(str(store), mode="r")
    transforms = group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert transforms[-1] == {"type": "translation", "translation": [0.0, 200.0, 300.0]}
    assert np.array_equal(np.moveaxis(group["0"][...], 0, -1), img[200:264, 300:428])
    label_t = group["labels/cells"].attrs["multiscales"][0]["datasets"][0]
    assert label_t["coordinateTransformations"][-1]["translation"] == [200.0, 300.0]


def test_bioio_reads_the_export_back(project_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    import pytest

    reader = pytest.importorskip("bioio_ome_zarr").Reader
    from bioio import BioImage

    with Project.open(project_dir) as p:
        rec = p.find_image("slide_b")
        p.save_label(rec.id, _cells((60, 80)), author="v", source="manual")
        pixels = p.load_pixels(rec.id)
    assert cli("export-ome-zarr", project_dir, tmp_path / "z").rc == 0
    image = BioImage(tmp_path / "z" / "slide_b.ome.zarr", reader=reader)
    assert np.array_equal(image.get_image_data("YX", T=0, C=0, Z=0), pixels)
