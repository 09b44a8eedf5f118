"""Pre-processing h(x): every option on grey, RGB, 16-bit, constant and one-pixel images."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.assist.preprocess import Preprocessing, apply, load, save
from appliance.errors import ApplianceError

RNG = np.random.default_rng(0)
IMAGES = {
    "grey8": (RNG.random((32, 40)) * 255).astype(np.uint8),
    "grey16": (RNG.random((32, 40)) * 4095).astype(np.uint16),  # 12-bit camera in 16 bits
    "rgb": (RNG.random((32, 40, 3)) * 255).astype(np.uint8),
    "float": RNG.random((32, 40)).astype(np.float32),
    "constant": np.full((8, 8), 1234, np.uint16),
    "pixel": np.array([[7]], np.uint8),
}
SETTINGS = {
    "plain": Preprocessing(),
    "gaussian": Preprocessing(denoise="gaussian", strength=1.0),
    "median": Preprocessing(denoise="median", strength=3),
    "nlm": Preprocessing(denoise="nlm", strength=5.0),
    "clahe": Preprocessing(clahe=True),
    "all": Preprocessing(denoise="median", strength=3, clahe=True),
}


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("setting", SETTINGS)
def test_apply_gives_8bit_of_same_shape(image: str, setting: str) -> None:
    img = IMAGES[image]
    out = apply(img, SETTINGS[setting])
    assert out.dtype == np.uint8 and out.shape == img.shape


def test_16bit_uses_full_display_range() -> None:
    out = apply(IMAGES["grey16"], Preprocessing())
    assert out.min() == 0 and out.max() == 255


def test_denoising_reduces_noise() -> None:
    flat = np.full((64, 64), 128.0) + RNG.normal(0, 20, (64, 64))
    img = np.clip(flat, 0, 255).astype(np.uint8)
    noisy = apply(img, SETTINGS["plain"]).std()
    for h in (SETTINGS["gaussian"], SETTINGS["median"], Preprocessing(denoise="nlm", strength=40)):
        assert apply(img, h).std() < 0.8 * noisy


def test_invalid_settings_are_one_line_errors() -> None:
    with pytest.raises(ApplianceError, match="denoiser"):
        Preprocessing(denoise="wavelet")
    with pytest.raises(ApplianceError, match="percentiles"):
        Preprocessing(low=50, high=10)
    with pytest.raises(ApplianceError, match="invalid"):
        Preprocessing.from_dict({"sharpen": True})


def test_project_setting_round_trip(project) -> None:
    assert load(project) == Preprocessing()
    h = Preprocessing(denoise="nlm", strength=7.0, clahe=True)
    save(project, h)
    assert load(project) == h
    assert project.get_setting("preprocessing")["denoise"] == "nlm"
