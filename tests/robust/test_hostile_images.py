"""Hostile image files: refused at import in one line, or stored so every command works (#2-#8)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from appliance.assist.prelabel import otsu
from appliance.imageio import probe
from appliance.store import Project
from tests.robust.conftest import assert_one_line_refusal, cli, unchanged


def declare_size(path: Path, height: int, width: int) -> None:
    """Rewrite a TIFF's ImageLength/ImageWidth tags in place: a tiny file, a huge declared size."""
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            page.tags["ImageLength"].overwrite(height)
            page.tags["ImageWidth"].overwrite(width)


def import_one(root: Path, path: Path) -> tuple[int, str, str]:
    res = cli("import", root, path)
    assert "Traceback" not in res.err
    return res.rc, res.out, res.err


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "nucleus").rc == 0
    return root


def test_planar_bomb_takes_height_and_width_from_the_page(empty: Path, tmp_path: Path) -> None:
    path = tmp_path / "planar.tif"
    tifffile.imwrite(
        path, np.zeros((3, 16, 16), np.uint8), photometric="rgb", planarconfig="separate"
    )
    declare_size(path, 20000, 20000)
    assert probe(path).frames[0].height == 20000
    with unchanged(empty):
        rc, _out, err = import_one(empty, path)
    assert rc == 1 and "decompression-bomb guard" in err and "20000×20000" in err


def test_z_stack_is_a_sequence_never_rgb(empty: Path, tmp_path: Path) -> None:
    stack = (np.arange(3 * 20 * 24) % 251).astype(np.uint8).reshape(3, 20, 24)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "ZYX"})
    rc, out, _err = import_one(empty, path)
    assert rc == 0 and "imported 3" in out and "ZYX stack: 3 planes" in out
    with Project.open(empty) as project:
        recs = project.images()
        assert [(r.channels, r.height, r.width, r.page) for r in recs] == [
            (1, 20, 24, p) for p in range(3)
        ]
        for k, rec in enumerate(recs):
            assert np.array_equal(project.load_pixels(rec.id), stack[k])


def test_ome_5d_planes_as_a_sequence(empty: Path, tmp_path: Path) -> None:
    data = np.arange(2 * 2 * 2 * 8 * 8, dtype=np.uint16).reshape(2, 2, 2, 8, 8)
    path = tmp_path / "five.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TZCYX"})
    rc, out, _err = import_one(empty, path)
    assert rc == 0 and "imported 8" in out and "TZCYX stack: 8 planes imported as a sequence" in out


def test_rgb_tiffs_planar_and_contig_stay_colour(empty: Path, tmp_path: Path) -> None:
    img = (np.arange(10 * 12 * 3) % 200).astype(np.uint8).reshape(10, 12, 3)
    tifffile.imwrite(tmp_path / "c.tif", img, photometric="rgb")
    tifffile.imwrite(
        tmp_path / "p.tif", np.moveaxis(img, -1, 0), photometric="rgb", planarconfig="separate"
    )
    for name in ("c.tif", "p.tif"):
        rc, _out, err = import_one(empty, tmp_path / name)
        assert rc == 0, err
    with Project.open(empty) as project:
        for rec in project.images():
            assert rec.channels == 3
            assert np.array_equal(project.load_pixels(rec.id), img)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("complex.tif", np.ones((8, 8), np.complex64), "complex pixels"),
        ("nan.tif", np.full((8, 8), np.nan, np.float32), "NaN"),
        ("inf.tif", np.full((8, 8), np.inf, np.float32), "NaN or infinite"),
        ("wide.tif", np.full((8, 8), 2**40, np.int64), "64-bit integer"),
        ("two.tif", np.zeros((8, 8, 2), np.uint8), "samples per pixel"),
    ],
)
def test_pixels_later_commands_cannot_use_are_refused(
    empty: Path, tmp_path: Path, name: str, content: np.ndarray, message: str
) -> None:
    path = tmp_path / name
    if content.ndim == 3:
        tifffile.imwrite(path, content, photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(path, content)
    with unchanged(empty):
        rc, _out, err = import_one(empty, path)
    assert rc == 1 and message in err and name in err


def test_full_range_int32_works_with_otsu(empty: Path, tmp_path: Path) -> None:
    img = np.zeros((64, 64), np.int32)
    img[:, 32:] = 2**31 - 1
    img[:, :8] = -(2**31)
    tifffile.imwrite(tmp_path / "i32.tif", img)
    assert import_one(empty, tmp_path / "i32.tif")[0] == 0
    with Project.open(empty) as project:
        pixels = project.load_pixels(project.images()[0].id)
    label = otsu(pixels)  # one bin per value would be 2**32 bins
    assert label.shape == (64, 64) and label.instances.max() >= 1


def test_gif_webp_fifo_and_odd_names_are_reported(empty: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = (np.arange(20 * 20) % 255).astype(np.uint8).reshape(20, 20)
    cv2.imwrite(str(folder / "good.png"), good)
    (folder / "anim.gif").write_bytes(b"GIF89a" + b"\x00" * 40)
    (folder / "pic.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20)
    (folder / "bad\nname.png").write_bytes(b"not an image")
    latin = os.fsencode(folder) + b"/caf\xe9.png"  # not valid UTF-8
    with open(latin, "wb") as fh:
        fh.write(cv2.imencode(".png", good + 1)[1].tobytes())
    os.mkfifo(folder / "pipe.png")
    res = cli("import", empty, folder)
    assert res.rc == 1 and "Traceback" not in res.err
    assert "imported 2, duplicates 0, failed 3" in res.out
    failed = [ln for ln in res.err.splitlines() if ln.startswith("failed:")]
    assert any("anim.gif" in ln and "GIF images are not supported" in ln for ln in failed)
    assert any("pic.webp" in ln and "WEBP" in ln for ln in failed)
    assert any("bad\\nname.png" in ln for ln in failed)  # one line, the newline escaped
    with Project.open(empty) as project:
        names = sorted(r.name for r in project.images())
        assert names == ["caf\ufffd.png", "good.png"]
        stored = {p for p in (empty / "images").rglob("*") if p.is_file()}
        assert stored == {r.path for r in project.images()}  # no orphan
    fifo = cli("import", empty, folder / "pipe.png")
    assert fifo.rc == 1 and "not a regular file" in fifo.err


def test_sparse_file_refused_from_its_header(empty: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    with open(path, "wb") as fh:
        fh.truncate(2 << 30)  # 2 GiB of zeros, no magic bytes; never read whole
    with unchanged(empty):
        rc, _out, err = import_one(empty, path)
    assert rc == 1 and "not a PNG, JPEG, TIFF or BMP" in err


def test_truncated_png_and_jpeg(empty: Path, tmp_path: Path) -> None:
    img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    (tmp_path / "t.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "t.jpg").write_bytes(jpg[: len(jpg) // 2])
    for name in ("t.png", "t.jpg"):
        with unchanged(empty):
            rc, _out, err = import_one(empty, tmp_path / name)
        assert rc == 1 and "truncated" in err


def test_empty_project_db_is_not_recreated(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.db").write_bytes(b"")
    for args in (("status", root), ("log", root, "1"), ("import", root, tmp_path)):
        assert_one_line_refusal(cli(*args), "empty file")
        assert (root / "project.db").stat().st_size == 0


def test_log_treats_wildcards_literally(empty: Path, tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    assert cli("import", empty, tmp_path / "a.png").rc == 0
    for ref in ("%", "_", "%%%%%%"):
        assert_one_line_refusal(cli("log", empty, ref), "no image matching")
    assert cli("log", empty, "a").rc == 0
