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

from appliance.errors import ApplianceError

__all__ = ["MAX_CROSSINGS", "Ring", "mask_polygons", "rasterise"]

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


MAX_CROSSINGS = 50_000_000  # row crossings of one polygon set: 400 MB of work arrays at most


def _crossings(ring: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, x) where each pixel-centre row y = r + 0.5 crosses the ring's edges (half-open in
    y, so a vertex on a row counts once); rows outside 0..h-1 are left out."""
    a, b = ring, np.roll(ring, -1, axis=0)
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    first = np.clip(np.ceil(lo - 0.5), 0, h).astype(np.int64)
    stop = np.clip(np.ceil(hi - 0.5), 0, h).astype(np.int64)
    counts = np.where(lo < hi, stop - first, 0).clip(min=0)
    total = int(counts.sum())
    if total > MAX_CROSSINGS:
        raise ApplianceError(f"a polygon too complex to draw ({total} row crossings)")
    edge = np.repeat(np.arange(len(a)), counts)
    rows = np.repeat(first, counts) + (
        np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    )
    t = (rows + 0.5 - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
    return rows, a[edge, 0] + t * (b[edge, 0] - a[edge, 0])


def rasterise(
    polygons: list[list[Ring]], shape: tuple[int, int], offset: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """Pixels whose centre lies inside any of `polygons` (each `[outer, hole, ...]`, even-odd
    within a polygon), as a bool (H, W) mask; `offset` (x, y) is subtracted from every vertex.

    A scan-line fill: each pixel-centre row's crossings with the edges, paired in x order,
    bound the filled runs; the cost grows with the rows the edges span, not with pixels ×
    vertices, and vertices far outside the image (1e300) are harmless. Vertices must be finite.

    Examples
    --------
    >>> m = np.zeros((4, 5), bool); m[1:3, 1:4] = True; m[2, 2] = False
    >>> bool((rasterise(mask_polygons(m), m.shape) == m).all())
    True
    """
    h, w = shape
    runs = np.zeros((h, w + 1), np.int32)
    for polygon in polygons:
        rows_all, xs_all = [], []
        for ring in polygon:
            r = np.asarray(ring, np.float64)
            if r.ndim != 2 or r.shape[1] != 2 or len(r) < 3 or not np.isfinite(r).all():
                raise ApplianceError("a polygon ring needs at least 3 finite (x, y) vertices")
            rows, xs = _crossings(r - np.asarray(offset, np.float64), h)
            rows_all.append(rows)
            xs_all.append(xs)
        rows, xs = np.concatenate(rows_all), np.concatenate(xs_all)
        order = np.lexsort((xs, rows))
        rows, xs = rows[order], xs[order]
        start = np.clip(np.ceil(xs[0::2] - 0.5), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(xs[1::2] - 0.5), 0, w).astype(np.int64)
        keep = stop > start
        np.add.at(runs, (rows[0::2][keep], start[keep]), 1)
        np.add.at(runs, (rows[0::2][keep], stop[keep]), -1)
    return np.cumsum(runs, axis=1)[:, :w] > 0
