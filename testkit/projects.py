"""Real projects of synthetic 16-bit cell images, for the UI tests and the UI benchmarks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from appliance.importer import import_paths
from appliance.store.project import Project


def cell_image(seed: int, size: int = 256, cells: int = 12) -> np.ndarray:
    """Bright round cells on a dim noisy background, uint16 (so display needs normalising)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(800, 60, (size, size))
    for _ in range(cells):
        cx, cy = rng.integers(20, size - 20, 2)
        r = int(rng.integers(7, 16))
        mask = np.zeros((size, size), np.uint8)
        cv2.circle(mask, (int(cx), int(cy)), r, 1, -1)
        img[mask > 0] += 2500 + rng.normal(0, 100, int(mask.sum()))
    return np.clip(img, 0, 65535).astype(np.uint16)


def make_project(
    root: Path, n: int = 5, size: int = 256, classes: tuple[str, ...] = ("nucleus", "debris")
) -> Project:
    """A project with `n` imported images named img0.tif, img1.tif, ..."""
    src = root.parent / f".{root.name}-src"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(src / f"img{i}.tif", cell_image(i, size))
    project = Project.create(root, list(classes))
    summary = import_paths(project, [src])
    assert len(summary.imported) == n, summary.lines()
    return project
