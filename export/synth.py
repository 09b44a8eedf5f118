"""A virtual microscope: fluorescence-like cell images with exact instance labels.

Seed 003 studies the upgrade network on virtual-microscope data because its ground truth is free of
annotator error; demos and tests need the same without shipping data sets. This module uses numpy
and scikit-image only (no torch), so it runs anywhere the core runs.

An image holds target cells (varied size, shape, brightness and chromatin texture, some touching;
`crowding` > 0 grows clusters of touching and overlapping cells, as real nuclei crowd)
and a second kind of object with its own instance map (debris for `nuclei`, granulocyte-like lobed
cells for `mixed`, as seed 003's combined HL60 + granulocyte set), which the inclusion perturbation
draws from. Uneven illumination, dim cells, bright "other" objects, blur and Poisson + read noise
keep a global threshold from solving it (see `otsu_dice`). Each image is drawn from its own child
of `numpy.random.SeedSequence(seed)`, so image i is the same whatever n is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.filters import gaussian, threshold_otsu

from appliance.errors import ApplianceError
from appliance.imageio import write_tiff
from appliance.metrics import pooled_dice


@dataclass(frozen=True)
class Kind:
    """Parameters of one kind of synthetic data set (lengths in pixels, counts per 256×256).

    Objects keep their size in pixels whatever the image size (a larger image is a larger field of
    view of the same microscope), so a model trained on 256×256 crops serves 512×512 images.
    """

    cell_radius: tuple[float, float]
    cell_density: float  # cells per 256×256 field
    lobes: int  # 1 = round nucleus, >1 = granulocyte-like lobed cell
    other: str  # "debris" or "granulocytes"
    other_density: float


KINDS: dict[str, Kind] = {
    "nuclei": Kind((7.0, 17.0), 26, 1, "debris", 14),
    "mixed": Kind((8.0, 16.0), 20, 1, "granulocytes", 12),
}


@dataclass(frozen=True)
class SynthSample:
    """One image (uint16) with the instance maps of its target cells and of the other objects."""

    image: np.ndarray
    cells: np.ndarray
    others: np.ndarray


def _shape_mask(rng: np.random.Generator, radius: float, lobes: int) -> np.ndarray:
    """A boolean mask of one irregular blob (random ellipse + low-order harmonics) or lobed cell."""
    half = int(np.ceil(radius * 1.6)) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    if lobes > 1:
        mask = np.zeros(yy.shape, bool)
        angle0 = rng.uniform(0, 2 * np.pi)
        for k in range(lobes):
            a = angle0 + 2 * np.pi * k / lobes + rng.normal(0, 0.3)
            cy, cx = 0.55 * radius * np.sin(a), 0.55 * radius * np.cos(a)
            r = radius * rng.uniform(0.45, 0.6)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        return mask
    theta = rng.uniform(0, np.pi)
    elong = rng.uniform(1.0, 1.5)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    rho = np.hypot(u / np.sqrt(elong), v * np.sqrt(elong))  # area kept, shape stretched
    phi = np.arctan2(v, u)
    wobble = 1.0 + sum(
        rng.normal(0, 0.12 / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4, 5)
    )
    return rho <= radius * wobble


def _debris_mask(rng: np.random.Generator) -> np.ndarray:
    """A small bright fragment or a short curved fibre."""
    if rng.random() < 0.6:
        return _shape_mask(rng, rng.uniform(2.0, 5.0), 1)
    length = rng.uniform(12, 26)
    half = int(length / 2 + 4)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    bend = rng.uniform(-0.04, 0.04)
    return (np.abs(u) <= length / 2) & (np.abs(v - bend * u * u) <= rng.uniform(1.0, 2.0))


def _place(
    target: np.ndarray,
    mask: np.ndarray,
    centre: tuple[int, int],
    value: int,
    min_visible: float = 0.0,
) -> np.ndarray | None:
    """Paint `mask` at `centre` where `target` is still 0; return the painted full-size mask.

    An object hidden behind earlier ones to less than `min_visible` of its area is not placed:
    a sliver of a cell is not something an annotator would draw either.
    """
    h, w = target.shape
    mh, mw = mask.shape
    y0, x0 = centre[0] - mh // 2, centre[1] - mw // 2
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + mh, h), min(x0 + mw, w)
    if ys >= ye or xs >= xe:
        return None
    sub = mask[ys - y0 : ye - y0, xs - x0 : xe - x0] & (target[ys:ye, xs:xe] == 0)
    if sub.sum() < max(4.0, min_visible * mask.sum()):
        return None
    target[ys:ye, xs:xe][sub] = value
    full = np.zeros(target.shape, bool)
    full[ys:ye, xs:xe] = sub
    return full


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth random field scaled to [0, 1]."""
    field = gaussian(rng.standard_normal(shape), sigma=sigma)
    lo, hi = field.min(), field.max()
    return ((field - lo) / max(hi - lo, 1e-9)).astype(np.float32)


