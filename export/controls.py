"""`python -m export controls JOB --out CONTROLS.zip`: synthetic control items for the tablet.

Seed 000 plants generated cells among real data so that an annotator can be scored on items of
known truth without noticing, and fears that fakes are "recognised by their differing
background and size". So a control here copies no pixel of any image an annotator labels, and
every cell in it is drawn to match the cells of a real image (its *context*):

1. each control takes its own context image from the job (drawn without replacement: no two
   controls share one, and more controls than images is refused);
2. the context's cells are measured (`appliance.generators.context.cell_features`: size,
   brightness, texture, focus) and its pixel noise fitted (variance = gain·level + floor);
3. the background is new: the context's illumination with its objects inpainted and blurred
   to a smooth field (so no cell, debris or noise pixel survives), turned and flipped at random;
4. as many cells of each class as the context holds are drawn from the cell source and
   re-rendered to a real cell's measurements of that class (area by resizing, mean contrast
   and relative texture by rescaling, blur by the context's focus), at free places;
5. the clean render gets fresh noise from the fitted model, so cells and background share the
   context's noise; the truth is the planted masks, exact, and covers every cell in the image.

An RGB region whose cells are marked by points and boxes (a slide region of seeds 000 and 002)
is the exception: its control is that region with cells planted among the marked ones
(`export.region_controls`, seed 000's plan), served on the tablet as a region of its slide.

The cell source is the virtual microscope (`export.synth`: round cells for the first class,
lobed cells for the others, denoised). Names continue the job's own naming pattern (e.g.
`img_0042.tif` after `img_0041.tif`), so nothing in a name sets a control apart.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.bundles.control_bundle import ControlItem, write_control_bundle
from appliance.bundles.training_job import read_training_job
from appliance.errors import ApplianceError
from appliance.generators.context import (
    CellFeatures,
    NoiseModel,
    add_noise,
    cell_features,
    noise_model,
    smooth_background,
)
from appliance.imageio import write_tiff
from appliance.labels import Label
from export import __version__
from export.cell_source import CellSource, Shape

__all__ = ["CellSource", "Control", "compose", "make_controls", "plausible_names", "register"]

GENERATOR = {"name": "virtual-microscope", "kind": "virtual-microscope", "version": __version__}
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[^.]+)?$")
ILLUMINATION_SIGMA = 6.0  # px: blur that leaves the illumination and removes every object
MARGIN = 3  # free pixels between planted cells


def plausible_names(existing: list[str], n: int) -> list[str]:
    """n new names that continue the most common `prefix + number + suffix` pattern."""
    patterns: Counter[tuple[str, int, str]] = Counter()
    numbers: dict[tuple[str, int, str], list[int]] = {}
    for name in existing:
        m = _NUMBERED.match(name)
        if m:
            key = (m.group(1), len(m.group(2)), m.group(3) or "")
            patterns[key] += 1
            numbers.setdefault(key, []).append(int(m.group(2)))
    if not patterns:
        return [f"image_{k:04d}.tif" for k in range(1, n + 1)]
    (prefix, width, suffix), _ = patterns.most_common(1)[0]
    start = max(numbers[(prefix, width, suffix)]) + 1
    return [f"{prefix}{k:0{width}d}{suffix or '.tif'}" for k in range(start, start + n)]


_PAD = 8 + 3 * 4  # pixels around a rendered cell: room for the widest blur `_fit` picks (σ 4)


def _geometry(
    shape: Shape, target: CellFeatures, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, relative texture) of `shape` turned, flipped and resized to `target`'s area,
    with `_PAD` free pixels around; the texture is the signal over its mean, minus one."""
    k = int(rng.integers(4))
    mask, signal = np.rot90(shape.mask, k), np.rot90(shape.signal, k)
    if rng.random() < 0.5:
        mask, signal = mask[:, ::-1], signal[:, ::-1]
    scale = float(np.sqrt(target.area / max(mask.sum(), 1)))
    size = (max(2, round(mask.shape[1] * scale)), max(2, round(mask.shape[0] * scale)))
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    signal = cv2.resize(np.ascontiguousarray(signal), size, interpolation=cv2.INTER_LINEAR)
    mask, signal = np.pad(mask, _PAD), np.pad(signal, _PAD)
    inside = signal[mask]
    mean = float(inside.mean()) if inside.size else 1.0
    return mask, np.where(mask, signal / max(mean, 1e-9) - 1.0, 0.0)


