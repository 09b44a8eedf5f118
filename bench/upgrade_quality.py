"""Seed 003's Table 3.1 on virtual-microscope data, with the paper's protocol.

For each perturbation (70 % omission, 70 % inclusion, bias 6, and 30 % + 30 % + bias 4) an
upgrade network is trained on 10 well-annotated (HQ) images (8 train + 2 validation, seed 003's
80/20) with the perturbation drawn fresh every epoch. As in the paper's table, every column is a
Dice against the ground truth of the held-out TEST set:

- LQ, Upg.: the test set's own labels perturbed once (LQ) and then upgraded (Upg.);
- HQ, HQ+upg., HQ+LQ, LQ only: segmentation networks trained on the HQ set alone, the HQ set
  plus a larger low-quality set after upgrading, the HQ set plus that set as it is, and the
  low-quality set alone (its own 80/20 split, no HQ label anywhere), evaluated on the test set;
- Thrs.: the paper's baseline, ONE global threshold chosen by grid search (steps of 1 % of the
  largest training pixel value) for the best Dice on the training images, applied to the test
  set.

Each figure is the mean ± standard deviation over `--seeds` runs (data, perturbations and
initialisation all change with the seed). Omission and bias use the `nuclei` kind; inclusion
and the combination use `mixed` (HL60-like targets, granulocyte-like others: seed 003's HL60*).

    python bench/upgrade_quality.py            # reduced CPU settings, 3 seeds
    python bench/upgrade_quality.py --small    # a smaller CPU setting (minutes), 3 seeds
    python bench/upgrade_quality.py --full     # paper-like settings, meant for a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import label as components

from appliance.metrics import pooled_dice
from appliance.perturb import PerturbSpec, perturb
from export.data import Sample, sample_from_arrays
from export.synth import SynthSample, synth_samples
from export.train import TrainConfig, predict, train_model

SCENARIOS = (
    ("70% omission", "nuclei", "omission=0.7"),
    ("70% inclusion", "mixed", "inclusion=0.7"),
    ("bias 6", "nuclei", "bias=6"),
    ("30% om. 30% inc. bias 4", "mixed", "omission=0.3,inclusion=0.3,bias=4"),
)
COLUMNS = ("LQ", "Upg.", "HQ", "HQ+upg.", "HQ+LQ", "LQ only", "Thrs.")
PAPER = {  # seed 003 Table 3.1, HL60 rows, same columns
    "70% omission": (0.462, 0.939, 0.823, 0.929, 0.311, 0.311, 0.887),
    "70% inclusion": (0.925, 0.992, 0.913, 0.962, 0.891, 0.89, 0.892),
    "bias 6": (0.857, 0.909, 0.823, 0.923, 0.931, 0.933, 0.887),
    "30% om. 30% inc. bias 4": (0.71, 0.929, 0.913, 0.934, 0.739, 0.745, 0.892),
}


@dataclass(frozen=True)
class Settings:
    """How much data and training each model gets (bounded by epochs, never by time)."""

    name: str
    size: int
    n_lq: int
    n_test: int
    patch: int
    upgrade_epochs: int
    segment_epochs: int
    patience: int
    epoch_items: int


REDUCED = Settings("reduced (CPU)", 256, 20, 10, 128, 60, 30, 15, 64)
SMALL = Settings("small (CPU, minutes)", 128, 10, 6, 64, 20, 10, 10, 32)
FULL = Settings("full (GPU)", 256, 80, 30, 256, 300, 300, 30, 64)
N_HQ = 10


def grid_threshold(train: list[SynthSample]) -> float:
    """Seed 003's baseline: the one threshold, on a grid of 1 % of the largest training pixel
    value, whose foreground has the best pooled Dice on the training images."""
    top = max(float(s.image.max()) for s in train)
    grid = np.arange(0, 101) / 100.0 * top
    truths = [s.cells for s in train]
    scores = [pooled_dice([s.image > t for s in train], truths) for t in grid]
    return float(grid[int(np.argmax(scores))])


def _train(train: list[Sample], val: list[Sample], task: str, spec: str, s: Settings, seed: int):
    config = TrainConfig(
        task=task,
        patch=s.patch,
        epochs=s.upgrade_epochs if task == "upgrade" else s.segment_epochs,
        max_minutes=0,  # no time budget: the epochs decide
        patience=s.patience,
        seed=seed,
        min_epoch_items=s.epoch_items,
        perturb=PerturbSpec.parse(spec) if spec else PerturbSpec(),
    )
    return train_model(train, val, config, progress=False).model


def _segment(model: torch.nn.Module, samples: list[Sample], masks: list[np.ndarray] | None = None):
    """Class maps of a model for samples (with a coarse-mask channel when `masks` is given)."""
    out = []
    for i, sample in enumerate(samples):
        planes = [sample.image] + ([masks[i][None].astype(np.float32)] if masks else [])
        out.append(predict(model, np.concatenate(planes)[None])[0])
    return out


def _relabelled(sample: SynthSample, mask: np.ndarray) -> Sample:
    """The sample with its label replaced by `mask` (connected components as instances)."""
    return sample_from_arrays(sample.image, components(mask > 0).astype(np.uint32))


@dataclass
class _Data:
    """One seed's images of one kind and what does not depend on the perturbation."""

    hq: list[SynthSample]
    lq: list[SynthSample]
    test: list[SynthSample]
    hq_samples: list[Sample]
    test_samples: list[Sample]
    hq_only: float
    threshold: float


