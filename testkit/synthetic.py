"""Synthetic instance maps: random filled discs, reproducible from a seed."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["make_instances"]


def make_instances(shape: tuple[int, int], n: int, seed: int = 0) -> np.ndarray:
    """An instance map with `n` random discs (later discs cover earlier ones).

    Parameters
    ----------
    shape : tuple of int
        (H, W) of the map.
    n : int
        Number of discs drawn, with ids 1..n.
    seed : int
        Seed of the random positions and radii.

    Returns
    -------
    numpy.ndarray
        uint32 array of `shape`; 0 is background.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = int(rng.integers(2, max(3, min(shape) // 8)))
        cv2.circle(out, (int(x), int(y)), r, int(i), -1)
    return out
