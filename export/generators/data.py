"""Generator training data from training-job bundles: cell crops and whole labelled scenes.

Seed 000 (§2.1) trains on single cells cropped from slides, each crop centred on one annotated
cell. `cell_crops` does the same: every instance of every class becomes a square crop of `crop`
pixels centred on its centroid (reflect-padded at image borders), resized to `size`, with that
instance's mask. Pixels are normalised like the segmentation models' inputs
(`export.data.normalise`, percentiles 1..99.8) and scaled to [-1, 1], the generators' range; the
tablet maps generated pixels back to a background's scale with the same percentiles.

MIPR (seed 001) works on whole images: `scenes` gives each labelled image with its class map, and
`unlabeled_images` the images a job carries without labels (`export-job --include-unlabeled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.bundles.training_job import TrainingJob
from appliance.errors import ApplianceError
from export.data import normalise


@dataclass
class CropSet:
    """Cell crops: `images` N×C×S×S in [-1, 1], `masks` N×1×S×S (0/1), `labels` N class indices.

    `classes` are the cell classes (the job's classes without background); label k is the job's
    class k + 1.
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == k).sum()) for k, c in enumerate(self.classes)}

    def class_weights(self) -> np.ndarray:
        """Inverse-frequency weights, mean 1 over the crops (seed 000's answer to imbalance)."""
        counts = np.bincount(self.labels, minlength=len(self.classes)).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(self.classes), 0.0)
        return (w / max(float((w[self.labels]).mean()), 1e-12)).astype(np.float32)

    def subset(self, index: np.ndarray) -> CropSet:
        return CropSet(self.images[index], self.masks[index], self.labels[index], self.classes)


def crop_centred(arr: np.ndarray, cy: float, cx: float, side: int) -> np.ndarray:
    """A side×side window of C×H×W `arr` centred on (cy, cx), reflect-padded where it leaves."""
    half = side // 2
    top, left = round(cy) - half, round(cx) - half
    h, w = arr.shape[-2:]
    pad = max(0, -top, -left, top + side - h, left + side - w)
    if pad:
        width = [(0, 0)] * (arr.ndim - 2) + [(pad, pad), (pad, pad)]
        if pad < min(h, w):
            arr = np.pad(arr, width, mode="reflect")
        else:
            arr = np.pad(arr, width, mode="edge")
        top, left = top + pad, left + pad
    return arr[..., top : top + side, left : left + side]


def _resize(chw: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    if chw.shape[-1] == size:
        return chw
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in chw])


def cell_crops(
    job: TrainingJob,
    size: int = 64,
    crop: int | None = None,
    splits: tuple[str, ...] = ("train", "val"),
    min_area: int = 12,
) -> CropSet:
    """One crop per labelled instance (area >= `min_area`) of the chosen splits."""
    crop = crop or size
    classes = list(job.classes[1:])
    images, masks, labels = [], [], []
    for item in job.items:
        if item.split not in splits:
            continue
        label = item.label
        image = normalise(item.image())
        for p in label.props():
            if p.area < min_area:
                continue
            cls = label.class_of(p.id) - 1
            if not 0 <= cls < len(classes):
                continue
            cy, cx = p.centroid
            img = crop_centred(image, cy, cx, crop)
            mask = crop_centred((label.instances == p.id)[None].astype(np.float32), cy, cx, crop)
            images.append(_resize(img, size) * 2.0 - 1.0)
            masks.append((_resize(mask, size, nearest=True) > 0.5).astype(np.float32))
            labels.append(cls)
    if not labels:
        raise ApplianceError(f"{job.path}: no labelled cells to train a generator on")
    return CropSet(
        np.stack(images).astype(np.float32),
        np.stack(masks).astype(np.float32),
        np.asarray(labels, np.int64),
        classes,
    )


@dataclass
class Scene:
    """A whole image (C×H×W in [-1, 1]) with its class map (H×W int64; 0 background)."""

    image: np.ndarray
    target: np.ndarray


def scenes(job: TrainingJob, splits: tuple[str, ...]) -> list[Scene]:
    """The job's labelled images of `splits`, normalised, with class maps."""
    return [
        Scene(normalise(item.image()) * 2.0 - 1.0, item.label.semantic().astype(np.int64))
        for item in job.items
        if item.split in splits
    ]


def unlabeled_images(job: TrainingJob) -> list[np.ndarray]:
    """The job's unlabelled images, normalised to [-1, 1] (C×H×W)."""
    return [normalise(u.image()) * 2.0 - 1.0 for u in job.unlabeled]


def one_hot(target: np.ndarray, n_classes: int) -> np.ndarray:
    """K×H×W float32 one-hot planes of an H×W class map (the label-to-image input)."""
    return (np.arange(n_classes)[:, None, None] == target[None]).astype(np.float32)
