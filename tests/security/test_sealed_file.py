"""Sealed files (`appliance.security.sealed_file`): random access gives the plain bytes; a
chunk reordered, dropped, cut, taken from another file, a file renamed to another original's
name, or another key: refused in one line naming the file. Sealed slides read by region."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.security import vault
from appliance.security.home import HOME_ENV
from appliance.security.sealed_file import _HEADER, _TAG, SealedReader, seal_file, sealed_size
from appliance.store import Project, at_rest
from appliance.store.slides import regions, slides
from testkit.slides import tissue_image, write_ome_pyramid
from tests.robust.conftest import cli

KEY = secrets.token_bytes(32)
CHUNK = 1024  # small chunks: many of them in a small file


def sealed(tmp_path: Path, data: bytes, name: str = "a.tif", key: bytes = KEY) -> Path:
    out = tmp_path / name
    seal_file(key, io.BytesIO(data), len(data), out, name.encode(), chunk=CHUNK)
    return out


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17])
def test_random_access_reads_the_plain_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = sealed(tmp_path, data)
    assert sealed_size(path) == size
    assert size < 16 or data[:16] not in path.read_bytes()
    rng = np.random.default_rng(0)
    with SealedReader(path, KEY, b"a.tif") as fh:
        assert fh.read() == data
        for _ in range(50):
            start = int(rng.integers(0, size + 1))
            length = int(rng.integers(0, 3 * CHUNK))
            fh.seek(start)
            assert fh.read(length) == data[start : start + length]
        assert fh.seek(0, io.SEEK_END) == size and fh.read(10) == b""


def _chunks(path: Path) -> tuple[bytes, list[bytes]]:
    raw = path.read_bytes()
    body = raw[_HEADER.size :]
    step = CHUNK + _TAG
    return raw[: _HEADER.size], [body[i : i + step] for i in range(0, len(body), step)]


def _read_all(path: Path, key: bytes = KEY, name: bytes = b"a.tif") -> bytes:
    with SealedReader(path, key, name) as fh:
        return fh.read()


def test_tampering_of_any_kind_is_refused(tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK + 100)
    path = sealed(tmp_path, data)
    header, chunks = _chunks(path)
    other_header, other_chunks = _chunks(sealed(tmp_path, os.urandom(len(data)), "b.tif"))
    cases = {
        "reordered": header + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "last chunk dropped": header + b"".join(chunks[:-1]),
        "cut short": header + b"".join(chunks)[:-5],
        "chunk from another file": header + other_chunks[0] + b"".join(chunks[1:]),
        "one bit flipped": header
        + bytes([chunks[0][0] ^ 1])
        + chunks[0][1:]
        + b"".join(chunks[1:]),
        "header of another file": other_header + b"".join(chunks),
    }
    for case, raw in cases.items():
        bad = tmp_path / "bad.tif"
        bad.write_bytes(raw)
        with pytest.raises(ApplianceError, match=r"bad\.tif: changed, moved or sealed") as err:
            _read_all(bad)
        assert "\n" not in str(err.value), case
    with pytest.raises(ApplianceError, match="sealed under another key"):
        _read_all(path, key=secrets.token_bytes(32))
    with pytest.raises(ApplianceError, match="changed, moved"):  # renamed to another original
        _read_all(path, name=b"b.tif")
    plain = tmp_path / "plain.tif"
    plain.write_bytes(data)
    with pytest.raises(ApplianceError, match="not a sealed file"):
        _read_all(plain)


def test_a_sealed_slide_is_read_by_region(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setattr(vault, "KDF", {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1})
    img = tissue_image(1500, 2000, seed=1)
    write_ome_pyramid(tmp_path / "section.ome.tif", img, levels=3, tile=256, mpp=0.5)
    root = tmp_path / "proj"
    assert cli("init", root, "--classes", "neutrophil").rc == 0
    monkeypatch.setenv(vault.PASSPHRASE_ENV, "246810")
    assert cli("set-pin", root, "--annotator", "anna").rc == 0
    res = cli("import", root, tmp_path / "section.ome.tif", "--region", "0,0,256,256")
    assert res.rc == 0, res.err
    res = cli("add-region", root, "section.ome.tif", "700,300,128,128", "--origin", "expert")
    assert res.rc == 0 and "imported 1" in res.out, res.err  # read from the sealed slide
    key = vault.unlock(root, "anna", "246810")
    with Project.open(root, key) as project:
        (slide,) = slides(project)
        raw = slide.path.read_bytes()
        assert raw.startswith(b"APPSEAL1")
        assert (tmp_path / "section.ome.tif").read_bytes()[4096:8192] not in raw
        for r in regions(project):
            pixels = project.load_pixels(r.image_id)
            assert np.array_equal(pixels, img[r.y : r.y + r.height, r.x : r.x + r.width])
    at_rest.forget()
