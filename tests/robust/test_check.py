"""`appliance check [--repair]`: originals re-hashed, orphans and leftovers swept, a deleted
original restored by importing the same file again; a changed original never leaves (#7, #11)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from appliance.store import Project
from tests.robust.conftest import assert_one_line_refusal, cli, unchanged


def test_orphans_and_leftovers_swept(labeled: Path) -> None:
    (labeled / "images" / "zz").mkdir()
    orphan = labeled / "images" / "zz" / "deadbeef.tif"
    orphan.write_bytes(b"left by a killed import")
    temp = labeled / "images" / ".x.tif.0123.tmp"
    temp.write_bytes(b"partial")
    staging = labeled / "models" / ".staging-abc"
    staging.mkdir(parents=True)
    (staging / "m.onnx").write_bytes(b"half")
    old = time.time() - 3600
    os.utime(staging, (old, old))
    res = cli("check", labeled)
    assert res.rc == 1
    assert "orphans: 1 found, 0 removed" in res.out and "leftovers: 2 found, 0 removed" in res.out
    res = cli("check", labeled, "--repair")
    assert res.rc == 0, res.out
    assert "orphans: 1 found, 1 removed" in res.out and "leftovers: 2 found, 2 removed" in res.out
    assert not orphan.exists() and not temp.exists() and not staging.exists()
    with Project.open(labeled) as project:
        assert all(rec.path.is_file() for rec in project.images())
    assert cli("check", labeled).out.splitlines()[-1] == "ok"


def test_deleted_originals_restored_by_reimport(labeled: Path, tmp_path: Path) -> None:
    shutil.rmtree(labeled / "images")
    res = cli("check", labeled)
    assert res.rc == 1 and "2 missing" in res.out
    res = cli("import", labeled, tmp_path / "imgs")
    assert res.rc == 0 and "duplicates 2" in res.out
    assert res.out.count("restored the missing stored original") == 2
    assert cli("check", labeled).rc == 0


def test_changed_original_never_leaves(labeled: Path, tmp_path: Path) -> None:
    with Project.open(labeled) as project:
        a, b = project.images()
    a_bytes = a.path.read_bytes()
    a.path.write_bytes(b.path.read_bytes())  # swapped content under a's name
    res = cli("check", labeled)
    assert res.rc == 1 and "1 changed" in res.out and a.path.name in res.out
    with unchanged(labeled):
        res = cli("export-job", labeled, tmp_path / "job.zip")
    assert_one_line_refusal(res, str(a.path), "has changed")
    assert not (tmp_path / "job.zip").exists()
    a.path.write_bytes(a_bytes)
    assert cli("export-job", labeled, tmp_path / "job.zip").rc == 0


def test_check_on_damaged_database_touches_nothing(labeled: Path) -> None:
    db = labeled / "project.db"
    data = bytearray(db.read_bytes())
    data[4096 : 4096 * 2] = b"\xa5" * 4096
    db.write_bytes(bytes(data))
    with unchanged(labeled):
        res = cli("check", labeled, "--repair")
    assert res.rc == 1 and res.out.startswith("database: damaged")


def test_damaged_label_bytes_are_one_line(labeled: Path, tmp_path: Path) -> None:
    """A label blob damaged on disk (a bit flip quick_check cannot see) is named, not a crash."""
    import sqlite3

    conn = sqlite3.connect(labeled / "project.db")
    conn.execute("DROP TRIGGER labels_append_only_update")  # simulate rot below the schema
    conn.execute("UPDATE labels SET instances = zeroblob(40)")
    conn.commit()
    conn.close()
    with unchanged(labeled):
        res = cli("export-coco", labeled, tmp_path / "out.json")
    assert_one_line_refusal(res, "label version 1 of image 1 is damaged")
    res = cli("check", labeled)
    assert res.rc == 1 and "1 bad" in res.out
