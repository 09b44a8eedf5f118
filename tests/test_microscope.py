"""Microscope files through bioio's Java-free plugins: one channel as a stack, read plane by
plane; a missing plugin or an unreadable file is one line naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.microscope import open_stack
from appliance.store import Project
from tests.robust.conftest import cli, unchanged

DATA = (np.arange(2 * 3 * 4 * 64 * 80) % 4000).astype(np.uint16).reshape(2, 3, 4, 64, 80)


def _ome_zarr(path: Path) -> Path:
    writers = pytest.importorskip("bioio_ome_zarr.writers")
    writer = writers.OMEZarrWriter(
        str(path),
        level_shapes=[DATA.shape],
        dtype=DATA.dtype,
        channels=[writers.Channel(label=n, color="FFFFFF") for n in ("DAPI", "GFP", "RFP")],
        axes_names=["t", "c", "z", "y", "x"],
        axes_types=["time", "channel", "space", "space", "space"],
    )
    writer.write_full_volume(DATA)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "nucleus").rc == 0
    return root


def test_ome_zarr_channel_by_name_becomes_a_t_z_stack(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    _ome_zarr(folder / "timelapse.ome.zarr")
    res = cli("import", project, folder, "--channel", "GFP")  # found inside a folder
    assert res.rc == 0, res.err
    assert "imported 8" in res.out
    assert "2 × 4 planes (T × Z) of channel GFP; channels DAPI, GFP, RFP" in res.out
    with Project.open(project) as p:
        images = p.images()
        assert [r.frame for r in images] == list(range(8))
        for k, rec in enumerate(images):
            assert np.array_equal(p.load_pixels(rec.id), DATA[k // 4, 1, k % 4])
            assert rec.dtype == "uint16"
    again = cli("import", project, folder / "timelapse.ome.zarr", "--channel", "1")
    assert "imported 0, duplicates 8" in again.out


def test_unknown_channel_is_one_line_and_stores_nothing(project: Path, tmp_path: Path) -> None:
    path = _ome_zarr(tmp_path / "cells.ome.zarr")
    for channel, needle in (
        ("YFP", "no channel 'YFP' (channels: DAPI, GFP, RFP)"),
        ("7", "no channel 7"),
    ):
        with unchanged(project):
            res = cli("import", project, path, "--channel", channel)
        (line,) = res.err.strip().splitlines()
        assert res.rc == 1 and needle in line and str(path) in line


@pytest.mark.parametrize(("suffix", "fmt"), [(".nd2", "Nikon ND2"), (".lif", "Leica LIF")])
def test_unreadable_files_name_the_file_and_the_format(
    project: Path, tmp_path: Path, suffix: str, fmt: str
) -> None:
    pytest.importorskip(f"bioio_{suffix[1:]}")
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00" * 4096)
    with unchanged(project):
        res = cli("import", project, path)
    (line,) = res.err.strip().splitlines()
    assert res.rc == 1 and f"{path}: not a readable {fmt} file" in line


def test_a_missing_plugin_is_named(project: Path, tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        "appliance.microscope.importlib.util.find_spec",
        lambda name, *a: None if name == "bioio_czi" else real(name, *a),
    )
    path = tmp_path / "zeiss.czi"
    path.write_bytes(b"ZISRAWFILE" + b"\x00" * 100)
    with pytest.raises(ApplianceError) as err:
        open_stack(path)
    assert str(err.value) == (
        f"{path}: reading Zeiss CZI files needs the package bioio-czi, which is not installed "
        "(pip install 'annotation-appliance[microscopy]')"
    )
    with unchanged(project):
        res = cli("import", project, path)
    assert "needs the package bioio-czi" in res.err


def test_czi_written_by_pylibczirw_imports_its_channel(project: Path, tmp_path: Path) -> None:
    pytest.importorskip("bioio_czi")
    pyczi = pytest.importorskip("pylibCZIrw.czi")
    planes = DATA[0, :, :2]  # C=3, Z=2
    path = tmp_path / "zeiss.czi"
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for c in range(3):
            for z in range(2):
                czi.write(data=planes[c, z], plane={"C": c, "Z": z, "T": 0})
    res = cli("import", project, path, "--channel", "2")
    assert res.rc == 0, res.err
    assert "imported 2" in res.out and "1 × 2 planes (T × Z) of channel Channel:2" in res.out
    with Project.open(project) as p:
        for z, rec in enumerate(p.images()):
            assert np.array_equal(p.load_pixels(rec.id), planes[2, z])