def _cell_centre(
    rng: np.random.Generator,
    size: int,
    r: float,
    centres: list[tuple[float, float, float]],
    crowding: float,
) -> tuple[float, float] | None:
    """Where the next cell goes, or None when that spot is taken.

    Without crowding a cell lands anywhere and may only touch its neighbours (centres at least
    0.8 of the summed radii apart). With probability `crowding` it joins a random earlier cell
    instead, at 0.55–0.85 of the summed radii: touching or partly overlapping, so clusters grow.
    """
    if crowding > 0 and centres and rng.random() < crowding:
        ay, ax, ar = centres[int(rng.integers(len(centres)))]
        angle = rng.uniform(0, 2 * np.pi)
        d = (ar + r) * rng.uniform(0.55, 0.85)
        y, x = ay + d * np.sin(angle), ax + d * np.cos(angle)
        min_gap = 0.55
    else:
        y, x = rng.uniform(0, size, 2)
        min_gap = 0.55 if crowding > 0 else 0.8
    if any(np.hypot(y - cy, x - cx) < min_gap * (r + cr) for cy, cx, cr in centres):
        return None
    return float(y), float(x)


def synth_sample(
    rng: np.random.Generator, size: int = 256, kind: str = "nuclei", crowding: float = 0.0
) -> SynthSample:
    """Draw one image with its labels; `crowding` in [0, 1] is the share of clustered cells.

    Crowding also raises the number of cells (by up to half as many again), as a crowded field
    holds more nuclei. Overlapping cells keep the visible part in their label: the cell placed
    first lies on top.
    """
    if kind not in KINDS:
        raise ApplianceError(f"unknown synthetic kind {kind!r}; choose from {', '.join(KINDS)}")
    if size < 32:
        raise ApplianceError(f"synthetic images need --size >= 32, got {size}")
    if not 0.0 <= crowding <= 1.0:
        raise ApplianceError(f"--crowding must lie in [0, 1], got {crowding}")
    k = KINDS[kind]
    area = (size / 256.0) ** 2
    shape = (size, size)
    cells = np.zeros(shape, np.uint32)
    others = np.zeros(shape, np.uint32)
    signal = np.zeros(shape, np.float32)
    chromatin = _smooth_noise(rng, shape, 2.0)
    grid_y, grid_x = np.mgrid[0:size, 0:size]
    centres: list[tuple[float, float, float]] = []
    n_cells = max(int(rng.poisson(k.cell_density * area * (1.0 + 0.5 * crowding))), 1)
    for _ in range(n_cells * 20):
        if len(centres) >= n_cells:
            break
        r = rng.uniform(*k.cell_radius)
        spot = _cell_centre(rng, size, r, centres, crowding)
        if spot is None:
            continue
        y, x = spot
        painted = _place(
            cells,
            _shape_mask(rng, r, k.lobes),
            (int(y), int(x)),
            len(centres) + 1,
            min_visible=0.5 if crowding > 0 else 0.0,
        )
        if painted is None:
            continue
        centres.append((y, x, r))
        # lognormal brightness: a tail of dim cells that sit near the background level
        bright = float(np.exp(rng.normal(0.0, 0.6)))
        texture = 0.65 + 0.7 * chromatin
        signal[painted] += bright * texture[painted]
        for _ in range(rng.integers(0, 3)):  # darker nucleoli
            ny, nx = np.argwhere(painted)[rng.integers(0, painted.sum())]
            spot = (grid_y - ny) ** 2 + (grid_x - nx) ** 2 < rng.uniform(2.0, 3.5) ** 2
            signal[painted & spot] *= 0.55
    n_other = rng.poisson(k.other_density * area)
    for i in range(int(n_other)):
        if k.other == "debris":
            mask, bright = _debris_mask(rng), float(rng.uniform(0.6, 2.2))
        else:
            mask = _shape_mask(rng, rng.uniform(7.0, 10.0), int(rng.integers(3, 5)))
            bright = float(rng.uniform(0.7, 1.6))
        y, x = rng.integers(0, size, 2)
        blocked = cells.copy()
        blocked[others > 0] = 1
        painted = _place(blocked, mask, (int(y), int(x)), 1)
        if painted is None:
            continue
        others[painted] = i + 1
        signal[painted] += bright * (0.8 + 0.4 * chromatin[painted])
    others = _relabel(others)
    # uneven illumination: a tilted plane plus a broad off-centre glow, as large as a dim cell
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gy, gx = rng.uniform(-1, 1, 2)
    cy, cx = rng.uniform(0.1, 0.9, 2)
    illum = 0.35 * (1 + gy * (yy - 0.5) + gx * (xx - 0.5))
    illum += rng.uniform(0.3, 0.9) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.08)
    illum += 0.15 * _smooth_noise(rng, shape, 0.05 * size)
    sharp = signal + illum
    blurred = gaussian(sharp, sigma=rng.uniform(0.8, 2.0))
    gain = rng.uniform(80.0, 300.0)  # photons per unit
    photons = rng.poisson(np.clip(blurred, 0, None) * gain).astype(np.float32)
    noisy = photons + rng.normal(0, rng.uniform(3.0, 8.0), shape) + 100.0  # read noise, offset
    image = np.clip(noisy * 20.0, 0, 65535).astype(np.uint16)
    return SynthSample(image=image, cells=cells, others=others)


