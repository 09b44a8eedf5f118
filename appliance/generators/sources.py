"""Source pixels for label-to-image generators: random crops of the project's own images."""

from __future__ import annotations

import numpy as np

from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise
from appliance.store import Project

__all__ = ["source_crops"]


def source_crops(project: Project, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n×size×size (grey) or n×size×size×3 crops in [0, 1], each image normalised as a whole."""
    records = [r for r in project.images() if min(r.height, r.width) >= size]
    if not records:
        raise ApplianceError(f"{project.root}: no image is at least {size}×{size} pixels")
    out = []
    for i in rng.integers(0, len(records), n):
        rec = records[int(i)]
        img = percentile_normalise(project.load_pixels(rec.id))
        top = int(rng.integers(0, rec.height - size + 1))
        left = int(rng.integers(0, rec.width - size + 1))
        out.append(img[top : top + size, left : left + size])
    return np.stack(out).astype(np.float32)
