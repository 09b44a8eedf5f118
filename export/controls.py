"""`python -m export controls JOB --out CONTROLS.zip`: synthetic control items for the tablet.

Seed 000 composites generated cells into real backgrounds so that an annotator can be scored
on items of known truth without noticing. Here the cells come from the virtual microscope
(`export.synth`); the generators work ships cGAN and diffusion cells later, and the bundle
format (`appliance.bundles.control_bundle`) names the generator per item, so they fit in.

Per control:
1. a grey image of the job and its human label;
2. its real cells are painted out (OpenCV inpainting of the labelled cells, slightly widened,
   plus the background's own pixel noise), because their outlines are only as good as a person
   drew them and a control's truth must be exact;
3. virtual-microscope cells are cut from a synthetic field and placed at cell-free places of
   the original (where no labelled cell was, with a margin), as many as the image had cells;
4. each cell's contrast is scaled to the job image's own cell contrast (median cell level minus
   median background level) and added with a soft edge; the truth is the cells' masks, exact.
Names continue the job's own naming pattern (e.g. `img_0042.tif` after `img_0041.tif`), so
nothing in a name sets a control apart.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from appliance.bundles.control_bundle import ControlItem, write_control_bundle
from appliance.bundles.training_job import JobItem, read_training_job
from appliance.errors import ApplianceError
from appliance.imageio import write_tiff
from appliance.labels import Label
from export import __version__
from export.synth import synth_sample

GENERATOR = {"name": "virtual-microscope", "kind": "virtual-microscope", "version": __version__}
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[^.]+)?$")


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


def _cells(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(contrast patch with the local background removed, mask) per virtual-microscope cell."""
    sample = synth_sample(rng, 192)
    img = sample.image.astype(np.float32)
    background = float(np.median(img[(sample.cells == 0) & (sample.others == 0)]))
    out = []
    for cid in range(1, int(sample.cells.max()) + 1):
        ys, xs = np.nonzero(sample.cells == cid)
        h, w = img.shape
        if ys.size < 20 or ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1:
            continue  # a cell cut by the field's edge would show a straight side
        y0, y1 = max(ys.min() - 3, 0), min(ys.max() + 4, img.shape[0])
        x0, x1 = max(xs.min() - 3, 0), min(xs.max() + 4, img.shape[1])
        mask = sample.cells[y0:y1, x0:x1] == cid
        out.append((img[y0:y1, x0:x1] - background, mask))
    return out


def compose(
    image: np.ndarray, label: np.ndarray, rng: np.random.Generator, margin: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(control image, exact instance truth) from a real grey image and its label."""
    if image.ndim != 2:
        raise ApplianceError(
            "virtual-microscope controls need single-channel images; colour images need "
            "generator cells"
        )
    real = label > 0
    if not real.any() or real.all():
        raise ApplianceError("the image needs both labelled cells and background")
    src = image.astype(np.float32)
    bg_level = float(np.median(src[~real]))
    contrast = float(np.median(src[real])) - bg_level
    widened = cv2.dilate(real.astype(np.uint8), np.ones((5, 5), np.uint8))
    out = cv2.inpaint(src, widened, 5, cv2.INPAINT_TELEA)
    # inpainting is smooth; give the painted-out places the background's own pixel noise
    residual = src - cv2.GaussianBlur(src, (0, 0), 2.0)
    noise = float(np.std(residual[widened == 0])) if (widened == 0).any() else 0.0
    filled = widened > 0
    out[filled] += rng.normal(0.0, noise, int(filled.sum())).astype(np.float32)
    k = 2 * margin + 1
    blocked = cv2.dilate(real.astype(np.uint8), np.ones((k, k), np.uint8))
    truth = np.zeros(label.shape, np.uint32)
    wanted = len(np.unique(label)) - 1
    cells = _cells(rng)
    synth_contrast = float(np.median([p[m].mean() for p, m in cells])) if cells else 1.0
    scale = contrast / max(synth_contrast, 1e-6)
    h, w = label.shape
    placed = 0
    for idx in rng.permutation(len(cells)):
        if placed >= wanted:
            break
        patch, mask = cells[idx]
        ph, pw = mask.shape
        if ph >= h or pw >= w:
            continue
        grown = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8))
        fits = cv2.erode(
            1 - blocked, grown, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0
        )[: h - ph + 1, : w - pw + 1]
        ys, xs = np.nonzero(fits)
        if ys.size == 0:
            continue
        j = int(rng.integers(0, ys.size))
        y, x = int(ys[j]), int(xs[j])
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)
        out[y : y + ph, x : x + pw] += scale * np.maximum(patch, 0) * np.maximum(soft, mask)
        placed += 1
        truth[y : y + ph, x : x + pw][mask] = placed
        np.maximum(blocked[y : y + ph, x : x + pw], grown, out=blocked[y : y + ph, x : x + pw])
    if placed == 0:
        raise ApplianceError("no cell-free place is large enough for a synthetic cell")
    info = np.iinfo(image.dtype) if image.dtype.kind in "ui" else None
    if info is not None:
        out = np.clip(np.round(out), info.min, info.max)
    return out.astype(image.dtype), truth


def make_controls(
    job_path: Path, out: Path, n: int, seed: int = 0, class_id: int = 1
) -> tuple[str, int]:
    """Write a control bundle of n synthetic controls from the job's grey images."""
    if n < 1:
        raise ApplianceError(f"--n must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    with read_training_job(job_path) as job:
        if not 1 <= class_id < len(job.classes):
            raise ApplianceError(f"{job_path}: class {class_id} is not a class of this job")
        grey: list[JobItem] = [i for i in job.items if len(i.shape) == 2]
        if not grey:
            raise ApplianceError(f"{job_path}: no single-channel images to use as backgrounds")
        names = plausible_names([i.name for i in job.items], n)
        items = []
        with tempfile.TemporaryDirectory(prefix="controls-") as tmp:
            for k in range(n):
                source = grey[int(rng.integers(0, len(grey)))]
                image, truth = compose(source.image(), source.label.instances, rng)
                path = Path(tmp) / f"{k}.tif"
                write_tiff(path, image)
                classes = {int(i): class_id for i in np.unique(truth) if i}
                items.append(
                    ControlItem(
                        name=names[k],
                        image_bytes=path.read_bytes(),
                        suffix=".tif",
                        truth=Label(truth, classes),
                        generator=GENERATOR,
                        background=source.name,
                    )
                )
        bundle_id = write_control_bundle(
            out, items, job.classes, GENERATOR, job.id, ("export", __version__)
        )
    return bundle_id, len(items)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controls",
        help="make a control bundle: synthetic cells in the job's own backgrounds",
        description="Blend virtual-microscope cells into cell-free places of the job's grey "
        "images (their real cells painted out), with exact instance truth, and write a "
        "control bundle the tablet installs with `appliance controls install`.",
    )
    p.add_argument("job", type=Path, help="training-job bundle (.zip)")
    p.add_argument("--out", type=Path, required=True, help="control bundle to write (.zip)")
    p.add_argument("--n", type=int, default=20, help="number of controls (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of backgrounds, cells and places")
    p.add_argument("--class-id", type=int, default=1, help="class of the synthetic cells")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    bundle_id, n = make_controls(args.job, args.out, args.n, args.seed, args.class_id)
    print(f"wrote {args.out}: {n} controls (bundle {bundle_id})")
    return 0
