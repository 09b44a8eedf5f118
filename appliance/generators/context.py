"""What the cells of one image look like, measured, so a planted cell can be made to match.

Seed 000 fears that fake cells are "recognised by their differing background and size". Before
a synthetic cell goes into an image, the image's own cells are measured and the new cell is
drawn from those measurements; afterwards the same measurements show whether it matches. Per
instance of a label (`cell_features`):

- `area`: pixels of its mask (size);
- `contrast`: mean level inside minus the median level of a ring just outside (brightness);
- `texture`: spread inside (standard deviation over the eroded mask of a lightly smoothed
  image, so pixel noise counts little), relative to `contrast`;
- `focus`: the blur σ of its rim, from the steepest rise across the outline; a Gaussian-blurred
  step of height c has a largest slope c / (σ·√(2π));
- `background`: the median level of that ring (where it sits).

`noise_model` fits the pixel noise of the cell-free background as variance = gain·level +
floor (Poisson photons plus read noise), which `add_noise` then reproduces on a clean render.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.labels import Label

__all__ = [
    "FEATURES",
    "CellFeatures",
    "NoiseModel",
    "add_noise",
    "cell_features",
    "noise_model",
    "smooth_background",
]

FEATURES = ("area", "contrast", "texture", "focus", "background")
_SMOOTH = 1.0  # σ of the light smoothing before texture and focus are read
_RING = 4  # pixels of the ring around a cell that give its local background


@dataclass(frozen=True)
class CellFeatures:
    """The measurements of one instance (see the module docstring)."""

    instance: int
    class_id: int
    area: float
    contrast: float
    texture: float
    focus: float
    background: float

    def value(self, name: str) -> float:
        return float(getattr(self, name))


def _grey(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, np.float64)
    return img.mean(axis=2) if img.ndim == 3 else img


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def cell_features(
    image: np.ndarray, label: Label, min_area: int = 12, whole: bool = True
) -> list[CellFeatures]:
    """The measurements of every instance of `label` with at least `min_area` pixels; with
    `whole`, only those that do not touch the image border (a cut cell is smaller than it
    is and has no full rim)."""
    grey = _grey(image)
    smooth = cv2.GaussianBlur(grey, (0, 0), _SMOOTH)
    gy, gx = np.gradient(smooth)
    slope = np.hypot(gy, gx)
    taken = label.instances > 0
    h, w = grey.shape
    out = []
    for p in label.props():
        y0, x0, y1, x1 = p.bbox
        if p.area < min_area or (whole and (y0 == 0 or x0 == 0 or y1 == h or x1 == w)):
            continue
        pad = _RING + 3
        ty, tx = max(0, y0 - pad), max(0, x0 - pad)
        by, bx = min(h, y1 + pad), min(w, x1 + pad)
        mask = (label.instances[ty:by, tx:bx] == p.id).astype(np.uint8)
        ring = (cv2.dilate(mask, _disk(_RING)) > 0) & ~(cv2.dilate(mask, _disk(1)) > 0)
        ring &= ~taken[ty:by, tx:bx]
        if ring.sum() < 8:
            continue
        bg = float(np.median(grey[ty:by, tx:bx][ring]))
        inner = cv2.erode(mask, _disk(1)) > 0
        inside = mask > 0
        contrast = float(grey[ty:by, tx:bx][inside].mean()) - bg
        spread = float(smooth[ty:by, tx:bx][inner].std()) if inner.sum() >= 4 else 0.0
        rim = (cv2.dilate(mask, _disk(1)) > 0) & ~inner
        steepest = float(np.percentile(slope[ty:by, tx:bx][rim], 90)) if rim.any() else 0.0
        if steepest > 0 and abs(contrast) > 0:
            seen = abs(contrast) / (steepest * np.sqrt(2 * np.pi))
            focus = float(np.sqrt(max(seen**2 - _SMOOTH**2, 0.0)))
        else:
            focus = 0.0
        out.append(
            CellFeatures(
                instance=p.id,
                class_id=p.class_id,
                area=float(p.area),
                contrast=contrast,
                texture=spread / max(abs(contrast), 1e-9),
                focus=focus,
                background=bg,
            )
        )
    return out


def smooth_background(image: np.ndarray, occupied: np.ndarray, sigma: float) -> np.ndarray:
    """The image's illumination without its objects: occupied pixels (widened) are inpainted
    from their surroundings, then everything is blurred with `sigma`."""
    grey = _grey(image).astype(np.float32)
    widened = cv2.dilate(occupied.astype(np.uint8), _disk(3))
    lo, hi = float(grey.min()), float(grey.max())
    scale = 255.0 / max(hi - lo, 1e-9)
    # cv2.inpaint takes 8-bit or float32 one-channel images; float32 keeps 16-bit levels
    filled = cv2.inpaint((grey - lo) * scale, widened, 5, cv2.INPAINT_TELEA) / scale + lo
    return cv2.GaussianBlur(filled.astype(np.float64), (0, 0), sigma)


@dataclass(frozen=True)
class NoiseModel:
    """Pixel noise variance = gain·level + floor (photon plus read noise)."""

    gain: float
    floor: float

    def std(self, level: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.gain * level + self.floor, 0.0))


def noise_model(image: np.ndarray, occupied: np.ndarray, bins: int = 8) -> NoiseModel:
    """Fit the noise of the cell-free pixels: the residual after a 2-pixel blur, binned by
    level, its variance corrected for what the blur itself removes from white noise."""
    grey = _grey(image)
    level = cv2.GaussianBlur(grey, (0, 0), 2.0)
    resid = grey - level
    probe = np.random.default_rng(0).standard_normal((64, 64))
    kept = float((probe - cv2.GaussianBlur(probe, (0, 0), 2.0))[8:-8, 8:-8].var())
    free = ~(cv2.dilate(occupied.astype(np.uint8), _disk(3)) > 0)
    free[:4], free[-4:], free[:, :4], free[:, -4:] = False, False, False, False
    lv, rv = level[free], resid[free]
    if lv.size < 50:
        return NoiseModel(0.0, float(resid.var()) / kept)
    edges = np.unique(np.percentile(lv, np.linspace(2, 98, bins + 1)))
    xs, ys = [], []
    for a, b in itertools.pairwise(edges):
        sel = (lv >= a) & (lv < b)
        if sel.sum() >= 20:
            xs.append(float(lv[sel].mean()))
            ys.append(float(rv[sel].var()) / kept)
    if len(xs) < 2:
        return NoiseModel(0.0, float(rv.var()) / kept)
    gain, floor = np.polyfit(xs, ys, 1)
    if gain < 0:  # no photon term to see: constant noise
        return NoiseModel(0.0, float(np.mean(ys)))
    return NoiseModel(float(gain), float(max(floor, 0.0)))


def add_noise(clean: np.ndarray, model: NoiseModel, rng: np.random.Generator) -> np.ndarray:
    """`clean` with fresh noise drawn from `model` at each pixel's own level."""
    return clean + rng.standard_normal(clean.shape) * model.std(clean)
