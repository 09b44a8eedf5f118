"""Perturbations that turn a good instance map into a plausible low-quality one (seed 003).

The workstation draws them fresh every epoch to train the upgrade network (seed 003, eq. 3.6);
the tablet reuses them to plant errors in control items. Both need the same behaviour, so they
live in the core and use numpy, OpenCV and scikit-image only (no torch).

Every function takes an instance map (H×W integers, 0 = background, one id per object) and a
`numpy.random.Generator`, and returns a new uint32 instance map; inputs are never modified.

Semantics chosen where seed 003 leaves room:
- omission and inclusion pick exactly `round(rate * count)` objects;
- included objects overwrite what lies under them (eq. 3.10) and get fresh ids above the
  largest id present, so they stay separate instances;
- bias works on instances: erosion removes every pixel whose 3×3 neighbourhood holds another id
  (background or a touching cell), dilation grows cells into background only (a cell never eats
  its neighbour); the image border counts as more of the same object, so cells cut by the border
  are not eroded from it;
- salt-and-pepper corrupts each pixel with probability p, half of them to background (pepper),
  half to foreground (salt: background pixels join one new "noise" instance).

Two more errors serve the planted-error controls of seed 002 (pre-labels whose mistakes are
known): `class_flip` gives chosen cells another class, and `merge` joins neighbouring cells
into one instance (with the background gap between them filled, as a detector's merged box
would cover it). Both return what they did, so the caller can record exactly what it planted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from appliance.errors import ApplianceError

__all__ = [
    "PerturbSpec",
    "bias",
    "felzenszwalb_objects",
    "inclusion",
    "omission",
    "perturb",
    "salt_and_pepper",
]

BiasMode = Literal["image", "cell"]
_KERNEL = np.ones((3, 3), np.uint8)


def _check(instances: np.ndarray) -> np.ndarray:
    """Validate an instance map and return it as uint32 (a copy is made by the callers' writes)."""
    if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
        raise ApplianceError(
            f"perturbation needs a 2-D integer instance map, got {instances.dtype} "
            f"with shape {instances.shape}"
        )
    if instances.size and instances.min() < 0:
        raise ApplianceError("perturbation needs non-negative instance ids")
    return instances.astype(np.uint32, copy=True)


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ApplianceError(f"{name} rate must be in [0, 1], got {rate}")


def _ids(instances: np.ndarray) -> np.ndarray:
    ids = np.unique(instances)
    return ids[ids != 0]


def omission(instances: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Drop `round(rate * E)` whole instances out of E (seed 003, eq. 3.9)."""
    _check_rate("omission", rate)
    out = _check(instances)
    ids = _ids(out)
    n_drop = round(rate * len(ids))
    if n_drop:
        dropped = rng.choice(ids, size=n_drop, replace=False)
        out[np.isin(out, dropped)] = 0
    return out


def felzenszwalb_objects(
    image: np.ndarray, instances: np.ndarray, scale: float = 100.0, min_size: int = 20
) -> np.ndarray:
    """Candidate "other objects" from Felzenszwalb segments of the image, for inclusion.

    Used when no second object kind is annotated (seed 003, section 3.3.4). Segments that mostly
    cover labelled cells are dropped (including them would change nothing), and so are segments
    larger than four times the median cell area (or 2 % of the image without cells): the largest
    segments are background, and including them would paint the whole image.
    """
    from skimage.segmentation import felzenszwalb

    img = image.astype(np.float32)
    if img.ndim == 3:
        img = img.mean(axis=2)
    lo, hi = np.percentile(img, (1.0, 99.8))
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    segments = felzenszwalb(img, scale=scale, sigma=0.8, min_size=min_size) + 1
    cell_ids = _ids(instances)
    if len(cell_ids):
        max_area = 4.0 * float(np.median(np.bincount(instances.ravel())[cell_ids]))
    else:
        max_area = 0.02 * img.size
    area = np.bincount(segments.ravel())
    on_cells = np.bincount(segments.ravel(), weights=(instances > 0).ravel())
    keep = (area > 0) & (area <= max_area) & (on_cells < 0.5 * np.maximum(area, 1))
    keep[0] = False
    return np.where(keep[segments], segments, 0).astype(np.uint32)


def inclusion(
    instances: np.ndarray,
    rate: float,
    rng: np.random.Generator,
    others: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Add `round(rate * F)` of the F other objects as if they were cells (seed 003, eq. 3.10).

    `others` is an instance map of a second object kind (debris, another cell type); without it
    the candidates are Felzenszwalb segments of `image`.
    """
    _check_rate("inclusion", rate)
    out = _check(instances)
    if others is None:
        if image is None:
            raise ApplianceError(
                "inclusion needs either an instance map of other objects or the image"
            )
        others = felzenszwalb_objects(image, out)
    if others.shape != out.shape:
        raise ApplianceError(
            f"inclusion: other objects have shape {others.shape}, the label {out.shape}"
        )
    other_ids = _ids(others)
    n_add = round(rate * len(other_ids))
    if n_add:
        chosen = np.sort(rng.choice(other_ids, size=n_add, replace=False))
        next_id = int(out.max()) + 1
        for offset, oid in enumerate(chosen):
            out[others == oid] = next_id + offset
    return out


def _erode_instances(lab: np.ndarray, q: int) -> np.ndarray:
    """q erosions of every instance with a 3×3 all-ones element (float32 keeps ids exact)."""
    work = lab.astype(np.float32)
    for _ in range(q):
        lo = cv2.erode(work, _KERNEL, borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(work, _KERNEL, borderType=cv2.BORDER_REPLICATE)
        work = np.where(lo == hi, work, 0.0).astype(np.float32)
    return work.astype(np.uint32)


def _dilate_instances(lab: np.ndarray, q: int) -> np.ndarray:
    """q dilations into background with a 3×3 all-ones element; the larger id wins a tie."""
    work = lab.astype(np.float32)
    for _ in range(q):
        hi = cv2.dilate(work, _KERNEL, borderType=cv2.BORDER_REPLICATE)
        work = np.where(work == 0, hi, work)
    return work.astype(np.uint32)


def bias(
    instances: np.ndarray, max_steps: int, rng: np.random.Generator, mode: BiasMode = "image"
) -> np.ndarray:
    """Erode or dilate (chosen at random) q times, q uniform in 1..max_steps (seed 003, eq. 3.11,
    where max_steps is max_steps).

    `mode="image"` draws one operation and q for the whole label. `mode="cell"` draws one per
    cell and treats each cell alone (a cell erodes from the background only); erosions are
    applied first, so dilations may grow into the pixels they freed.
    """
    if max_steps < 0:
        raise ApplianceError(f"bias steps must be >= 0, got {max_steps}")
    out = _check(instances)
    if max_steps == 0:
        return out
    if mode == "image":
        q = int(rng.integers(1, max_steps + 1))
        erode = bool(rng.integers(0, 2))
        return _erode_instances(out, q) if erode else _dilate_instances(out, q)
    if mode != "cell":
        raise ApplianceError(f"bias mode must be 'image' or 'cell', got {mode!r}")
    ids = _ids(out)
    qs = rng.integers(1, max_steps + 1, size=len(ids))
    erodes = rng.integers(0, 2, size=len(ids)).astype(bool)
    result = out.copy()
    for cid, q, erode in zip(ids, qs, erodes, strict=True):
        if erode:
            cell = (out == cid).astype(np.uint32)
            kept = _erode_instances(cell, int(q)) > 0
            result[(out == cid) & ~kept] = 0
    for cid, q, erode in zip(ids, qs, erodes, strict=True):
        if not erode:
            grown = cv2.dilate((out == cid).astype(np.uint8), _KERNEL, iterations=int(q)) > 0
            result[grown & (result == 0)] = cid
    return result


def salt_and_pepper(instances: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Corrupt each pixel with probability `rate`: half become background, half foreground."""
    _check_rate("salt-and-pepper", rate)
    out = _check(instances)
    corrupt = rng.random(out.shape) < rate
    salt = rng.random(out.shape) < 0.5
    noise_id = int(out.max()) + 1
    out[corrupt & ~salt] = 0
    out[corrupt & salt & (out == 0)] = noise_id
    return out


@dataclass(frozen=True)
class PerturbSpec:
    """Which perturbations to apply and how strongly; applied omission → inclusion → bias → s&p."""

    omission: float = 0.0
    inclusion: float = 0.0
    bias: int = 0
    bias_mode: BiasMode = "image"
    salt_pepper: float = 0.0

    @classmethod
    def parse(cls, text: str) -> PerturbSpec:
        """Parse `omission=0.7,inclusion=0.7,bias=6[,bias_mode=cell][,salt_pepper=0.1]`.

        Examples
        --------
        >>> spec = PerturbSpec.parse("omission=0.5, bias=3, bias-mode=cell")
        >>> spec.omission, spec.bias, spec.bias_mode, str(spec)
        (0.5, 3, 'cell', 'omission=0.5,inclusion=0,bias=3,bias_mode=cell')
        """
        fields: dict[str, float | int | str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            try:
                if not sep:
                    raise ValueError
                if key in ("omission", "inclusion", "salt_pepper"):
                    fields[key] = float(value)
                elif key == "bias":
                    fields[key] = int(value)
                elif key == "bias_mode" and value.strip() in ("image", "cell"):
                    fields[key] = value.strip()
                else:
                    raise ValueError
            except ValueError as exc:
                raise ApplianceError(
                    f"bad perturbation {part!r} in {text!r}: expected omission=R, inclusion=R, "
                    "bias=Q, bias_mode=image|cell or salt_pepper=P"
                ) from exc
        spec = cls(**fields)  # type: ignore[arg-type]
        for name in ("omission", "inclusion", "salt_pepper"):
            _check_rate(name, getattr(spec, name))
        if spec.bias < 0:
            raise ApplianceError(f"bias must be >= 0 in {text!r}")
        return spec

    def __str__(self) -> str:
        parts = [f"omission={self.omission:g}", f"inclusion={self.inclusion:g}"]
        parts.append(f"bias={self.bias}")
        if self.bias_mode != "image":
            parts.append(f"bias_mode={self.bias_mode}")
        if self.salt_pepper:
            parts.append(f"salt_pepper={self.salt_pepper:g}")
        return ",".join(parts)


def perturb(
    instances: np.ndarray,
    spec: PerturbSpec,
    rng: np.random.Generator,
    others: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the perturbations of `spec` in the order omission → inclusion → bias → s&p.

    Parameters
    ----------
    instances : numpy.ndarray
        (H, W) instance map of a good label, integer dtype, 0 background.
    spec : PerturbSpec
        What to apply and how strongly.
    rng : numpy.random.Generator
        Source of every random draw (same seed, same result).
    others : numpy.ndarray, optional
        (H, W) instance map of a second object kind that inclusion may add.
    image : numpy.ndarray, optional
        (H, W) or (H, W, C) image, for Felzenszwalb segments when `others` is missing.

    Returns
    -------
    numpy.ndarray
        uint32 (H, W), a new array; `instances` is not changed.

    Examples
    --------
    >>> lab = np.zeros((6, 6), np.uint32); lab[1:3, 1:3] = 1; lab[3:5, 3:5] = 2
    >>> out = perturb(lab, PerturbSpec(omission=0.5), np.random.default_rng(0))
    >>> len(set(out.ravel().tolist())) - 1  # one of the two objects is left
    1
    """
    out = _check(instances)
    if spec.omission:
        out = omission(out, spec.omission, rng)
    if spec.inclusion:
        out = inclusion(out, spec.inclusion, rng, others=others, image=image)
    if spec.bias:
        out = bias(out, spec.bias, rng, mode=spec.bias_mode)
    if spec.salt_pepper:
        out = salt_and_pepper(out, spec.salt_pepper, rng)
    return out


def class_flip(
    classes: dict[int, int],
    ids: list[int],
    n_classes: int,
    rng: np.random.Generator,
) -> dict[int, int]:
    """A copy of `classes` where each id in `ids` gets a different class, drawn uniformly.

    Class ids run 1..n_classes; instances missing from `classes` count as class 1.
    """
    if n_classes < 2:
        raise ApplianceError("a class flip needs a project with at least two classes")
    out = dict(classes)
    for iid in ids:
        current = out.get(int(iid), 1)
        others = [c for c in range(1, n_classes + 1) if c != current]
        out[int(iid)] = int(rng.choice(others))
    return out


def neighbour_pairs(instances: np.ndarray, gap: int = 2) -> list[tuple[int, int]]:
    """Pairs of instance ids (a < b) that touch or come within `gap` pixels of each other."""
    lab = _check(instances)
    pairs: set[tuple[int, int]] = set()
    if not lab.any():
        return []
    grown = lab.astype(np.float32)
    for _ in range(max(gap, 1)):
        grown = np.where(grown == 0, cv2.dilate(grown, _KERNEL), grown)
    grown_u = grown.astype(np.uint32)
    # every pixel of a grown cell next to a pixel of another grown cell marks a pair
    for a, b in (
        (grown_u[:, :-1], grown_u[:, 1:]),
        (grown_u[:-1, :], grown_u[1:, :]),
        (grown_u[:-1, :-1], grown_u[1:, 1:]),
        (grown_u[:-1, 1:], grown_u[1:, :-1]),
    ):
        sel = (a != b) & (a > 0) & (b > 0)
        if sel.any():
            lo = np.minimum(a[sel], b[sel]).astype(np.int64)
            hi = np.maximum(a[sel], b[sel]).astype(np.int64)
            pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return sorted(pairs)


def merge(instances: np.ndarray, pairs: list[tuple[int, int]], gap: int = 2) -> np.ndarray:
    """Join each pair (a, b) into instance a, filling background within `gap` px of both."""
    out = _check(instances)
    size = 2 * gap + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    for a, b in pairs:
        near_a = cv2.dilate((out == a).astype(np.uint8), kernel) > 0
        near_b = cv2.dilate((out == b).astype(np.uint8), kernel) > 0
        out[(out == b) | (near_a & near_b & (out == 0))] = a
    return out
