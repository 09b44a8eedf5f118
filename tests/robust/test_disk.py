"""A full disk and a read-only project folder: one line each, nothing half-written, and the
project opens and passes `check` afterwards (#6, #11). A small tmpfs where root can mount one;
elsewhere ENOSPC is injected into the durable write."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from appliance.durable import TEMP_GLOB
from appliance.store import Project
from tests.robust.conftest import cli


def _mount(where: Path, size: str) -> bool:
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    return res.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 3 MiB file system, or None where this machine cannot mount one."""
    where = tmp_path / "disk"
    mounted = _mount(where, "3m")
    yield where if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def noise_folder(folder: Path, n: int, side: int, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        tifffile.imwrite(folder / f"n{i}.tif", rng.integers(0, 65535, (side, side), np.uint16))
    return folder


def visible_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(TEMP_GLOB)]


@pytest.mark.slow
def test_full_disk(small_disk: Path | None, tmp_path: Path, monkeypatch) -> None:
    root = (small_disk or tmp_path) / "proj"
    assert cli("init", root, "--classes", "nucleus").rc == 0
    assert cli("import", root, noise_folder(tmp_path / "few", 2, 64, 0)).rc == 0
    if small_disk is None:  # no tmpfs here: the disk fills up inside the durable write

        def full(*_args: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(root / "images"))

        monkeypatch.setattr("appliance.store.images.atomic_copy", full)
    # 12 files of 512 KiB do not fit into what is left of 3 MiB
    res = cli("import", root, noise_folder(tmp_path / "many", 12, 512, 1))
    assert "Traceback" not in res.err
    assert res.rc in (1, 2)
    if res.rc == 2:
        assert len(res.err.splitlines()) == 1
    else:
        failed = [ln for ln in res.err.splitlines() if ln.startswith("failed:")]
        assert failed and all("No space left on device" in ln for ln in failed), res.err
    assert not visible_leftovers(root)
    if small_disk is not None:  # SQLite itself meets the full disk: label versions to store
        res = cli("prelabel", root, "--all", "--method", "otsu")
        assert res.rc in (0, 2) and "Traceback" not in res.err
        if res.rc == 2:
            assert len(res.err.splitlines()) == 1 and "full" in res.err, res.err
    monkeypatch.undo()
    with Project.open(root) as project:
        images = project.images()
        assert all(rec.path.is_file() for rec in images)
    check = cli("check", root)
    assert check.rc == 0, check.out
    assert "originals: " in check.out and "0 missing, 0 changed" in check.out


@pytest.mark.slow
def test_read_only_project(small_disk: Path | None, tmp_path: Path) -> None:
    if small_disk is None:
        pytest.skip("needs a file system root can remount read-only (tmpfs)")
    root = small_disk / "proj"
    assert cli("init", root, "--classes", "nucleus").rc == 0
    assert cli("import", root, noise_folder(tmp_path / "few", 2, 32, 0)).rc == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        for args in (
            ("import", root, noise_folder(tmp_path / "more", 1, 32, 5)),
            ("prelabel", root, "--all", "--method", "otsu"),
            ("status", root),
            ("export-coco", root, root / "out.json"),
        ):
            res = cli(*args)
            assert res.rc == 2, (args, res)
            assert len(res.err.splitlines()) == 1 and "project folder is read-only" in res.err
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert cli("check", root).rc == 0
