"""Shared fixtures: small synthetic images and projects, made on the fly (nothing downloaded)."""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from appliance.security.home import HOME_ENV
from appliance.security.signing import SIGNING_KEY_ENV, SigningKey
from appliance.security.trust import pin_key
from appliance.store import Project


def _test_lab_key() -> None:
    """One appliance home and one lab key for the whole run, set in the environment so the
    CLIs the tests start inherit them: bundles the tests write are signed by the test lab's
    key and the test tablet trusts it, like a tablet enrolled with its lab. Tests of trust
    itself use their own homes and keys. Nothing touches the real user's folder."""
    home = Path(tempfile.mkdtemp(prefix="appliance-test-home-"))
    atexit.register(shutil.rmtree, home, True)
    os.environ[HOME_ENV] = str(home)
    key = SigningKey.generate()
    key.save(home / "test-lab.key")
    os.environ[SIGNING_KEY_ENV] = str(home / "test-lab.key")
    pin_key(key.public, "test run")


_test_lab_key()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    p = Project.create(tmp_path / "proj", ["nucleus", "debris"])
    yield p
    p.close()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny file whose header declares a huge 8-bit grey image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """3 good images and 4 bad files, as the foundation issue describes."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in (1, 2, 10):
        tifffile.imwrite(folder / f"img{i}.tif", (rng.random((40, 50)) * 65535).astype(np.uint16))
    _ok, buf = cv2.imencode(".png", (rng.random((60, 60)) * 255).astype(np.uint8))
    (folder / "truncated.png").write_bytes(buf.tobytes()[: len(buf) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.tif").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(png_bomb_header())
    return folder
