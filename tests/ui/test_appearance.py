"""Issue 25 defect 3: H&E RGB brightfield is shown as scanned, an empty fluorescence field stays
dark, and an image with cells is still stretched to full contrast (core, then the real app)."""

from __future__ import annotations

import cv2
import numpy as np
import tifffile

from appliance.assist import preprocess
from appliance.importer import import_paths
from appliance.session.appearance import display_pixels
from appliance.store.project import Project
from testkit.projects import cell_image
from testkit.touch import pump

DEFAULT = preprocess.Preprocessing()


def he_tile(size: int = 256, seed: int = 0) -> np.ndarray:
    """An H&E-like RGB tile: pink stroma, purple nuclei, white lumen (8-bit, as scanned)."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (232, 170, 200)  # eosin pink
    img[: size // 6] = (245, 243, 246)  # lumen
    for _ in range(30):
        cx, cy = rng.integers(10, size - 10, 2)
        cv2.circle(img, (int(cx), int(cy)), int(rng.integers(4, 9)), (95, 60, 150), -1)  # nuclei
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_rgb_brightfield_is_shown_as_scanned():
    tile = he_tile()
    shown = display_pixels(tile, DEFAULT)
    assert shown.dtype == np.uint8 and np.array_equal(shown, tile)


def test_deep_rgb_keeps_its_colour_balance():
    tile = he_tile().astype(np.uint16) * 256
    shown = display_pixels(tile, DEFAULT).astype(int)
    ratio = shown[200, 200] / np.maximum(he_tile()[200, 200], 1)
    assert np.ptp(ratio) < 0.05  # one scale for the three channels: hue kept


def test_an_empty_fluorescence_field_stays_dark():
    rng = np.random.default_rng(1)
    field = np.clip(rng.normal(100, 5, (512, 512)), 0, None).astype(np.uint16)
    shown = display_pixels(field, DEFAULT)
    assert shown.mean() < 20 and np.percentile(shown, 99.8) < 60  # dark, not static


def test_an_image_with_cells_is_still_stretched_to_full_contrast():
    shown = display_pixels(cell_image(3, 256), DEFAULT)
    assert shown.max() >= 250 and np.percentile(shown, 50) < 60


def test_the_project_filters_still_apply_on_top():
    tile = he_tile()
    smooth = display_pixels(tile, preprocess.Preprocessing(denoise="median", strength=5))
    assert not np.array_equal(smooth, tile) and abs(smooth.mean() - tile.mean()) < 3


def test_the_app_shows_an_he_image_as_scanned(fresh, tmp_path):
    src = tmp_path / "he"
    src.mkdir()
    tile = he_tile(256, seed=4)
    tifffile.imwrite(src / "he.tif", tile, photometric="rgb")
    project = Project.create(tmp_path / "p", ["nucleus"])
    assert len(import_paths(project, [src]).imported) == 1
    project.set_setting("ui.prelabel", "none")
    screen = fresh(project.root)
    pump(3)
    assert np.array_equal(screen.work.display, tile)
    texture = screen.canvas_view._image_rect.texture
    rgba = np.frombuffer(texture.pixels, np.uint8).reshape(texture.height, texture.width, 4)
    assert np.array_equal(rgba[..., :3], tile)  # what is on the GPU is the scan (rows as stored)
