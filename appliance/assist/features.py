"""The selector's reduced grey-level feature space (seed 004 sec. 3.3), cached in the store.

A feature is the image's 8×8 area-averaged thumbnail after percentile normalisation: it keeps
the layout of bright and dark regions (what changes between sequences or scenes), drops noise
and bit depth, and is 64 floats, so 100,000 images fit in 25 MB and compare in milliseconds.
Decoding the images is the expensive part, so vectors are computed once (after import, in a
background job) and stored in the `features` table under a version tag; a new recipe changes
the tag and the old rows are simply recomputed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise
from appliance.store import Project, cache

__all__ = ["DIM", "SIDE", "VERSION", "image_features", "load", "missing", "update"]

log = logging.getLogger(__name__)

SIDE = 8
DIM = SIDE * SIDE
VERSION = f"grey{SIDE}x{SIDE}-p1-99.8/1"


def image_features(pixels: np.ndarray) -> np.ndarray:
    """The feature vector of one image: its 8×8 area-averaged normalised grey thumbnail.

    Parameters
    ----------
    pixels : numpy.ndarray
        (H, W) grey or (H, W, 3) RGB, any dtype, any size above zero.

    Returns
    -------
    numpy.ndarray
        float32, shape (DIM,), values in [0, 1].

    Examples
    --------
    >>> v = image_features(np.tile(np.arange(64, dtype=np.uint16), (64, 1)))
    >>> v.shape, v.dtype.name, float(v.min()) >= 0.0, float(v.max()) <= 1.0
    ((64,), 'float32', True, True)
    """
    img = np.asarray(pixels)
    if img.size == 0:
        raise ApplianceError(f"cannot compute features of an empty image {img.shape}")
    norm = percentile_normalise(img)
    grey = norm if norm.ndim == 2 else norm.mean(axis=2)
    thumb = cv2.resize(
        np.ascontiguousarray(grey, np.float32), (SIDE, SIDE), interpolation=cv2.INTER_AREA
    )
    return thumb.ravel().astype(np.float32)


def missing(project: Project) -> list[int]:
    """Images without a feature vector of the current version."""
    return cache.missing_features(project, VERSION)


def update(
    project: Project,
    check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    batch: int = 64,
) -> int:
    """Compute and store the missing vectors (batched commits); returns how many were added
    (an unreadable image is logged and skipped).

    Safe to cancel between batches (`check` raises): what was committed stays.
    """
    todo = missing(project)
    added = 0
    for start in range(0, len(todo), batch):
        if check is not None:
            check()
        chunk = todo[start : start + batch]
        rows = []
        for i in chunk:
            try:
                rows.append((i, image_features(project.load_pixels(i)).tobytes()))
            except ApplianceError as exc:  # an unreadable file: the selector uses the mean
                log.warning("no feature vector for image %d: %s", i, exc)
        cache.put_features(project, VERSION, rows)
        added += len(rows)
        if progress is not None:
            progress((start + len(chunk)) / len(todo))
    return added


def load(project: Project) -> tuple[np.ndarray, np.ndarray]:
    """(image ids int64[n], vectors float32[n, DIM]) for every image that has one."""
    rows = cache.feature_rows(project, VERSION)
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vectors = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), DIM)
    return ids, vectors
