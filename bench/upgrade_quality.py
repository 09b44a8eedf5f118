"""Seed 003's Table 3.1 on virtual-microscope data: does upgrading low-quality labels pay off?

For each perturbation (70 % omission, 70 % inclusion, bias 6, and 30 % + 30 % + bias 4) this
trains an upgrade network on 10 well-annotated images (8 train + 2 validation, seed 003's 80/20)
with the perturbation drawn fresh every epoch, upgrades a larger low-quality set (perturbed once
per image), and trains segmentation networks on HQ only, HQ + upgraded and HQ + LQ. It prints the
Dice of the low-quality and upgraded labels (on the LQ set) and of each segmentation network and
of Otsu (on a held-out test set). Omission and bias use the `nuclei` kind; inclusion and the
combination use `mixed` (HL60-like targets, granulocyte-like others: seed 003's HL60*).

    python bench/upgrade_quality.py            # reduced CPU settings (< 20 min on 2 cores)
    python bench/upgrade_quality.py --full     # paper-like settings, meant for a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from skimage.measure import label as components

from appliance.perturb import PerturbSpec, perturb
from export.data import Sample, sample_from_arrays
from export.synth import SynthSample, otsu_dice, synth_samples
from export.train import TrainConfig, predict, train_model

SCENARIOS = (
    ("70% omission", "nuclei", "omission=0.7"),
    ("70% inclusion", "mixed", "inclusion=0.7"),
    ("bias 6", "nuclei", "bias=6"),
    ("30% om. 30% inc. bias 4", "mixed", "omission=0.3,inclusion=0.3,bias=4"),
)
PAPER = {  # seed 003 Table 3.1, HL60 rows: LQ, upgraded, HQ, HQ+upg., HQ+LQ, threshold
    "70% omission": (0.462, 0.939, 0.823, 0.929, 0.311, 0.887),
    "70% inclusion": (0.925, 0.992, 0.913, 0.962, 0.891, 0.892),
    "bias 6": (0.857, 0.909, 0.823, 0.923, 0.931, 0.887),
    "30% om. 30% inc. bias 4": (0.71, 0.929, 0.913, 0.934, 0.739, 0.892),
}


@dataclass(frozen=True)
class Settings:
    """How much data and training each model gets."""

    name: str
    size: int
    n_lq: int
    n_test: int
    patch: int
    upgrade_epochs: int
    segment_epochs: int
    patience: int
    minutes_cap: float | None  # per model; a safety net on a busy machine, not the normal stop


# Epoch counts, not time, bound the reduced run, so its figures do not depend on machine load.
REDUCED = Settings("reduced (CPU)", 256, 20, 10, 128, 60, 30, 15, 3.0)
FULL = Settings("full (GPU)", 256, 80, 30, 256, 300, 300, 30, None)
N_HQ = 10


def _pooled_dice(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
    inter = sum(int(((p > 0) & (t > 0)).sum()) for p, t in zip(preds, truths, strict=True))
    total = sum(int((p > 0).sum() + (t > 0).sum()) for p, t in zip(preds, truths, strict=True))
    return 2.0 * inter / total if total else 1.0


def _train(train: list[Sample], val: list[Sample], task: str, spec: str, s: Settings, seed: int):
    config = TrainConfig(
        task=task,
        patch=s.patch,
        epochs=s.upgrade_epochs if task == "upgrade" else s.segment_epochs,
        max_minutes=s.minutes_cap,
        patience=s.patience,
        seed=seed,
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


def run_scenario(name: str, kind: str, spec: str, s: Settings, seed: int, cache: dict) -> list:
    if kind not in cache:
        data = list(synth_samples(N_HQ + s.n_lq + s.n_test, s.size, seed, kind))
        hq, lq, test = data[:N_HQ], data[N_HQ : N_HQ + s.n_lq], data[N_HQ + s.n_lq :]
        hq_samples = [sample_from_arrays(d.image, d.cells, d.others) for d in hq]
        test_samples = [sample_from_arrays(d.image, d.cells) for d in test]
        seg_hq = _train(hq_samples[:8], hq_samples[8:], "segment", "", s, seed)
        hq_only = _pooled_dice(_segment(seg_hq, test_samples), [d.cells for d in test])
        otsu = otsu_dice(test)
        cache[kind] = (hq, lq, test, hq_samples, test_samples, hq_only, otsu)
    hq, lq, test, hq_samples, test_samples, hq_only, otsu = cache[kind]
    rng = np.random.default_rng(seed + 1)
    lq_masks = [perturb(d.cells, PerturbSpec.parse(spec), rng, others=d.others) > 0 for d in lq]
    lq_dice = _pooled_dice(lq_masks, [d.cells for d in lq])
    upgrader = _train(hq_samples[:8], hq_samples[8:], "upgrade", spec, s, seed)
    lq_samples = [sample_from_arrays(d.image, d.cells) for d in lq]
    upgraded = _segment(upgrader, lq_samples, lq_masks)
    upg_dice = _pooled_dice(upgraded, [d.cells for d in lq])
    results = []
    for masks in (upgraded, lq_masks):
        extra = [_relabelled(d, m) for d, m in zip(lq, masks, strict=True)]
        model = _train(hq_samples[:8] + extra, hq_samples[8:], "segment", "", s, seed)
        results.append(_pooled_dice(_segment(model, test_samples), [d.cells for d in test]))
    return [lq_dice, upg_dice, hq_only, results[0], results[1], otsu]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="paper-like settings (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    s = FULL if args.full else REDUCED
    cap = "no time cap" if s.minutes_cap is None else f"{s.minutes_cap:g} min cap per model"
    budget = (
        f"at most {s.upgrade_epochs} epochs per upgrade and {s.segment_epochs} per "
        f"segmentation model (64 crops an epoch), {cap}"
    )
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(
        f"settings: {s.name}; device {device}; {N_HQ} HQ images (8 train + 2 val), "
        f"{s.n_lq} LQ, {s.n_test} test, {s.size}x{s.size}; training crops {s.patch}, "
        f"early stopping patience {s.patience}, {budget}; seed {args.seed}"
    )
    header = ("perturbation", "LQ", "Upg.", "HQ", "HQ+upg.", "HQ+LQ", "Otsu")
    print(f"{header[0]:<26}" + "".join(f"{h:>9}" for h in header[1:]))
    cache: dict = {}
    start = time.monotonic()
    for name, kind, spec in SCENARIOS:
        row = run_scenario(name, kind, spec, s, args.seed, cache)
        print(f"{name:<26}" + "".join(f"{v:>9.3f}" for v in row), flush=True)
        paper = PAPER[name]
        print(f"{'  seed 003 (HL60)':<26}" + "".join(f"{v:>9.3f}" for v in paper), flush=True)
    print(f"total {(time.monotonic() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
