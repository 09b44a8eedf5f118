"""Instance-aware model outputs and their decoding into instance maps (numpy and scikit-image).

A semantic output (`softmax`, `sigmoid`) says only "cell or not"; its instances are connected
components, so touching cells merge into one. The instance kinds add what tells cells apart:

- `three_class`: background, interior and boundary. The boundary class runs along every cell's
  edge, also where two cells touch, so interiors of touching cells are separate regions. They
  are the seeds; a seeded watershed grows them back over the whole foreground (interior plus
  boundary) along falling interior probability.
- `distance`: background and foreground (softmax) plus one logit whose sigmoid is each cell's
  distance to its own edge divided by its largest (1 at the centre, 0 at the edge). Where it
  exceeds `seed_threshold` lie the seeds; a watershed on the negated distance grows them over
  the foreground.

Both may carry K-1 more channels after these (a project with several classes): a softmax over
the foreground classes, and each instance takes the class most of its pixels vote for.

Decoding runs on the model's output for the whole image (the runtime stitches tiles first), so
a cell across a tile border is one cell, never two halves nor a duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
from skimage.segmentation import watershed

from appliance.contract import INSTANCE_HEAD, OUTPUT_KINDS, Value
from appliance.errors import ApplianceError

__all__ = [
    "INSTANCE_KINDS",
    "boundaries",
    "decode",
    "default_decoding",
    "foreground",
    "label_seeds",
    "majority_classes",
    "output_channels",
    "probabilities",
    "seeded_watershed",
    "softmax",
]

INSTANCE_KINDS = tuple(INSTANCE_HEAD)
_HEAD = INSTANCE_HEAD
_FOUR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def output_channels(kind: str, n_classes: int) -> int:
    """Channels a model of `kind` returns for `n_classes` classes (background included)."""
    if kind == "softmax":
        return n_classes
    if kind == "sigmoid":
        return 1
    if kind in INSTANCE_HEAD:
        return INSTANCE_HEAD[kind] + (n_classes - 1 if n_classes > 2 else 0)
    raise ApplianceError(f"unknown output kind {kind!r} (one of {', '.join(OUTPUT_KINDS)})")


def default_decoding(kind: str) -> dict[str, Value]:
    """The decoding parameters of `kind` at their contract defaults (`appliance.contract`)."""
    return {name: p.default for name, p in OUTPUT_KINDS[kind].params.items()}


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the few channels of C×H×W, channel by channel: numpy's reductions along
    axis 0 of such an array take ~30× longer (25 ms against 0.9 ms for 3×512²)."""
    top = x[0].copy()
    for c in x[1:]:
        np.maximum(top, c, out=top)
    e = np.empty(x.shape, np.float32)
    total = np.zeros(x.shape[1:], np.float32)
    for k, c in enumerate(x):
        np.exp(c - top, out=e[k])
        total += e[k]
    e /= total
    return e


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def foreground(logits: np.ndarray, kind: str) -> np.ndarray:
    """Probability (H×W) that a pixel belongs to any cell, from an instance kind's output."""
    x = logits.astype(np.float32, copy=False)
    if kind == "three_class":
        return 1.0 - softmax(x[:3])[0]
    if kind == "distance":
        return softmax(x[:2])[1]
    raise ApplianceError(f"{kind!r} is not an instance output kind")


def probabilities(logits: np.ndarray, kind: str, n_classes: int) -> np.ndarray:
    """K×H×W class probabilities of an instance kind: background, then each class's share."""
    fg = foreground(logits, kind)
    if n_classes <= 2:
        return np.stack([1.0 - fg, fg])
    share = softmax(logits[_HEAD[kind] :].astype(np.float32, copy=False))
    return np.concatenate([(1.0 - fg)[None], fg[None] * share])