def _fit(
    mask: np.ndarray,
    texture: np.ndarray,
    target: CellFeatures,
    floor: np.ndarray,
    noise: NoiseModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """The clean signal of a cell with `mask` and relative `texture` whose contrast, texture
    and focus measure like `target`'s. Each round renders it onto `floor` (the illumination
    where it will sit, whose slope adds to the texture seen) with the context's noise (which
    adds texture and steepens the rim as seen), measures it as `cell_features` measures real
    cells, and corrects towards the target."""
    base = max(float(np.std(texture[mask])), 1e-6)
    gain_c, gain_t, sigma = 1.0, target.texture / base, target.focus
    patch: np.ndarray = np.zeros(mask.shape)
    one = Label(mask.astype(np.uint32), {1: 1})
    for _ in range(4):
        sharp = np.where(mask, target.contrast * gain_c * (1.0 + gain_t * texture), 0.0)
        patch = cv2.GaussianBlur(sharp, (0, 0), sigma) if sigma > 0.3 else sharp
        # three noise draws: a correction chasing one draw's noise would overshoot on average
        seen = [cell_features(add_noise(floor + patch, noise, rng), one) for _ in range(3)]
        if not all(seen):
            break
        contrast, spread, focus = (float(np.mean([g[0].value(f) for g in seen])) for f in
                                   ("contrast", "texture", "focus"))  # fmt: skip
        gain_c *= target.contrast / contrast if contrast else 1.0
        gain_t *= float(np.clip(target.texture / spread, 0.3, 3.0)) if spread > 0 else 1.0
        if focus > 0.3 and target.focus > 0.3:
            sigma = min(sigma * target.focus / focus, 4.0)
    return patch


def _add_clipped(canvas: np.ndarray, patch: np.ndarray, top: int, left: int) -> None:
    """canvas[top:, left:] += patch (or |= for bool), the parts outside the canvas dropped."""
    h, w = canvas.shape
    ph, pw = patch.shape
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(h, top + ph), min(w, left + pw)
    if y0 >= y1 or x0 >= x1:
        return
    part = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    if canvas.dtype == bool:
        canvas[y0:y1, x0:x1] |= part
    else:
        canvas[y0:y1, x0:x1] += part


@dataclass(frozen=True)
class Control:
    """A composed control: the image (context's dtype), its exact truth, and per planted cell
    the context cell whose measurements it was drawn to."""

    image: np.ndarray
    truth: Label
    targets: list[CellFeatures]


def compose(
    image: np.ndarray, label: Label, rng: np.random.Generator, source: CellSource | None = None
) -> Control:
    """A new control image matched to the context `image` and its `label` (see the module
    docstring); raises ApplianceError when the context has no measurable cell."""
    if image.ndim != 2:
        raise ApplianceError(
            "virtual-microscope controls need single-channel images; colour images need "
            "generator cells"
        )
    occupied = label.instances > 0
    if not occupied.any() or occupied.all():
        raise ApplianceError("the image needs both labelled cells and background")
    # a small image may hold only cells cut by its border: then those are the best measure
    feats = cell_features(image, label) or cell_features(image, label, whole=False)
    if not feats:
        raise ApplianceError("the image has no whole labelled cell to match")
    source = source or CellSource(rng)
    noise = noise_model(image, occupied)
    clean = smooth_background(image, occupied, ILLUMINATION_SIGMA)
    h, w = clean.shape
    k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
    clean = np.rot90(clean, k)
    if rng.random() < 0.5:
        clean = clean[:, ::-1]
    clean = np.ascontiguousarray(clean)
    reach = 2 * _PAD + max(h, w)  # how far a rendered patch may stick out of the image
    lit = np.pad(clean, reach, mode="reflect")  # the illumination alone, also beyond the edges
    by_class: dict[int, list[CellFeatures]] = {}
    for f in feats:
        by_class.setdefault(f.class_id, []).append(f)
    wanted = Counter(label.class_of(int(i)) for i in label.ids())
    truth = np.zeros((h, w), np.uint32)
    blocked = np.zeros((h, w), np.uint8)
    classes: dict[int, int] = {}
    targets: list[CellFeatures] = []
    order = [c for c, n in sorted(wanted.items()) for _ in range(n)]
    for class_id in rng.permutation(order) if order else []:
        pool = by_class.get(int(class_id)) or feats
        target = pool[int(rng.integers(len(pool)))]
        mask, texture = _geometry(source.draw(int(class_id) - 1), target, rng)
        ys, xs = np.nonzero(mask)
        my, mx = int(ys.min()), int(xs.min())
        tight = mask[my : ys.max() + 1, mx : xs.max() + 1]
        grown = cv2.dilate(
            np.pad(tight, MARGIN).astype(np.uint8), np.ones((2 * MARGIN + 1,) * 2, np.uint8)
        )
        gh, gw = grown.shape
        if gh > h or gw > w:
            continue
        # as in a real field, a cell may be cut by the image border (an image whose cells all
        # stay clear of it would stand out): its outline may leave the image while at least
        # half of its box stays inside
        free = np.pad(1 - blocked, ((gh, gh), (gw, gw)), constant_values=1)
        fits = cv2.erode(free, grown, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)[
            : h + gh + 1, : w + gw + 1
        ]
        ys, xs = np.nonzero(fits)
        ys, xs = ys - gh, xs - gw  # top-left of the grown outline in the image
        seen_h = np.minimum(ys + gh, h) - np.maximum(ys, 0)
        seen_w = np.minimum(xs + gw, w) - np.maximum(xs, 0)
        keep = seen_h * seen_w >= 0.5 * gh * gw
        ys, xs = ys[keep], xs[keep]
        if ys.size == 0:
            continue
        j = int(rng.integers(ys.size))
        y, x = int(ys[j]), int(xs[j])
        top, left = y + MARGIN - my, x + MARGIN - mx
        ph, pw = mask.shape
        floor = lit[top + reach : top + reach + ph, left + reach : left + reach + pw]
        patch = _fit(mask, texture, target, floor, noise, rng)
        _add_clipped(clean, patch, top, left)
        cell = np.zeros((h, w), bool)
        _add_clipped(cell, mask, top, left)
        if not cell.any():
            continue
        new_id = len(targets) + 1
        truth[cell] = new_id
        classes[new_id] = int(class_id)
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + gh, h), min(x + gw, w)
        np.maximum(
            blocked[y0:y1, x0:x1],
            grown[y0 - y : y1 - y, x0 - x : x1 - x],
            out=blocked[y0:y1, x0:x1],
        )
        targets.append(target)
    if not targets:
        raise ApplianceError("no cell-free place is large enough for a synthetic cell")
    out = add_noise(clean, noise, rng)
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        out = np.clip(np.round(out), info.min, info.max)
    return Control(out.astype(image.dtype), Label(truth, classes), targets)