def _data(kind: str, s: Settings, seed: int) -> _Data:
    data = list(synth_samples(N_HQ + s.n_lq + s.n_test, s.size, seed, kind))
    hq, lq, test = data[:N_HQ], data[N_HQ : N_HQ + s.n_lq], data[N_HQ + s.n_lq :]
    hq_samples = [sample_from_arrays(d.image, d.cells, d.others) for d in hq]
    test_samples = [sample_from_arrays(d.image, d.cells) for d in test]
    seg_hq = _train(hq_samples[:8], hq_samples[8:], "segment", "", s, seed)
    truths = [d.cells for d in test]
    hq_only = pooled_dice(_segment(seg_hq, test_samples), truths)
    t = grid_threshold(hq + lq)
    threshold = pooled_dice([d.image > t for d in test], truths)
    return _Data(hq, lq, test, hq_samples, test_samples, hq_only, threshold)


def run_scenario(spec: str, d: _Data, s: Settings, seed: int) -> list[float]:
    """The seven columns for one perturbation and seed."""
    pspec = PerturbSpec.parse(spec)
    rng = np.random.default_rng(seed + 1)
    lq_masks = [perturb(x.cells, pspec, rng, others=x.others) > 0 for x in d.lq]
    test_lq = [perturb(x.cells, pspec, rng, others=x.others) > 0 for x in d.test]
    truths = [x.cells for x in d.test]
    upgrader = _train(d.hq_samples[:8], d.hq_samples[8:], "upgrade", spec, s, seed)
    test_upgraded = _segment(upgrader, d.test_samples, test_lq)
    lq_samples = [sample_from_arrays(x.image, x.cells) for x in d.lq]
    upgraded = _segment(upgrader, lq_samples, lq_masks)
    row = [pooled_dice(test_lq, truths), pooled_dice(test_upgraded, truths), d.hq_only]
    for masks in (upgraded, lq_masks):
        extra = [_relabelled(x, m) for x, m in zip(d.lq, masks, strict=True)]
        model = _train(d.hq_samples[:8] + extra, d.hq_samples[8:], "segment", "", s, seed)
        row.append(pooled_dice(_segment(model, d.test_samples), truths))
    lq_only = [_relabelled(x, m) for x, m in zip(d.lq, lq_masks, strict=True)]
    n_val = max(1, round(0.2 * len(lq_only)))
    model = _train(lq_only[n_val:], lq_only[:n_val], "segment", "", s, seed)
    row.append(pooled_dice(_segment(model, d.test_samples), truths))
    row.append(d.threshold)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="paper-like settings (GPU)")
    mode.add_argument("--small", action="store_true", help="a smaller CPU setting (minutes)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = FULL if args.full else SMALL if args.small else REDUCED
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {load:.1f}; device {device}"
    )
    print(
        f"settings: {s.name}; {N_HQ} HQ images (8 train + 2 val), {s.n_lq} LQ, {s.n_test} test, "
        f"{s.size}x{s.size}; crops {s.patch}, {s.epoch_items} crops an epoch; at most "
        f"{s.upgrade_epochs} epochs per upgrade and {s.segment_epochs} per segmentation model, "
        f"patience {s.patience}; seeds {seeds}; every column is Dice on the test set, mean ± sd"
    )
    width = 15
    print(f"{'perturbation':<26}" + "".join(f"{h:>{width}}" for h in COLUMNS))
    start = time.monotonic()
    rows: dict[str, list[list[float]]] = {name: [] for name, _, _ in SCENARIOS}
    for seed in seeds:
        cache: dict[str, _Data] = {}
        for name, kind, spec in SCENARIOS:
            if kind not in cache:
                cache[kind] = _data(kind, s, seed)
            rows[name].append(run_scenario(spec, cache[kind], s, seed))
        print(f"  seed {seed} done after {(time.monotonic() - start) / 60:.1f} min", flush=True)
    for name, _, _ in SCENARIOS:
        runs = np.array(rows[name])
        mean, sd = runs.mean(axis=0), runs.std(axis=0, ddof=1) if len(runs) > 1 else 0 * runs[0]
        cells = [f"{m:.3f} ± {e:.3f}" for m, e in zip(mean, sd, strict=True)]
        print(f"{name:<26}" + "".join(f"{c:>{width}}" for c in cells))
        print(f"{'  seed 003 (HL60)':<26}" + "".join(f"{v:>{width}.3f}" for v in PAPER[name]))
    print(f"total {(time.monotonic() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
