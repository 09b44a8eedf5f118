"""How an image looks on the tablet: as scanned where that is right, stretched where it helps.

The project's pre-processing h(x) (`appliance.assist.preprocess`) starts with a per-channel
percentile stretch. That is what makes a dark 16-bit fluorescence image visible at all, but it
is wrong for two kinds of image:

- **RGB brightfield** (H&E and other stains): stretching each channel on its own shifts the
  hues (purple nuclei turn almost black, pink turns salmon). An RGB image is shown as scanned:
  8-bit as it is, deeper ones with one scale for all three channels, so colours keep their
  balance. Denoising and CLAHE (on lightness only) still apply when the project asks for them.
- **An empty field** (fluorescence without cells): its 1st and 99.8th percentiles are both
  noise, and stretching them apart turns the noise into full-contrast static. The stretch of a
  grey (or non-RGB multichannel) image is therefore never steeper than `NOISE_SPAN` times the
  noise level, estimated from neighbouring pixels' differences (structure cancels, noise
  stays): an empty field stays dark, an image with cells is stretched as before.

The stored pixels never change, and models never see this view (they get their contract's
normalisation); it is what the expert looks at.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from appliance.assist import preprocess

__all__ = ["NOISE_SPAN", "display_pixels", "is_rgb"]

NOISE_SPAN = 32.0  # the display range spans at least this many noise standard deviations
SAMPLE = 1_000_000  # pixels looked at per channel for percentiles and noise (evenly spread)
_MAD_TO_SIGMA = 1.4826 / np.sqrt(2.0)  # MAD of a difference of two pixels -> one pixel's sigma


def is_rgb(image: np.ndarray) -> bool:
    """A colour photograph of a slide (3 channels, or 4 with alpha), not fluorescence planes."""
    return image.ndim == 3 and image.shape[-1] in (3, 4)


def display_pixels(image: np.ndarray, h: preprocess.Preprocessing) -> np.ndarray:
    """The 8-bit picture of `image` the expert sees under the project's pre-processing `h`
    (same height and width; RGB for colour images, else the stretched channels)."""
    image = np.asarray(image)
    shown = _as_scanned(image[..., :3]) if is_rgb(image) else _stretched(image, h.low, h.high)
    return preprocess.apply(shown, replace(h, low=0.0, high=100.0))  # the filters only


def _as_scanned(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    values = rgb.astype(np.float32)
    top = float(np.percentile(_sample(values), 99.9)) if values.size else 0.0
    scale = 255.0 / top if top > 0 else 0.0
    return np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)


def _stretched(image: np.ndarray, low: float, high: float) -> np.ndarray:
    channels = image[..., None] if image.ndim == 2 else image
    out = np.empty(channels.shape, np.uint8)
    for c in range(channels.shape[-1]):
        channel = channels[..., c].astype(np.float32)
        lo, hi = np.percentile(_sample(channel), (low, high))
        span = max(float(hi - lo), NOISE_SPAN * _noise(channel))
        scale = 255.0 / span if span > 0 else 0.0
        out[..., c] = np.clip((channel - lo) * scale + 0.5, 0, 255).astype(np.uint8)
    return out[..., 0] if image.ndim == 2 else out


def _noise(channel: np.ndarray) -> float:
    """Standard deviation of the pixel noise: the median absolute difference of horizontal
    neighbours (robust to edges), rescaled as for Gaussian noise."""
    rows = channel[:: max(1, channel.shape[0] * channel.shape[1] // SAMPLE)]
    diffs = np.abs(np.diff(rows, axis=1)).ravel()
    return float(np.median(diffs)) * _MAD_TO_SIGMA if diffs.size else 0.0


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    return flat[:: max(1, flat.size // SAMPLE)]