def seeded_watershed(
    seeds: np.ndarray, elevation: np.ndarray, mask: np.ndarray, min_area: int
) -> np.ndarray:
    """Grow labelled `seeds` over `mask` downhill on `elevation`; returns uint32 ids 1..n.

    A foreground component that holds no seed is still one cell (a cell whose interior the
    model missed); cells under `min_area` pixels are dropped. One watershed over the whole
    image: per-component calls cost ~6× more on a crowded 512² field.
    """
    if not mask.any():
        return np.zeros(mask.shape, np.uint32)
    grown = watershed(elevation, seeds, mask=mask).astype(np.uint32)
    rest = mask & (grown == 0)
    if rest.any():
        _, comps = cv2.connectedComponents(rest.astype(np.uint8), connectivity=8)
        offset = np.uint32(grown.max())
        grown[rest] = comps[rest].astype(np.uint32) + offset
    return _drop_small(grown, min_area)


def _drop_small(inst: np.ndarray, min_area: int) -> np.ndarray:
    """Instances under `min_area` pixels vanish; ids are made sequential (1..n)."""
    area = np.bincount(inst.ravel())
    keep = area >= min_area
    keep[0] = False
    lut = np.zeros(area.size, np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[inst]


def label_seeds(candidates: np.ndarray, min_seed_area: int, erosion: int = 0) -> np.ndarray:
    """4-connected seed regions (a diagonal touch joins no seeds), eroded by `erosion` pixels
    first; small ones are dropped."""
    cand: np.ndarray = candidates.astype(np.uint8)
    if erosion and cand.any():
        cand = cv2.erode(cand, _FOUR.astype(np.uint8), iterations=erosion, borderValue=1)
    n, seeds = cv2.connectedComponents(cand, connectivity=4, ltype=cv2.CV_32S)
    if n <= 1:
        return seeds
    area = np.bincount(seeds.ravel())
    small = area < min_seed_area
    small[0] = False
    seeds[small[seeds]] = 0
    return seeds


def majority_classes(instances: np.ndarray, class_map: np.ndarray) -> dict[int, int]:
    """Each instance's class: the one most of its pixels carry in `class_map` (ties: lowest)."""
    sel = instances > 0
    if not sel.any():
        return {}
    inst = instances[sel].astype(np.int64)
    cls = class_map[sel].astype(np.int64)
    k = int(cls.max()) + 1
    votes = np.bincount(inst * k + cls, minlength=(int(inst.max()) + 1) * k).reshape(-1, k)
    present = np.flatnonzero(votes.sum(axis=1))
    return {int(i): int(votes[i].argmax()) for i in present}


def decode(
    logits: np.ndarray, kind: str, n_classes: int, decoding: Mapping[str, Value]
) -> tuple[np.ndarray, dict[int, int]]:
    """Instance map (uint32 H×W) and instance id -> model class index (1..K-1) of an output.

    `decoding` holds the kind's parameters (a contract's validated `decoding`, or
    `default_decoding(kind)`).
    """
    x = logits.astype(np.float32, copy=False)
    fg = foreground(x, kind) > float(decoding["threshold"])
    if kind == "three_class":
        seed_map = softmax(x[:3])[1]  # interior probability
        elevation = 1.0 - seed_map
    else:
        seed_map = _sigmoid(x[2])  # normalised distance to the cell's edge
        elevation = -seed_map
    sigma = float(decoding["seed_smoothing"])
    if sigma > 0:
        seed_map = cv2.GaussianBlur(seed_map, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    candidates = (seed_map > float(decoding["seed_threshold"])) & fg
    seeds = label_seeds(candidates, int(decoding["min_seed_area"]), int(decoding["seed_erosion"]))
    inst = seeded_watershed(seeds, elevation, fg, int(decoding["min_area"]))
    if n_classes <= 2:
        return inst, dict.fromkeys(range(1, int(inst.max()) + 1), 1)  # ids are 1..n
    class_map = x[_HEAD[kind] :].argmax(axis=0) + 1
    return inst, majority_classes(inst, class_map)


def boundaries(instances: np.ndarray) -> np.ndarray:
    """Pixels of a cell with a 4-neighbour outside it (background or another cell), as bool.

    The three-class training target and the upgrade model's boundary input channel: where two
    cells touch both sides are marked, so the line between them is two pixels wide.
    """
    inst = np.asarray(instances)
    edge = np.zeros(inst.shape, bool)
    if inst.ndim != 2 or inst.size == 0:
        return edge
    dy = inst[1:, :] != inst[:-1, :]
    dx = inst[:, 1:] != inst[:, :-1]
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    return edge & (inst > 0)
