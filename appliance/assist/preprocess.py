"""Pre-processing h(x) (seed 004 eq. 2): what the annotator sees instead of the raw image.

One setting per project (seed 004: varying pre-processing within a data set makes annotations
inconsistent), stored under the `preprocessing` key and copied into training-job bundles so the
workstation knows what the experts looked at. The stored pixels never change; models get the
raw image plus their contract's normalisation, not h(x).

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

SETTING_KEY = settings.PREPROCESSING.key
DENOISERS = ("none", "gaussian", "median", "nlm")


@dataclass(frozen=True)
class Preprocessing:
    """Parameters of h; the defaults are a plain percentile stretch."""

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
        try:
            return cls(**data)
        except TypeError as exc:
            raise ApplianceError(f"pre-processing setting is invalid ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply(image: np.ndarray, h: Preprocessing) -> np.ndarray:
    """h(x) as 8-bit H×W or H×W×3 for display; any dtype, grey or RGB."""
    img = to_display(np.asarray(image), h.low, h.high)
    if h.denoise == "gaussian":
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=h.strength)
    elif h.denoise == "median":
        k = max(3, int(h.strength) | 1)
        img = cv2.medianBlur(img, k)
    elif h.denoise == "nlm":
        if img.ndim == 2:
            img = cv2.fastNlMeansDenoising(img, None, h=float(h.strength))
        else:
            img = cv2.fastNlMeansDenoisingColored(img, None, float(h.strength), float(h.strength))
    if h.clahe:
        clahe = cv2.createCLAHE(clipLimit=h.clahe_clip, tileGridSize=(h.clahe_tiles,) * 2)
        if img.ndim == 2:
            img = clahe.apply(img)
        else:  # equalise lightness only, so colours keep their hue
            lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
            lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
            img = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return img


def load(project: Any) -> Preprocessing:
    """The project's h (defaults when never set)."""
    return Preprocessing.from_dict(settings.PREPROCESSING.get(project))


def save(project: Any, h: Preprocessing) -> None:
    """Record h for the whole project; bundles read the same setting."""
    settings.PREPROCESSING.set(project, h.to_dict())
