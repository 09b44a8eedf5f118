"""Pre-processing (seed 004 eq. 2, h(x)): what the annotator sees instead of the raw image.

One setting per project (seed 004: varying pre-processing within a data set makes annotations
inconsistent), stored under the `preprocessing` key and copied into training-job bundles so the
workstation knows what the experts looked at. The stored pixels never change; models get the
raw image plus their contract's normalisation, not the pre-processed one.

Order: percentile normalisation first (it is what makes 16-bit data visible at all, and the
OpenCV filters below want 8 bits), then denoising, then CLAHE (contrast stretching amplifies
noise, so noise goes first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from appliance import settings
from appliance.errors import ApplianceError
from appliance.imageio import to_display
from appliance.store import Project
from appliance.typed import from_json

__all__ = ["DENOISERS", "SETTING_KEY", "Preprocessing", "apply", "load", "save"]

SETTING_KEY = settings.PREPROCESSING.key
DENOISERS = ("none", "gaussian", "median", "nlm")


@dataclass(frozen=True)
class Preprocessing:
    """Parameters of the pre-processing (h in seed 004); the defaults are a plain percentile
    stretch."""

    low: float = 1.0
    high: float = 99.8
    denoise: str = "none"
    # gaussian: sigma in pixels; median: kernel size (odd); nlm: filter strength h.
    strength: float = 1.0
    clahe: bool = False
    clahe_clip: float = 2.0
    clahe_tiles: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ApplianceError(f"pre-processing percentiles {self.low}..{self.high} are invalid")
        if self.denoise not in DENOISERS:
            raise ApplianceError(f"unknown denoiser {self.denoise!r} (one of {DENOISERS})")
        if self.strength <= 0 or self.clahe_clip <= 0 or self.clahe_tiles < 1:
            raise ApplianceError("pre-processing strength, CLAHE clip and tiles must be positive")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """From the stored setting (a value of the wrong type or an unknown key is an
        ApplianceError)."""
        return from_json(cls, data, "pre-processing setting is invalid")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the project and copied into training jobs."""
        return asdict(self)


def apply(image: np.ndarray, settings: Preprocessing) -> np.ndarray:
    """The pre-processed image (h(x) in seed 004) for display.

    Parameters
    ----------
    image : numpy.ndarray
        (H, W) or (H, W, 3), any dtype (uint8, uint16, float32 ...), grey or RGB.
    settings : Preprocessing
        The project's pre-processing.

    Returns
    -------
    numpy.ndarray
        uint8, same shape as `image`.
    """
    img = to_display(np.asarray(image), settings.low, settings.high)
    if settings.denoise == "gaussian":
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=settings.strength)
    elif settings.denoise == "median":
        k = max(3, int(settings.strength) | 1)
        img = cv2.medianBlur(img, k)
    elif settings.denoise == "nlm":
        if img.ndim == 2:
            img = cv2.fastNlMeansDenoising(img, None, h=float(settings.strength))
        else:
            img = cv2.fastNlMeansDenoisingColored(
                img, None, float(settings.strength), float(settings.strength)
            )
    if settings.clahe:
        clahe = cv2.createCLAHE(
            clipLimit=settings.clahe_clip, tileGridSize=(settings.clahe_tiles,) * 2
        )
        if img.ndim == 2:
            img = clahe.apply(img)
        else:  # equalise lightness only, so colours keep their hue
            lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
            lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
            img = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return img


def load(project: Project) -> Preprocessing:
    """The project's pre-processing (defaults when never set)."""
    return Preprocessing.from_dict(settings.PREPROCESSING.get(project))


def save(project: Project, h: Preprocessing) -> None:
    """Record the pre-processing for the whole project; bundles read the same setting."""
    settings.PREPROCESSING.set(project, h.to_dict())
