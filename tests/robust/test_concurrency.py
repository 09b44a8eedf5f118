"""Four processes on one project at once: two import the same folder, one pre-labels, one saves
labels. Each succeeds or fails with one line; no duplicate images; `check` passes (#6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.robust.conftest import cli

SAVER = r"""
import sys
import numpy as np
from appliance.labels import Label
from appliance.store import Project
with Project.open(sys.argv[1]) as project:
    for round in range(3):
        for rec in project.images():
            inst = np.zeros((rec.height, rec.width), np.uint32)
            inst[round:round + 5, 2:9] = 1
            project.save_label(rec.id, Label(inst, {1: 1}), author="saver", source="manual")
print("saved")
"""


@pytest.mark.slow
def test_four_processes_at_once(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(30):
        tifffile.imwrite(folder / f"f{i}.tif", rng.integers(0, 4000, (48, 48), np.uint16))
    seed = tmp_path / "seed"
    seed.mkdir()
    tifffile.imwrite(seed / "s0.tif", rng.integers(0, 4000, (48, 48), np.uint16))
    assert cli("init", root, "--classes", "nucleus").rc == 0
    assert cli("import", root, seed).rc == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    app = [sys.executable, "-m", "appliance"]
    commands = [
        [*app, "import", str(root), str(folder)],
        [*app, "import", str(root), str(folder)],
        [*app, "prelabel", str(root), "--all", "--method", "otsu"],
        [sys.executable, "-c", SAVER, str(root)],
    ]
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for cmd, proc in zip(commands, procs, strict=True):
        _out, err = proc.communicate(timeout=240)
        assert "Traceback" not in err, (cmd, err)
        assert proc.returncode in (0, 2), (cmd, proc.returncode, err)
        if proc.returncode == 2:
            assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    check = cli("check", root)
    assert check.rc == 0, check.out
    dump = sqlite_rows(root / "project.db")
    assert dump["images"] == dump["distinct"] == 31
    assert dump["frames"] == 30  # the folder's frames numbered once each


def sqlite_rows(db: Path) -> dict[str, int]:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "images": q("SELECT count(*) FROM images"),
            "distinct": q("SELECT count(DISTINCT sha256 || coalesce(page, '')) FROM images"),
            "frames": q(
                "SELECT count(DISTINCT frame) FROM images WHERE sequence = "
                "(SELECT sequence FROM images WHERE name = 'f0.tif')"
            ),
        }
    finally:
        conn.close()
