from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise, read_image, to_display
from tests.conftest import png_bomb_header


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_round_trip_keeps_dtype_and_pixels(tmp_path: Path, dtype, channels, suffix) -> None:
    rng = np.random.default_rng(0)
    shape = (33, 47) if channels == 1 else (33, 47, 3)
    img = (rng.random(shape) * np.iinfo(dtype).max).astype(dtype)
    path = tmp_path / f"x{suffix}"
    if suffix == ".png":
        cv2.imwrite(str(path), img[..., ::-1] if channels == 3 else img)
    else:
        tifffile.imwrite(path, img)
    out = read_image(path)
    assert out.dtype == dtype
    assert np.array_equal(out, img)


def test_jpeg_and_bmp(tmp_path: Path) -> None:
    img = np.full((20, 30, 3), (10, 120, 240), np.uint8)
    cv2.imwrite(str(tmp_path / "a.bmp"), img[..., ::-1])
    assert np.array_equal(read_image(tmp_path / "a.bmp"), img)
    cv2.imwrite(str(tmp_path / "a.jpg"), img[..., ::-1])
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - img).max() < 8


def test_multipage_tiff_pages(tmp_path: Path) -> None:
    stack = np.arange(4 * 10 * 12, dtype=np.uint16).reshape(4, 10, 12)
    with tifffile.TiffWriter(tmp_path / "s.tif") as tw:
        for frame in stack:
            tw.write(frame)
    for k in range(4):
        assert np.array_equal(read_image(tmp_path / "s.tif", page=k), stack[k])
    with pytest.raises(ApplianceError, match="page 4"):
        read_image(tmp_path / "s.tif", page=4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello world", "not a PNG, JPEG, TIFF or BMP"),
        (png_bomb_header(), "decompression-bomb guard"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "unreadable PNG header"),
    ],
)
def test_bad_bytes_one_line_errors(data: bytes, message: str) -> None:
    with pytest.raises(ApplianceError, match=message) as info:
        read_image(data, name="x.png")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("x.png")


def test_pixel_limit_is_configurable() -> None:
    _ok, buf = cv2.imencode(".png", np.zeros((20, 20), np.uint8))
    assert read_image(buf.tobytes()).shape == (20, 20)
    with pytest.raises(ApplianceError, match="exceeds the limit of 100"):
        read_image(buf.tobytes(), max_pixels=100)


def test_display_is_16bit_aware_and_separate() -> None:
    img = np.zeros((10, 10), np.uint16)
    img[:, 5:] = 4000  # a dim 16-bit image: naive >>8 would show almost black
    out = to_display(img, 0, 100)
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert img.max() == 4000  # the original is untouched


def test_percentile_normalise_constant_and_rgb() -> None:
    assert np.all(percentile_normalise(np.full((5, 5), 7, np.uint16)) == 0)
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    out = percentile_normalise(rgb, 0, 100)
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert np.allclose(out.max(axis=(0, 1)), 1.0)
