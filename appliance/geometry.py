"""Masks as polygons along pixel edges, and polygons back to masks, without loss.

QuPath, GeoJSON and every vector tool describe a cell by its outline in continuous coordinates
(origin at the top-left corner of pixel (0, 0)). An outline through pixel *centres* (what
`cv2.findContours` returns) would shrink each cell by half a pixel on export and grow or shrink
it on the way back; here outlines run along pixel *edges*, and a pixel belongs to a polygon
exactly when its centre lies inside, so mask → polygons → mask gives back every pixel.

The edge outline comes from `cv2.findContours` on the mask upsampled 2×: each pixel becomes a
2×2 block, the traced border pixels sit on the block edges, and a border pixel at upsampled
index p lies on the pixel edge (p + p mod 2) / 2 (even p: the block's left/top edge, odd p:
its right/bottom edge). Diagonal steps of the 8-connected trace collapse onto one corner.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.draw import polygon as fill_polygon

from appliance.errors import ApplianceError

__all__ = ["Ring", "mask_polygons", "rasterise"]

Ring = np.ndarray  # (N, 2) float or int (x, y) vertices, not repeated at the end


def _simplify(ring: np.ndarray) -> np.ndarray:
    """Drop repeated vertices and those in the middle of a straight run."""
    keep = np.any(ring != np.roll(ring, 1, axis=0), axis=1)
    ring = ring[keep]
    if len(ring) < 3:
        return ring
    prev, nxt = np.roll(ring, 1, axis=0), np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - ring[:, 1]) - (ring[:, 1] - prev[:, 1]) * (
        nxt[:, 0] - ring[:, 0]
    )
    return ring[cross != 0]


def mask_polygons(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[list[Ring]]:
    """Polygons `[outer, hole, ...]` whose pixel-edge outlines enclose exactly `mask`'s pixels.

    Parameters
    ----------
    mask : numpy.ndarray
        (H, W) bool or 0/1.
    offset : tuple of int
        (x, y) added to every vertex (a crop's place in its image or a region's in its slide).

    Returns
    -------
    list of list of numpy.ndarray
        One entry per outer boundary (8-connected component), its holes after it; vertices are
        int64 (x, y) corners.

    Examples
    --------
    >>> m = np.zeros((4, 5), bool); m[1:3, 1:4] = True
    >>> [ring.tolist() for ring in mask_polygons(m)[0]]
    [[[1, 1], [1, 3], [4, 3], [4, 1]]]
    """
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return []
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    y0, x0 = int(rows[0]), int(cols[0])
    crop = m[y0 : int(rows[-1]) + 1, x0 : int(cols[-1]) + 1]
    up = np.pad(np.kron(crop.astype(np.uint8), np.ones((2, 2), np.uint8)), 1)
    contours, hierarchy = cv2.findContours(
        up.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    shift = np.array([x0 + offset[0], y0 + offset[1]], np.int64)
    rings = []
    for c in contours:
        p = c[:, 0, :].astype(np.int64) - 1
        rings.append(_simplify((p + (p & 1)) // 2 + shift))
    out: list[list[Ring]] = []
    for k, (_, _, child, parent) in enumerate(hierarchy[0]):
        if parent != -1:
            continue
        polygon = [rings[k]]
        while child != -1:
            polygon.append(rings[child])
            child = hierarchy[0][child][0]
        out.append(polygon)
    return out


def rasterise(
    polygons: list[list[Ring]], shape: tuple[int, int], offset: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """Pixels whose centre lies inside any of `polygons` (each `[outer, hole, ...]`, even-odd
    within a polygon), as a bool (H, W) mask; `offset` (x, y) is subtracted from every vertex.

    Parts outside the image are cut off. Vertices must be finite.

    Examples
    --------
    >>> m = np.zeros((4, 5), bool); m[1:3, 1:4] = True; m[2, 2] = False
    >>> bool((rasterise(mask_polygons(m), m.shape) == m).all())
    True
    """
    h, w = shape
    out = np.zeros(shape, bool)
    for polygon in polygons:
        inside = np.zeros(shape, bool)
        for ring in polygon:
            r = np.asarray(ring, np.float64)
            if r.ndim != 2 or r.shape[1] != 2 or len(r) < 3 or not np.isfinite(r).all():
                raise ApplianceError("a polygon ring needs at least 3 finite (x, y) vertices")
            xs, ys = r[:, 0] - offset[0], r[:, 1] - offset[1]
            if xs.max() < 0 or ys.max() < 0 or xs.min() > w or ys.min() > h:
                continue
            rr, cc = fill_polygon(ys - 0.5, xs - 0.5, shape)
            flip = np.zeros(shape, bool)
            flip[rr, cc] = True
            inside ^= flip
        out |= inside
    return out