def _relabel(lab: np.ndarray) -> np.ndarray:
    """Ids 1..n in order of first appearance, dropping ids that lost all their pixels."""
    ids = np.unique(lab)
    lut = np.zeros(int(ids.max()) + 1, np.uint32)
    lut[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1, dtype=np.uint32)
    return lut[lab]


def synth_samples(
    n: int, size: int = 256, seed: int = 0, kind: str = "nuclei", crowding: float = 0.0
) -> Iterator[SynthSample]:
    """Yield n samples; sample i depends only on (seed, i, size, kind, crowding)."""
    for child in np.random.SeedSequence(seed).spawn(n):
        yield synth_sample(np.random.default_rng(child), size, kind, crowding)


def otsu_dice(samples: list[SynthSample]) -> float:
    """Dice of per-image Otsu thresholding against the target cells, pooled over the set."""
    return pooled_dice(
        [s.cells for s in samples], [s.image > threshold_otsu(s.image) for s in samples]
    )


def write_dataset(
    out: Path,
    n: int,
    size: int = 256,
    seed: int = 0,
    kind: str = "nuclei",
    crowding: float = 0.0,
) -> dict[str, object]:
    """Write OUT/images, OUT/masks (target cells), OUT/other (16-bit TIFFs) and summary.json."""
    if n < 1:
        raise ApplianceError(f"--n must be at least 1, got {n}")
    out = Path(out)
    for sub in ("images", "masks", "other"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    samples = list(synth_samples(n, size, seed, kind, crowding))
    for i, s in enumerate(samples):
        name = f"synth_{i:04d}.tif"
        write_tiff(out / "images" / name, s.image)
        write_tiff(out / "masks" / name, s.cells.astype(np.uint16))
        write_tiff(out / "other" / name, s.others.astype(np.uint16))
    summary: dict[str, object] = {
        "n": n,
        "size": size,
        "seed": seed,
        "kind": kind,
        "crowding": crowding,
        "cells": int(sum(int(s.cells.max()) for s in samples)),
        "others": int(sum(int(s.others.max()) for s in samples)),
        "otsu_dice": round(otsu_dice(samples), 4),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
