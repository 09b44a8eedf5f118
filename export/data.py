"""Training samples, augmentation and the upgrade task's fresh perturbations.

A `Sample` holds one normalised image with its target class map and what the upgrade task needs
(the target instances to perturb and the other objects to include). Images are normalised with
`appliance.imageio.percentile_normalise`, the function the tablet applies before inference, so
both sides feed the network the same scale.

Randomness (crops, flips, rot90, intensity jitter, perturbations) comes from a generator seeded by
(seed, epoch, sample index): a run is reproducible whatever the number of loader workers or GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from appliance.assist.instances import INSTANCE_KINDS, boundaries
from appliance.bundles.training_job import TrainingJob
from appliance.contract import Normalisation
from appliance.errors import ApplianceError
from appliance.imageio import percentile_normalise
from appliance.labels import Label
from appliance.perturb import PerturbSpec, felzenszwalb_objects, perturb
from export.outputs import aux_target, check_output
from export.targets import merge_touching
from export.votes import annotator_weights, weight_maps

TILE_MULTIPLE = 16
# Share of touching coarse cells an instance-aware upgrade model sees merged into one blob: the
# quick annotator's most common instance error, which the model must learn to undo.
MERGE_TOUCHING = 0.5
NORMALISATION = Normalisation("percentile", 1.0, 99.8)


@dataclass
class Sample:
    """One training or validation image with its labels.

    `image` is float32 C×H×W in [0, 1]; `target` the class map (H×W, int64); `instances` the
    target objects' instance map (perturbed for the upgrade task); `others` the other objects
    (inclusion candidates; None → Felzenszwalb segments); `weights` the VotesLoss weight per
    pixel (H×W, `export.votes`; None when the image has one annotator); `coarse` a fixed
    low-quality instance map to upgrade instead of a fresh perturbation (evaluation on real
    low-quality labels).
    """

    image: np.ndarray
    target: np.ndarray
    instances: np.ndarray
    others: np.ndarray | None = None
    weights: np.ndarray | None = None
    coarse: np.ndarray | None = None


def normalise(image: np.ndarray) -> np.ndarray:
    """Stored pixels (H×W or H×W×C, any dtype) → float32 C×H×W in [0, 1]."""
    norm = percentile_normalise(image, NORMALISATION.low, NORMALISATION.high)
    return norm[None] if norm.ndim == 2 else np.ascontiguousarray(norm.transpose(2, 0, 1))


def sample_from_arrays(
    image: np.ndarray,
    instances: np.ndarray,
    others: np.ndarray | None = None,
    classes: dict[int, int] | None = None,
) -> Sample:
    """Build a sample from raw pixels and an instance map (all instances class 1 by default)."""
    label = Label(instances, classes or {})
    return Sample(
        image=normalise(image),
        target=label.semantic().astype(np.int64),
        instances=label.instances,
        others=None if others is None else others.astype(np.uint32),
    )


def pad_to_multiple(arr: np.ndarray, multiple: int = TILE_MULTIPLE) -> np.ndarray:
    """Reflect-pad the last two axes up to a multiple (the tablet runtime pads the same way)."""
    h, w = arr.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return arr
    pad = [(0, 0)] * (arr.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(arr, pad, mode="reflect" if min(h, w) > max(ph, pw) else "edge")


def _rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch + 1, index]))


def coarse_instances(
    sample: Sample, spec: PerturbSpec, rng: np.random.Generator | None, merge: float = 0.0
) -> np.ndarray:
    """The upgrade model's coarse label: the sample's fixed one or a fresh perturbation.

    `merge` > 0 also joins touching perturbed cells into blobs (`merge_touching`).
    """
    if sample.coarse is not None:
        return np.asarray(sample.coarse).astype(np.uint32)
    if rng is None:
        raise ApplianceError("an upgrade sample without a coarse mask needs a perturbation seed")
    image = sample.image.mean(axis=0) if sample.others is None else None
    coarse = perturb(sample.instances, spec, rng, others=sample.others, image=image)
    return merge_touching(coarse, merge, rng) if merge > 0 else coarse


def coarse_planes(coarse: np.ndarray, boundary: bool) -> list[np.ndarray]:
    """The upgrade input's extra planes: coarse foreground, and its cells' edges if `boundary`.

    The same planes as the tablet's `appliance.assist.contract.model_input`.
    """
    planes = [(coarse > 0).astype(np.float32)[None]]
    if boundary:
        planes.append(boundaries(coarse).astype(np.float32)[None])
    return planes


def _with_candidates(sample: Sample) -> Sample:
    """The sample with Felzenszwalb inclusion candidates when it has no other objects.

    Segmenting takes a noticeable fraction of a second per image, and the candidates depend only
    on the image and its good label, so they are computed once, not every epoch.
    """
    if sample.others is not None or sample.coarse is not None:
        return sample
    others = felzenszwalb_objects(sample.image.mean(axis=0), sample.instances)
    return replace(sample, others=others)


class SegDataset(Dataset):
    """Model inputs and targets for the segmentation or upgrade task.

    Training items are random square crops of `patch` pixels (reflect-padded when smaller) with
    flips, rot90 and intensity jitter; evaluation items are whole images padded to a multiple of
    16 with no augmentation. Upgrade items get a perturbation drawn fresh every epoch (seed 003,
    Algorithm 1) in training and a fixed one (epoch-independent seed) in evaluation. For an
    instance output kind, upgrade items also carry the coarse cells' edges as a channel and some
    touching coarse cells merged, and every item the kind's target (`aux`). An epoch
    holds at least `min_items` items (the list repeated), so tiny sets still give several steps
    per epoch and early stopping sees a meaningful validation interval.
    """

    def __init__(
        self,
        samples: list[Sample],
        task: str,
        spec: PerturbSpec | None = None,
        train: bool = True,
        patch: int = 256,
        seed: int = 0,
        min_items: int = 1,
        output: str = "softmax",
    ) -> None:
        if task not in ("segment", "upgrade"):
            raise ApplianceError(f"unknown task {task!r}: expected segment or upgrade")
        if not samples:
            raise ApplianceError(f"no {'training' if train else 'validation'} images")
        self.spec = spec or PerturbSpec()
        if task == "upgrade" and self.spec.inclusion:
            samples = [_with_candidates(s) for s in samples]
        self.samples, self.task, self.train = samples, task, train
        self.output = check_output(output)
        self.boundary = task == "upgrade" and output in INSTANCE_KINDS
        smallest = min(min(s.target.shape) for s in samples)
        # crops never exceed the smallest image (rounded down to the tile multiple)
        self.patch = max(min(patch, smallest - smallest % TILE_MULTIPLE), TILE_MULTIPLE)
        self.seed, self.epoch = seed, 0
        self.length = max(len(samples), min_items) if train else len(samples)
        self.has_votes = any(s.weights is not None for s in samples)

    def set_epoch(self, epoch: int) -> None:
        """Fresh crops, augmentations and perturbations for every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item `index`, or `(epoch, index)` as `EpochSampler` sends it: loader workers hold
        their own copy of the dataset, so the epoch must travel with the index to reach them."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.samples[index % len(self.samples)]
        rng = _rng(self.seed, epoch if self.train else -1, index)
        planes = [sample.image]
        if self.task == "upgrade":
            merge = MERGE_TOUCHING if self.boundary else 0.0
            coarse = coarse_instances(sample, self.spec, rng, merge)
            planes.extend(coarse_planes(coarse, self.boundary))
        x = np.concatenate(planes, axis=0).astype(np.float32)
        weights = sample.weights
        if weights is None:
            weights = np.ones(sample.target.shape, np.float32)
        aligned = [sample.target.astype(np.int64), weights]
        if self.output != "softmax":
            aligned.append(sample.instances.astype(np.int64))
        if self.train:
            x, aligned = self._augment(x, aligned, rng, n_image=sample.image.shape[0])
        else:
            x, aligned = pad_to_multiple(x), [pad_to_multiple(a) for a in aligned]
        y, weights = aligned[0], aligned[1]
        aux = aux_target(self.output, aligned[2] if len(aligned) > 2 else y)
        return {
            "x": torch.from_numpy(np.ascontiguousarray(x)),
            "y": torch.from_numpy(np.ascontiguousarray(y)),
            "aux": torch.from_numpy(np.ascontiguousarray(aux)),
            "weights": torch.from_numpy(np.ascontiguousarray(weights)),
            "has_votes": torch.tensor(sample.weights is not None),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def _augment(
        self,
        x: np.ndarray,
        aligned: list[np.ndarray],
        rng: np.random.Generator,
        n_image: int,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The same crop, rot90 and flip for the input and every `aligned` map; jitter on x."""
        p = self.patch
        h, w = aligned[0].shape[-2:]
        if h < p or w < p:  # only images under one tile: pad up to it
            x, aligned = pad_to_multiple(x, p), [pad_to_multiple(a, p) for a in aligned]
            h, w = aligned[0].shape[-2:]
        top, left = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
        arrays = [a[..., top : top + p, left : left + p] for a in (x, *aligned)]
        k = int(rng.integers(0, 4))
        flip = bool(rng.integers(0, 2))
        arrays = [np.rot90(a, k, axes=(-2, -1)) for a in arrays]
        if flip:
            arrays = [a[..., ::-1] for a in arrays]
        gain, offset = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
        x = arrays[0].copy()
        x[:n_image] = np.clip(x[:n_image] * gain + offset, 0.0, 1.0)
        return x, arrays[1:]


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled `(epoch, index)` keys for one rank of `world`.

    The order is a permutation seeded by (seed, epoch), the same on every rank; rank r takes
    every world-th item of it, after the list is padded by wrapping to a multiple of `world`,
    so all ranks run the same number of steps. The epoch travels with each index, so worker
    processes (persistent or not) draw that epoch's crops and perturbations, and runs with 0
    or N workers see the same batches.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world}")
        self.length, self.seed, self.rank, self.world = length, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Items per rank: the padded total divided among the ranks."""
        return -(-self.length // self.world)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        padded = np.resize(order, len(self) * self.world)  # wraps around, as np.resize does
        for index in padded[self.rank :: self.world]:
            yield self.epoch, int(index)


def samples_from_job(
    job: TrainingJob,
    task: str,
    relabel: Callable[[np.ndarray, Label], Label] | None = None,
) -> tuple[dict[str, list[Sample]], list[str]]:
    """Samples per split ("train", "val", "test") and the class names the model will predict.

    `relabel` turns each item's label into the one trained on (`--targets masks`:
    `export.object_masks.mask_targets`); by default the masks are trained on as they are.

    The segmentation model predicts every class of the job. The upgrade model is binary (seed
    003): its target is class 1, instances of any other class are the "other objects" that the
    inclusion perturbation plants (none → Felzenszwalb segments). Items keep their job split.
    """
    if task not in ("segment", "upgrade"):
        raise ApplianceError(f"{job.path.name}: unknown task {task!r}: expected segment or upgrade")
    classes = list(job.classes) if task == "segment" else ["background", job.classes[1]]
    splits: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    made: list[tuple[str, Sample]] = []
    voted: list[tuple[Label, list[Label], list[float]]] = []
    for item in job.items:
        label = item.label if relabel is None else relabel(item.image(), item.label)
        semantic = label.semantic().astype(np.int64)
        votes = item.votes
        others = None
        if task == "upgrade":
            others_mask = semantic >= 2
            others = np.where(others_mask, label.instances, 0) if len(job.classes) > 2 else None
            instances = np.where(semantic == 1, label.instances, 0)
            semantic = (semantic == 1).astype(np.int64)
            votes = [Label(np.where(v.semantic() == 1, v.instances, 0)) for v in votes]
        else:
            instances = label.instances
        weights = annotator_weights(job.annotator_scores, item.vote_authors)
        voted.append((Label(instances), votes, weights))
        coarse = item.coarse
        made.append(
            (
                item.split,
                Sample(
                    image=normalise(item.image()),
                    target=semantic,
                    instances=instances.astype(np.uint32),
                    others=None if others is None else others.astype(np.uint32),
                    coarse=None if coarse is None or item.split == "train" else coarse.instances,
                ),
            )
        )
    for (split, sample), weight_map in zip(made, weight_maps(voted), strict=True):
        splits[split].append(replace(sample, weights=weight_map))
    return splits, classes
