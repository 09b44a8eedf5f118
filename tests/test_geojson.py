"""QuPath GeoJSON both ways: pixel-exact round trip, QuPath's own files, hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.geojson import label_features, label_from_features
from appliance.geometry import mask_polygons, rasterise
from appliance.labels import Box, Label, Point
from appliance.store import Project
from tests.robust.conftest import assert_one_line_refusal, cli

DATA = Path(__file__).parent / "data"
CLASSES = "neutrophil,macrophage,lymphocyte"


def _cells(shape: tuple[int, int]) -> Label:
    """Masks with a hole, an instance in two pieces, ids far from 1..n, points and boxes."""
    inst = np.zeros(shape, np.uint32)
    inst[5:20, 5:25] = 40
    inst[10:14, 10:15] = 0  # hole
    inst[30:35, 2:6] = 7
    inst[40:44, 50:60] = 7  # second piece of instance 7
    inst[20:21, 30:31] = 9  # a single pixel
    inst[50:52, 30:32] = 12
    inst[52:54, 32:34] = 12  # diagonal touch
    objects = (Point(70.5, 3.25, 3), Box(61, 20, 79.5, 33, 1), Point(0, 0, 2), Point(80, 60, 3))
    return Label(inst, {40: 2, 7: 3, 9: 1, 12: 2}, objects)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("slide_a", "slide_b"):
        tifffile.imwrite(imgs / f"{name}.tif", rng.integers(0, 255, (60, 80), np.uint8))
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", CLASSES).rc == 0
    assert cli("import", root, imgs).rc == 0
    return root


def test_mask_polygons_round_trip_every_pixel() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        mask = rng.random((13, 11)) < 0.5
        assert np.array_equal(rasterise(mask_polygons(mask, (5, 9)), mask.shape, (5, 9)), mask)


def test_features_follow_qupath_conventions() -> None:
    from appliance.geojson import ClassStyle

    label = _cells((60, 80))
    feats = label_features(label, {2: ClassStyle("macrophage", (1, 2, 3))}, offset=(1000, 2000))
    kinds = [f["properties"]["objectKind"] for f in feats]
    assert kinds == ["mask"] * 4 + ["point", "box", "point", "point"]
    first = feats[0]  # instance 7: two pieces
    assert first["geometry"]["type"] == "MultiPolygon"
    hole = next(f for f in feats if f["properties"].get("instanceId") == 40)
    outer, inner = hole["geometry"]["coordinates"]
    assert sorted(map(tuple, outer[:-1])) == [
        (1005, 2005),
        (1005, 2020),
        (1025, 2005),
        (1025, 2020),
    ]
    assert sorted(map(tuple, inner[:-1])) == [
        (1010, 2010),
        (1010, 2014),
        (1015, 2010),
        (1015, 2014),
    ]
    assert outer[0] == outer[-1]
    assert hole["properties"]["classification"] == {"name": "macrophage", "color": [1, 2, 3]}
    assert feats[4]["geometry"] == {"type": "Point", "coordinates": [1070.5, 2003.25]}
    assert feats[5]["geometry"]["coordinates"] == [
        [[1061, 2020], [1079.5, 2020], [1079.5, 2033], [1061, 2033], [1061, 2020]]
    ]
    back = label_from_features(
        feats, (60, 80), {"macrophage": 2, "class 1": 1, "class 3": 3}, offset=(1000, 2000)
    )
    assert back.label.equals(label) and back.skipped == []


def test_round_trip_through_cli_into_a_fresh_project(project_dir: Path, tmp_path: Path) -> None:
    with Project.open(project_dir) as p:
        rec = p.find_image("slide_a")
        p.save_label(rec.id, _cells((60, 80)), author="vet", source="manual")
    out = tmp_path / "geo"
    res = cli("export-geojson", project_dir, out)
    assert res.rc == 0 and "1 images, 8 features" in res.out
    assert sorted(p.name for p in out.iterdir()) == ["slide_a.geojson"]
    fresh = tmp_path / "fresh"
    assert cli("init", fresh, "--classes", CLASSES).rc == 0
    res = cli("import", fresh, tmp_path / "imgs", "--labels", out / "slide_a.geojson")
    assert res.rc == 0, res.err
    assert "labels imported 1" in res.out
    with Project.open(fresh) as p:
        latest = p.latest_label(p.find_image("slide_a").id)
        assert latest is not None and latest.source == "import"
        assert latest.label.equals(_cells((60, 80)))
    # a folder of exports imports the same way, and an identical label is not a shrink
    res = cli("import", fresh, tmp_path / "imgs", "--labels", out)
    assert "labels imported 1" in res.out


def _inside(x: float, y: float, ring: list[list[float]]) -> bool:
    """Ray casting, written independently of the code under test."""
    hit = False
    for (xa, ya), (xb, yb) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
            hit = not hit
    return hit


def test_qupath_export_in_its_documented_format(project_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "slide_b.geojson"
    src.write_bytes((DATA / "qupath_0.4_export.geojson").read_bytes())
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src)
    assert res.rc == 0, res.err
    assert "labels imported 1" in res.out
    assert "feature 4: no classification" in res.out
    assert "feature 5: a LineString is not a cell" in res.out
    with Project.open(project_dir) as p:
        label = p.latest_label(p.find_image("slide_b").id).label
    assert label.boxes == [Box(10, 8, 30, 20, 1)]
    assert label.points == [
        Point(5.5, 5.5, 3),
        Point(70.25, 12.75, 3),
        Point(3, 58, 3),
        Point(75, 55, 1),
    ]
    doc = json.loads(src.read_text())
    outer, hole = doc["features"][1]["geometry"]["coordinates"]
    detection = doc["features"][6]["geometry"]["coordinates"][0]
    want_mac = np.array(
        [
            [
                _inside(c + 0.5, r + 0.5, outer) and not _inside(c + 0.5, r + 0.5, hole)
                for c in range(80)
            ]
            for r in range(60)
        ]
    )
    want_det = np.array(
        [[_inside(c + 0.5, r + 0.5, detection) for c in range(80)] for r in range(60)]
    )
    ids = label.ids()
    assert len(ids) == 2
    mac, det = (label.instances == i for i in ids)
    assert np.array_equal(mac, want_mac) and np.array_equal(det, want_det)
    assert [label.class_of(i) for i in ids] == [2, 3]


def test_unknown_class_names_fail_the_file_and_store_nothing(
    project_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "slide_b.geojson"
    doc = json.loads((DATA / "qupath_0.4_export.geojson").read_text())
    doc["features"][0]["properties"]["classification"]["name"] = "Eosinophil"
    src.write_text(json.dumps(doc))
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src)
    assert res.rc == 1 and "classes not in the project: Eosinophil" in res.err
    with Project.open(project_dir) as p:
        assert p.latest_label(p.find_image("slide_b").id) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
            '{"type": "Point", "coordinates": [NaN, 1]}, "properties": {"classification": '
            '{"name": "neutrophil"}}}]}',
            "NaN is not a number",
        ),
        (
            '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
            '{"type": "Point", "coordinates": [1e400, 1]}, "properties": {"classification": '
            '{"name": "neutrophil"}}}]}',
            "finite",
        ),
        ('{"type": "FeatureCollection", "features": 3}', "no list of features"),
        ('{"type": "Topology"}', "not GeoJSON"),
        (
            '[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
            '[[[0, 0], [1, 1]]]}, "properties": {"classification": {"name": "neutrophil"}}}]',
            "at least 3",
        ),
        (
            '[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
            '[[[0, 0], [1, "a"], [2, 2]]]}, "properties": '
            '{"classification": {"name": "neutrophil"}}}]',
            "finite numbers",
        ),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ("{", "not a GeoJSON file"),
    ],
)
def test_hostile_geojson_fails_in_one_line_and_stores_nothing(
    project_dir: Path, tmp_path: Path, text: str, needle: str
) -> None:
    src = tmp_path / "slide_b.geojson"
    src.write_text(text)
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src)
    failed = [line for line in res.err.splitlines() if line.startswith("failed: ")]
    assert res.rc == 1 and len(failed) == 1 and needle in failed[0], res.err
    with Project.open(project_dir) as p:
        assert p.latest_label(p.find_image("slide_b").id) is None


def test_a_shrinking_geojson_needs_replace(project_dir: Path, tmp_path: Path) -> None:
    with Project.open(project_dir) as p:
        p.save_label(p.find_image("slide_b").id, _cells((60, 80)), author="vet", source="manual")
    src = tmp_path / "slide_b.geojson"
    src.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src)
    assert "no annotations (use --replace" in res.out
    res = cli("import", project_dir, tmp_path / "imgs", "--labels", src, "--replace")
    assert "labels imported 1" in res.out


def test_mask_files_keep_points_and_boxes(project_dir: Path, tmp_path: Path) -> None:
    with Project.open(project_dir) as p:
        p.save_label(p.find_image("slide_a").id, _cells((60, 80)), author="vet", source="manual")
    masks = tmp_path / "masks"
    masks.mkdir()
    new = np.zeros((60, 80), np.uint16)
    new[1:50, 1:70] = 3
    new[55:58, 1:5] = 4
    new[50:55, 70:75] = 5
    new[56:58, 60:62] = 6
    new[57:59, 10:12] = 8
    tifffile.imwrite(masks / "slide_a.tif", new)
    assert (
        "labels imported 1" in cli("import", project_dir, tmp_path / "imgs", "--labels", masks).out
    )
    with Project.open(project_dir) as p:
        label = p.latest_label(p.find_image("slide_a").id).label
    assert np.array_equal(label.instances, new) and label.objects == _cells((60, 80)).objects


def test_export_leaves_controls_out_and_refuses_an_unwritable_folder(
    project_dir: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with Project.open(project_dir) as p:
        for name in ("slide_a", "slide_b"):
            p.save_label(p.find_image(name).id, _cells((60, 80)), author="vet", source="manual")
        p.db.execute(
            "INSERT INTO controls (image_id, kind, created) VALUES (?, 'gold', '2026-01-01')",
            (p.find_image("slide_b").id,),
        )
        p.db.commit()
    res = cli("export-geojson", project_dir, tmp_path / "geo")
    assert res.rc == 0 and "1 images" in res.out
    assert [f.name for f in (tmp_path / "geo").iterdir()] == ["slide_a.geojson"]
    assert_one_line_refusal(cli("export-geojson", project_dir, blocker / "sub"), "cannot create")


def test_rasterising_hostile_polygons_is_exact_bounded_and_quick() -> None:
    """Vertices at 1e300 cover the image; a 99,999-vertex circle is drawn scan line by scan
    line (a pixels × vertices fill took half a minute here); a zigzag whose edges all span the
    image is refused before it allocates."""
    from appliance.errors import ApplianceError
    from appliance.geometry import rasterise

    big = 1e300
    square = [np.array([[-big, -big], [big, -big], [big, big], [-big, big]])]
    assert rasterise([square], (600, 800)).all()
    ang = np.linspace(0, 2 * np.pi, 99_999, endpoint=False)
    circle = np.stack([400 + 250 * np.cos(ang), 300 + 250 * np.sin(ang)], axis=1)
    got = rasterise([[circle]], (600, 800))
    yy, xx = np.mgrid[0:600, 0:800] + 0.5
    want = (xx - 400) ** 2 + (yy - 300) ** 2 < 250**2
    assert (got != want).sum() < 10  # the polygon is the circle to within 1e-4 px
    zigzag = np.array([[i, 0.0 if i % 2 else 4096.0] for i in range(99_999)])
    with pytest.raises(ApplianceError, match="too complex"):
        rasterise([[zigzag]], (4096, 4096))
