"""Whole-slide images: real pyramidal files written by tifffile, read by region, stored once,
annotated as regions; hostile slides refused in one line with nothing stored."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from appliance.errors import ApplianceError
from appliance.slides import is_slide, open_slide
from appliance.store import Project
from appliance.store.slides import regions, slides
from testkit.slides import (
    tissue_image,
    write_ndpi,
    write_ome_pyramid,
    write_scn,
    write_sparse_slide,
    write_svs,
)
from tests.robust.conftest import cli, unchanged

IMG = tissue_image(1500, 2000, seed=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slides")
    write_ome_pyramid(folder / "section.ome.tif", IMG, levels=3, tile=256, mpp=0.5)
    write_svs(folder / "bal.svs", IMG, mpp=0.25, tile=256)
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "neutrophil,macrophage").rc == 0
    return root


def test_ome_pyramid_with_subifds_reads_exact_regions_at_every_level(files: Path) -> None:
    path = files / "section.ome.tif"
    with tifffile.TiffFile(path) as tif:  # the file really keeps its levels in SubIFDs
        assert tif.is_ome and len(tif.pages) == 1 and len(tif.pages[0].subifds) == 2
    assert is_slide(path)
    with open_slide(path) as s:
        assert s.info.level_dimensions == ((2000, 1500), (1000, 750), (500, 375))
        assert s.info.mpp == 0.5 and s.info.level_downsamples == (1.0, 2.0, 4.0)
        assert np.array_equal(s.read_region(300, 200, 700, 450), IMG[200:650, 300:1000])
        half = cv2.resize(IMG, (1000, 750), interpolation=cv2.INTER_AREA)
        assert np.array_equal(s.read_region(600, 400, 100, 80, level=1), half[200:280, 300:400])
        assert s.overview().shape == (375, 500, 3)


def test_svs_with_aperio_description(files: Path) -> None:
    path = files / "bal.svs"
    with tifffile.TiffFile(path) as tif:
        assert tif.is_svs and tif.pages[0].description.startswith("Aperio Image Library")
        baseline = tif.pages[0].asarray()  # small test file: decoded whole only to compare
    with open_slide(path) as s:
        assert (s.info.vendor, s.info.mpp, s.info.levels) == ("aperio", 0.25, 2)
        assert np.array_equal(s.read_region(1000, 1000, 300, 200), baseline[1000:1200, 1000:1300])


def test_import_stores_the_slide_once_and_tissue_regions_as_images(
    files: Path, project: Path
) -> None:
    res = cli("import", project, files / "section.ome.tif", "--region-size", "256")
    assert res.rc == 0, res.err
    assert "slide 2000×1500, 3 levels, 0.5 µm/px; 8 regions (tissue)" in res.out
    with Project.open(project) as p:
        (slide,) = slides(p)
        found = regions(p, slide.id)
        assert len(found) == 8 and {r.origin for r in found} == {"tissue"}
        for r in found:
            pixels = p.load_pixels(r.image_id)
            assert (r.width, r.height) == (256, 256)
            assert np.array_equal(pixels, IMG[r.y : r.y + 256, r.x : r.x + 256])
            grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
            assert (grey < 200).mean() > 0.4  # mostly tissue, not glass
        assert slide.path.read_bytes() == (files / "section.ome.tif").read_bytes()
    again = cli("import", project, files / "section.ome.tif", "--region-size", "256")
    assert "imported 0, duplicates 8" in again.out and "(already stored)" in again.out
    with Project.open(project) as p:
        assert len(slides(p)) == 1 and len(p.images()) == 8


def test_lab_regions_and_later_expert_regions(files: Path, project: Path) -> None:
    res = cli(
        "import",
        project,
        files / "bal.svs",
        "--region",
        "0,0,512,256",
        "--region",
        "1488,1244,512,256",
    )
    assert res.rc == 0, res.err
    res = cli("add-region", project, "bal.svs", "700,300,128,128", "--origin", "expert")
    assert res.rc == 0 and "imported 1" in res.out
    with Project.open(project) as p:
        found = regions(p)
        assert [(r.x, r.y, r.width, r.height, r.origin) for r in found] == [
            (0, 0, 512, 256, "lab"),
            (1488, 1244, 512, 256, "lab"),
            (700, 300, 128, 128, "expert"),
        ]
        assert p.image(found[1].image_id).name == "bal.svs[1488,1244,512x256]"
    listing = cli("slides", project).out
    assert "bal.svs  2000×1500  2 levels  0.25 µm/px" in listing and "expert" in listing


def test_ndpi_is_imported_with_its_levels_and_mpp(project: Path, tmp_path: Path) -> None:
    """A small NDPI written in Hamamatsu's layout (`testkit.slides.write_ndpi`): tifffile
    reads it as NDPI (64-bit IFD offsets, the Hamamatsu tags), tiffslide as a Hamamatsu slide,
    and the importer stores it with its three levels and µm per pixel."""
    path = tmp_path / "scan.ndpi"
    write_ndpi(path, IMG, mpp=0.46, levels=3)
    with tifffile.TiffFile(path) as tif:
        assert tif.tiff.offsetsize == 8 and tif.pages[0].is_ndpi
        assert tif.pages[0].tags[65421].value == 20.0 and tif.series[0].kind == "ndpi"
    res = cli("import", project, path, "--region", "256,128,512,384")
    assert res.rc == 0, res.err
    assert "slide 2000×1500, 3 levels, 0.46 µm/px; 1 regions (lab)" in res.out
    with Project.open(project) as p, open_slide(path) as s:
        (slide,) = slides(p)
        assert (slide.levels, slide.mpp, slide.vendor) == (3, 0.46, "hamamatsu")
        assert s.info.level_dimensions == ((2000, 1500), (500, 375), (125, 93))
        (region,) = regions(p, slide.id)
        pixels = p.load_pixels(region.image_id)
        assert np.array_equal(pixels, s.read_region(256, 128, 512, 384))
        assert np.abs(pixels.astype(int) - IMG[128:512, 256:768]).mean() < 3  # JPEG


@pytest.mark.parametrize(
    ("box", "needle"),
    [
        ("1900,0,200,100", "leaves the slide"),
        ("0,0,5000,10", "sides 1..4096 px"),
        ("1,2,3", "X,Y,W,H"),
    ],
)
def test_bad_regions_fail_in_one_line_and_store_nothing(
    files: Path, project: Path, box: str, needle: str
) -> None:
    with unchanged(project):
        res = cli("import", project, files / "bal.svs", "--region", box)
    assert needle in res.err and len(res.err.strip().splitlines()) == 1


def _patch_tag(path: Path, tag: str, value: int) -> None:
    with tifffile.TiffFile(path) as tif:
        t = tif.pages[0].tags[tag]
        offset, fmt = t.valueoffset, tif.byteorder + ("I" if t.dtype == 4 else "H")
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack(fmt, value))


def _hostile(folder: Path, case: str) -> Path:
    if case == "huge":
        path = folder / "huge.svs"
        write_svs(path, tissue_image(512, 512))
        _patch_tag(path, "ImageWidth", 10**6)
        _patch_tag(path, "ImageLength", 10**6)
    elif case == "no levels":
        path = folder / "flat.svs"
        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            tif.write(
                None, shape=(20000, 20000, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb"
            )
    elif case == "lost subifds":  # the OME pyramid's reduced levels point past the file
        path = folder / "lost.ome.tif"
        write_ome_pyramid(path, IMG, levels=3)
        with tifffile.TiffFile(path) as tif:
            offset = tif.pages[0].tags["SubIFDs"].valueoffset
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(struct.pack("<QQ", size + 10**6, size + 2 * 10**6))
    elif case == "truncated":
        path = folder / "cut.svs"
        write_svs(path, IMG)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    else:
        path = folder / "notatiff.svs"
        path.write_bytes(b"II*\x00" + b"\xff" * 64)
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("huge", "1000000×1000000 pixels, more than 262144 on a side"),
        ("no levels", "missing pyramid levels"),
        ("lost subifds", "not a readable slide"),
        ("truncated", "truncated"),
        ("garbage", "no image in this TIFF"),
    ],
)
def test_hostile_slides_are_refused_in_one_line_with_nothing_stored(
    project: Path, tmp_path: Path, case: str, needle: str
) -> None:
    path = _hostile(tmp_path, case)
    with unchanged(project):
        res = cli("import", project, path)
    assert res.rc == 1
    (line,) = res.err.strip().splitlines()
    assert line.startswith(f"failed: {path}: ") and needle in line, line
    with pytest.raises(ApplianceError, match=needle.split(" ")[0]):
        open_slide(path)


def test_a_100k_by_80k_slide_is_imported_without_decoding_level_0(
    project: Path, tmp_path: Path
) -> None:
    """Level 0 of this slide would be 24 GB decoded; the import stays far below 200 MB."""
    path = tmp_path / "wide.tif"
    write_sparse_slide(path, 100_000, 80_000, tile=512, tissue_tiles=16)
    tracemalloc.start()
    try:
        res = cli("import", project, path, "--region-size", "1024", "--tissue-regions", "4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.rc == 0, res.err
    assert "slide 100000×80000, 4 levels" in res.out and "4 regions (tissue)" in res.out
    assert peak < 200 * 2**20, peak


def test_slide_regions_go_to_qupath_in_level_0_pixels_and_come_back(
    files: Path, project: Path, tmp_path: Path
) -> None:
    import json

    from appliance.labels import Box, Label, Point

    picked = ["--region", "100,200,256,128", "--region", "1000,700,128,256"]
    assert cli("import", project, files / "bal.svs", *picked).rc == 0
    with Project.open(project) as p:
        first, second = regions(p)
        inst = np.zeros((128, 256), np.uint32)
        inst[10:30, 40:90] = 5
        p.save_label(
            first.image_id, Label(inst, {5: 2}, (Point(3.5, 4, 1),)), author="v", source="manual"
        )
        p.save_label(
            second.image_id,
            Label(np.zeros((256, 128), np.uint32), {}, (Box(10, 20, 50, 60, 2),)),
            author="v",
            source="manual",
        )
    out = tmp_path / "geo"
    assert cli("export-geojson", project, out).rc == 0
    doc = json.loads((out / "bal.geojson").read_text())
    geoms = [f["geometry"] for f in doc["features"]]
    assert geoms[0]["coordinates"][0][0] == [140, 210]  # mask corner: region origin + (40, 10)
    assert geoms[1] == {"type": "Point", "coordinates": [103.5, 204]}
    assert geoms[2]["coordinates"][0][0] == [1010, 720]
    # QuPath adds a point far from every region: it is counted, not lost silently
    doc["features"].append(
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [1900, 50]},
            "properties": {"objectType": "annotation", "classification": {"name": "Neutrophil"}},
        }
    )
    (out / "bal.geojson").write_text(json.dumps(doc))
    fresh = tmp_path / "fresh"
    assert cli("init", fresh, "--classes", "neutrophil,macrophage").rc == 0
    assert cli("import", fresh, files / "bal.svs", *picked).rc == 0
    res = cli("import", fresh, files / "bal.svs", *picked, "--labels", out / "bal.geojson")
    assert "labels imported 2" in res.out and "1 features lie on no region" in res.out
    with Project.open(project) as a, Project.open(fresh) as b:
        for ra, rb in zip(regions(a), regions(b), strict=True):
            assert b.latest_label(rb.image_id).label.equals(a.latest_label(ra.image_id).label)


def test_a_gold_region_scores_the_points_and_boxes_placed_on_it(files: Path, project: Path) -> None:
    """Seed 000/002 on a slide: a region is a control with truth cells; marks placed on the
    slide are scored by distance (points) and IoU (boxes) when saved."""
    from appliance.labels import Box, Label, Point
    from appliance.session.slide_work import SlideWork
    from appliance.store.controls import add_control, score_rows

    assert cli("import", project, files / "bal.svs", "--region", "500,400,256,256").rc == 0
    with Project.open(project) as p:
        (r,) = regions(p)
        truth = Label(
            np.zeros((256, 256), np.uint32),
            {},
            (Point(50, 60, 1), Point(200, 100, 2), Box(10, 150, 90, 230, 2)),
        )
        with p.transaction():
            add_control(p, r.image_id, "gold", truth)
        work = SlideWork(p, r.image_id, "vet")
        work.active_class = 1
        assert work.place_point(500 + 52, 400 + 61)  # 2.2 px off: found
        assert work.place_point(500 + 150, 400 + 20)  # no cell there: a false one
        work.active_class = 2
        assert work.draw_box(500 + 12, 400 + 148, 500 + 88, 400 + 232)  # IoU 0.9
        work.save()
        work.close()
        (row,) = score_rows(p, "vet")
    assert (row.n_truth, row.n_label, row.matched, row.class_correct) == (3, 3, 2, 2)
    assert row.instance_f1 == pytest.approx(2 * 2 / 6)


def test_training_jobs_carry_regions_never_the_slide(files: Path, project: Path, tmp_path: Path):
    import zipfile

    from appliance.bundles.training_job import read_training_job, write_training_job
    from appliance.labels import Box, Label

    picked = ["--region", "0,0,256,128", "--region", "1024,512,128,256"]
    assert cli("import", project, files / "section.ome.tif", *picked).rc == 0
    with Project.open(project) as p:
        for r in regions(p):
            inst = np.zeros((r.height, r.width), np.uint32)
            inst[10:20, 10:20] = 1
            label = Label(inst, {1: 1}, (Box(30, 30, 60, 60, 2),))
            p.save_label(r.image_id, label, author="vet", source="manual", reviewed=True)
        out = tmp_path / "job.zip"
        write_training_job(p, out, task="segment", seed=0)
        found = {(r.width, r.height): r for r in regions(p)}
    # an unlabelled region travels (for semi-supervised trainers) with its place too
    assert cli("add-region", project, "section.ome.tif", "512,256,64,64").rc == 0
    with Project.open(project) as p:
        write_training_job(p, tmp_path / "semi.zip", task="segment", include_unlabeled=True)
    with read_training_job(tmp_path / "semi.zip") as semi:
        (alone,) = semi.unlabeled
        assert alone.region is not None and (alone.region["x"], alone.region["y"]) == (512, 256)
        assert np.array_equal(alone.image(), IMG[256:320, 512:576])
    slide_bytes = (files / "section.ome.tif").read_bytes()
    with zipfile.ZipFile(out) as z:
        assert all(z.read(name) != slide_bytes for name in z.namelist())
    with read_training_job(out) as job:
        assert sorted(item.image().shape for item in job.items) == [(128, 256, 3), (256, 128, 3)]
        for item in job.items:
            r = found[(item.image().shape[1], item.image().shape[0])]
            assert np.array_equal(item.image(), IMG[r.y : r.y + r.height, r.x : r.x + r.width])
            assert item.label.boxes == [Box(30, 30, 60, 60, 2)]
            # the region's level-0 origin travels, so labels go back onto the slide
            assert item.region is not None
            assert (item.region["x"], item.region["y"]) == (r.x, r.y)
            assert item.region["slide"] == "section.ome.tif"
            assert item.region["mpp"] == pytest.approx(0.5)
            back = [b.shifted(item.region["x"], item.region["y"]) for b in item.label.boxes]
            assert back == [Box(r.x + 30, r.y + 30, r.x + 60, r.y + 60, 2)]
    # bounded by the regions' pixels (2 × 32k px as PNG + labels), not by the slide's size
    region_pixels = 256 * 128 * 2
    assert out.stat().st_size < 3 * region_pixels + 64_000
    assert out.stat().st_size < len(slide_bytes) // 4


def test_leica_scn_in_glass_coordinates_with_tissue_regions_on_the_scan(
    tmp_path: Path, project: Path
) -> None:
    """SCN places the scanned area on the glass (here 1000, 700 px from its corner, as
    OpenSlide and QuPath count); the unscanned glass reads black and is never tissue."""
    path = tmp_path / "leica.scn"
    write_scn(path, IMG)
    with open_slide(path) as s:
        assert (s.info.vendor, s.info.mpp) == ("leica", 0.5)
        assert s.info.level_dimensions == ((4000, 3000), (2000, 1500))
        with tifffile.TiffFile(path) as tif:
            scanned = tif.pages[1].asarray()
        assert np.array_equal(s.read_region(1100, 800, 300, 200), scanned[100:300, 100:400])
    res = cli("import", project, path, "--region-size", "256", "--tissue-regions", "6")
    assert res.rc == 0, res.err
    with Project.open(project) as p:
        found = regions(p)
        assert len(found) == 6
        for r in found:
            assert r.x >= 1000 and r.x + 256 <= 3000 and r.y >= 700 and r.y + 256 <= 2200