def make_controls(job_path: Path, out: Path, n: int, seed: int = 0) -> tuple[str, int]:
    """Write a control bundle of n synthetic controls, each matched to its own context image
    of the job, none used twice: a labelled single-channel image (a new image, see the module
    docstring) or an RGB region whose cells are marked by points and boxes (cells planted on
    the region itself, `export.region_controls`)."""
    from export.region_controls import compose_on_region, marked_only

    if n < 1:
        raise ApplianceError(f"--n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    with read_training_job(job_path) as job:
        usable = [
            i
            for i in job.items
            if (len(i.shape) == 2 and i.label.ids().size)
            or (len(i.shape) == 3 and i.shape[2] == 3 and marked_only(i.label))
        ]
        if len(usable) < n:
            raise ApplianceError(
                f"{job_path}: {len(usable)} labelled single-channel images or RGB regions "
                f"marked by points and boxes can be the context of at most {len(usable)} "
                f"controls (each serves one), {n} asked for"
            )
        names = plausible_names([i.name for i in job.items], n)
        source = CellSource(rng)
        items = []
        with tempfile.TemporaryDirectory(prefix="controls-") as tmp:
            for k, pick in enumerate(rng.permutation(len(usable))[:n]):
                context = usable[int(pick)]
                region = None
                try:
                    if len(context.shape) == 2:
                        control = compose(context.image(), context.label, rng, source)
                        image, truth, suffix = control.image, control.truth, ".tif"
                    else:
                        mpp = (context.region or {}).get("mpp")
                        comp = compose_on_region(
                            context.image(), context.label, job.classes, rng, source, mpp
                        )
                        image, truth, suffix = comp.image, comp.label, ".png"
                        region = context.region
                except ApplianceError as exc:
                    raise ApplianceError(f"{job_path}: {context.name}: {exc}") from exc
                path = Path(tmp) / f"{k}{suffix}"
                if suffix == ".tif":
                    write_tiff(path, image)
                else:  # lossless, as the tablet stores a region's pixels
                    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                    assert ok  # encoding a uint8 RGB array in memory cannot fail
                    path.write_bytes(png.tobytes())
                items.append(
                    ControlItem(
                        name=Path(names[k]).with_suffix(suffix).name,
                        image_bytes=path.read_bytes(),
                        suffix=suffix,
                        truth=truth,
                        generator=GENERATOR,
                        background=context.name,
                        region=region,
                    )
                )
        bundle_id = write_control_bundle(
            out, items, job.classes, GENERATOR, job.id, ("export", __version__)
        )
    return bundle_id, len(items)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controls",
        help="make a control bundle: synthetic cells matched to the job's images",
        description="For each control, take one labelled grey image of the job as its context "
        "(never twice), measure its cells (size, brightness, texture, focus) and noise, and "
        "render a new image: the context's smoothed illumination, turned, with "
        "virtual-microscope cells drawn to those measurements and fresh noise of the same "
        "model. No pixel of a job image is copied; the truth (every cell) is exact. An RGB "
        "region whose cells are marked by points and boxes gets cells coloured and sized like "
        "its marked ones planted on it (its marks plus the planted cells are the truth); the "
        "tablet places it on its slide. Writes a control bundle the tablet installs with "
        "`appliance controls install`.",
    )
    p.add_argument("job", type=Path, help="training-job bundle (.zip)")
    p.add_argument("--out", type=Path, required=True, help="control bundle to write (.zip)")
    p.add_argument(
        "--n",
        type=int,
        default=20,
        help="number of controls (default 20; at most the job's labelled grey images)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of contexts, cells and places")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    bundle_id, n = make_controls(args.job, args.out, args.n, args.seed)
    print(f"wrote {args.out}: {n} controls (bundle {bundle_id})")
    return 0
