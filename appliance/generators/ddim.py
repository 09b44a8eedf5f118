"""The DDIM sampling loop in numpy: what the tablet runs around the ONNX denoiser.

The denoiser predicts the noise ε in x_t = √ᾱ·x₀ + √(1-ᾱ)·ε; each step estimates x₀ (clipped to
the output range), then moves to the next, less noisy timestep (Song et al., DDIM, eq. 12).
Classifier-free guidance runs the conditional and the unconditional (null class) prediction in
one batch and extrapolates: ε = ε_u + w·(ε_c − ε_u). The PyTorch sampler in
`export/generators/diffusion.py` performs the same float32 arithmetic in the same order, which
tests/generators/test_ddim.py checks on shared noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from appliance.contract import Schedule

__all__ = ["Denoiser", "ddim_sample", "guided_eps"]

# (x_t, t, class, mask) -> predicted noise, all batched on axis 0
Denoiser = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def guided_eps(
    denoise: Denoiser,
    x: np.ndarray,
    t: int,
    classes: np.ndarray,
    mask: np.ndarray,
    guidance: float,
    null_class: int,
) -> np.ndarray:
    """ε for one step, with classifier-free guidance when `guidance` differs from 1."""
    n = x.shape[0]
    if guidance == 1.0:
        return denoise(x, np.full((n,), t, np.float32), classes.astype(np.int64), mask)
    both = denoise(
        np.concatenate([x, x]),
        np.full((2 * n,), t, np.float32),
        np.concatenate([classes, np.full((n,), null_class)]).astype(np.int64),
        np.concatenate([mask, mask]),
    )
    cond, uncond = both[:n], both[n:]
    return (uncond + np.float32(guidance) * (cond - uncond)).astype(np.float32)


def ddim_sample(
    denoise: Denoiser,
    schedule: Schedule,
    noise: np.ndarray,
    classes: np.ndarray,
    mask: np.ndarray,
    guidance: float = 1.0,
    null_class: int = 0,
    step_noise: Sequence[np.ndarray] | None = None,
    clip: tuple[float, float] = (-1.0, 1.0),
) -> np.ndarray:
    """Run the schedule from `noise` (N×C×H×W) to samples in the output range.

    `step_noise` (one array like `noise` per step) is needed only when `schedule.eta` > 0.
    """
    x = noise.astype(np.float32)
    abar = np.asarray(schedule.alphas_cumprod, np.float32)
    for i, t in enumerate(schedule.timesteps):
        a = abar[i]
        a_prev = abar[i + 1] if i + 1 < len(abar) else np.float32(1.0)
        eps = guided_eps(denoise, x, t, classes, mask, guidance, null_class)
        x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), clip[0], clip[1])
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        sigma = np.float32(schedule.eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev))
        x = np.sqrt(a_prev) * x0 + np.sqrt(np.maximum(1 - a_prev - sigma**2, 0)) * eps
        if sigma > 0:
            if step_noise is None:
                raise ValueError("a schedule with eta > 0 needs step_noise")
            x = x + sigma * step_noise[i].astype(np.float32)
        x = x.astype(np.float32)
    return x
