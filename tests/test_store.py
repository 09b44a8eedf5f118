import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.errors import ApplianceError
from appliance.importer import import_paths
from appliance.label_io import export_coco, import_coco, import_labels
from appliance.labels import Label
from appliance.store import Project
from appliance.store.migrations import MIGRATIONS
from testkit.synthetic import make_instances


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_connection_pragmas(project: Project) -> None:
    q = project.db.execute
    assert q("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert q("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert q("PRAGMA foreign_keys").fetchone()[0] == 1
    names = [r[0] for r in q("SELECT name FROM migrations")]
    assert names == [name for name, _ in MIGRATIONS]


def test_16bit_tiff_and_instance_mask_round_trip(project: Project, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    img = (rng.random((64, 96)) * 65535).astype(np.uint16)
    inst = make_instances((64, 96), 12).astype(np.uint16)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "in" / "cells.tif", img)
    tifffile.imwrite(tmp_path / "masks" / "cells.tif", inst)
    summary = import_paths(project, [tmp_path / "in"])
    assert len(summary.imported) == 1 and not summary.failed
    assert import_labels(project, tmp_path / "masks").imported == 1
    rec = project.images()[0]
    pixels = project.load_pixels(rec.id)
    assert pixels.dtype == np.uint16 and np.array_equal(pixels, img)
    assert rec.path.read_bytes() == (tmp_path / "in" / "cells.tif").read_bytes()
    stored = project.latest_label(rec.id).label
    assert np.array_equal(stored.instances, inst.astype(np.uint32))

    export_coco(project, tmp_path / "coco.json")
    doc = json.loads((tmp_path / "coco.json").read_text())
    assert len(doc["annotations"]) == len(np.unique(inst)) - 1
    other = Project.create(tmp_path / "other", ["nucleus", "debris"])
    import_paths(other, [tmp_path / "in"])
    assert import_coco(other, tmp_path / "coco.json").imported == 1
    back = other.latest_label(other.images()[0].id).label
    assert back.equals(stored)
    other.close()


def test_binary_mask_becomes_instances(project: Project, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((20, 20), np.uint8))
    mask = np.zeros((20, 20), np.uint8)
    mask[2:5, 2:5] = 255
    mask[10:15, 10:12] = 255
    (tmp_path / "m").mkdir()
    tifffile.imwrite(tmp_path / "m" / "a.tif", mask)
    import_paths(project, [tmp_path / "a.tif"])
    import_labels(project, tmp_path / "m")
    label = project.latest_label(project.images()[0].id).label
    assert len(label.ids()) == 2
    assert np.array_equal(label.binary(), mask > 0)


def test_bad_folder_summary_and_duplicates(project: Project, bad_folder: Path) -> None:
    summary = import_paths(project, [bad_folder])
    assert len(summary.imported) == 3
    reasons = {Path(f).name: r for f, r in summary.failed}
    assert set(reasons) == {"truncated.png", "empty.png", "notes.tif", "bomb.png"}
    assert "truncated" in reasons["truncated.png"]
    assert "empty" in reasons["empty.png"]
    assert "not a PNG" in reasons["notes.tif"]
    assert "decompression-bomb" in reasons["bomb.png"]
    frames = [(r.name, r.frame) for r in project.images()]
    assert frames == [("img1.tif", 0), ("img2.tif", 1), ("img10.tif", 2)]
    again = import_paths(project, [bad_folder])
    assert not again.imported and len(again.duplicates) == 3
    assert project.status()["images"] == 3


def test_multipage_tiff_is_a_sequence(project: Project, tmp_path: Path) -> None:
    with tifffile.TiffWriter(tmp_path / "stack.tif") as tw:
        for k in range(3):
            tw.write(np.full((8, 8), k, np.uint16))
    import_paths(project, [tmp_path / "stack.tif"])
    recs = project.images()
    assert [(r.page, r.frame) for r in recs] == [(0, 0), (1, 1), (2, 2)]
    assert len({r.sequence for r in recs}) == 1
    assert len({r.path for r in recs}) == 1  # the file is stored once
    assert project.load_pixels(recs[2].id).max() == 2


def test_versions_are_append_only(project: Project, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((10, 10), np.uint16))
    import_paths(project, [tmp_path / "a.tif"])
    image_id = project.images()[0].id
    first = project.save_label(
        image_id, Label(make_instances((10, 10), 2)), author="ann", source="prelabel"
    )
    second = project.save_label(
        image_id,
        Label(make_instances((10, 10), 3, seed=5)),
        author="ann",
        source="manual",
        parent_id=first,
        seconds_spent=12.5,
    )
    hist = project.history(image_id)
    assert [v.id for v in hist] == [first, second]
    assert hist[1].parent_id == first and hist[1].seconds_spent == 12.5
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        project.db.execute("UPDATE labels SET author = 'x' WHERE id = ?", (first,))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        project.db.execute("DELETE FROM labels")
    with pytest.raises(ApplianceError, match="shape"):
        project.save_label(image_id, Label.empty((4, 4)), author="ann", source="manual")
    with pytest.raises(ApplianceError, match="unknown label source"):
        project.save_label(image_id, Label.empty((10, 10)), author="ann", source="magic")


def test_newer_schema_refused_untouched(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Project.create(root, ["a"]).close()
    conn = sqlite3.connect(root / "project.db")
    conn.execute("INSERT INTO migrations VALUES ('9999_future', 'x')")
    conn.commit()
    conn.close()
    before = _snapshot(root)
    with pytest.raises(ApplianceError, match="newer version"):
        Project.open(root)
    assert _snapshot(root) == before


def test_open_missing_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError, match="no project here"):
        Project.open(tmp_path)
    (tmp_path / "project.db").write_bytes(b"garbage" * 100)
    with pytest.raises(ApplianceError, match="not a readable project database"):
        Project.open(tmp_path)


def test_find_image_and_settings(project: Project, tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "alpha.tif", np.zeros((4, 4), np.uint8))
    import_paths(project, [tmp_path / "alpha.tif"])
    rec = project.images()[0]
    assert project.find_image("alpha").id == rec.id
    assert project.find_image(rec.sha256[:10]).id == rec.id
    assert project.find_image(str(rec.id)).id == rec.id
    project.set_setting("selector.weights", {"random": 0.5})
    assert project.get_setting("selector.weights") == {"random": 0.5}
    assert project.get_setting("missing", 3) == 3
