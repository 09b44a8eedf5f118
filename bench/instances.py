"""Instances, not blobs: how well each output kind keeps touching cells apart.

Trains today's softmax model (instances = connected components) and both instance-aware
candidates (`three_class`, `distance`; decoded by seeded watershed on the tablet) with the same
data, width, depth and epochs, then scores them on held-out virtual-microscope images with dense
touching clusters (seeds never used in training), next to Otsu with and without the
distance-transform split. Figures: instance F1 at IoU 0.5, COCO mask AP 0.5:0.95 (pycocotools)
and pooled foreground Dice. Goal (issue 11): F1 ≥ 0.95 with Dice no lower than today's.

With `--task upgrade` it trains the three kinds as upgrade models instead (coarse label from
omission, inclusion and bias, and touching coarse cells merged into blobs for the instance kinds:
the softmax model gets no merge channel, it never sees instances) and scores the refined labels.

    nice python bench/instances.py [--task segment|upgrade] [--epochs 400] [--train 160]

Each instance kind's seed parameters are chosen on its validation images (`export.decoding`,
as `python -m export train` does before it writes the contract), never on the held-out set.
Three models train side by side, one thread each: about 30 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.assist.contract import Contract, decode_label, probabilities
from appliance.assist.instances import INSTANCE_KINDS, default_decoding
from appliance.assist.prelabel import otsu
from appliance.contract import Value
from appliance.perturb import PerturbSpec, perturb
from bench._machine import table
from export.data import SegDataset, coarse_planes, pad_to_multiple, sample_from_arrays
from export.decoding import GRID, tune_decoding
from export.instance_metrics import coco_ap, dice, f1_at
from export.synth import synth_samples
from export.targets import merge_touching
from export.train import TrainConfig, train_model

KINDS = ("softmax", "three_class", "distance")
TRAIN_SEED, TEST_SEED = 11, 9011  # the held-out images come from a seed training never saw
GOAL_F1 = 0.95
COARSE = PerturbSpec(omission=0.3, inclusion=0.0, bias=3)


def _contract(kind: str, task: str, decoding: dict[str, Value] | None = None) -> Contract:
    raw: dict[str, object] = {
        "input_name": "image",
        "output_name": "logits",
        "input_channels": 1,
        "mask_channel": task == "upgrade",
        "output_kind": kind,
        "classes": ["background", "nucleus"],
    }
    if kind in INSTANCE_KINDS:
        raw["decoding"] = decoding or default_decoding(kind)
        raw["boundary_channel"] = task == "upgrade"
    return Contract.parse(raw, kind)


@torch.no_grad()
def _output(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The network's raw output for one C×H×W input."""
    h, w = x.shape[1:]
    return model(torch.from_numpy(pad_to_multiple(x)[None].copy()))[0, :, :h, :w].numpy()


def _instances(logits: np.ndarray, contract: Contract) -> np.ndarray:
    """The tablet's decoding of a model's output."""
    return decode_label(logits, probabilities(logits, contract), contract).instances


def _coarse(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A quick annotator's label: some cells missed, edges off, touching cells as one blob."""
    return merge_touching(perturb(cells, COARSE, rng), 1.0, rng)


def _train_and_predict(
    kind: str, args: argparse.Namespace, coarse: list[np.ndarray]
) -> tuple[str, list[np.ndarray], int, str, float]:
    """One kind, in its own process (one torch thread): train, then decode the test images."""
    torch.set_num_threads(1)
    data = list(synth_samples(args.train, 256, TRAIN_SEED, crowding=args.crowding))
    samples = [sample_from_arrays(d.image, d.cells, d.others) for d in data]
    n_val = max(2, len(samples) // 6)
    config = TrainConfig(
        task=args.task,
        epochs=args.epochs,
        patience=args.epochs,
        patch=128,
        min_epoch_items=32,
        max_minutes=args.minutes,
        output=kind,
        seed=0,
        perturb=COARSE,
        **({"width": args.width} if args.width else {}),
    )
    t0 = time.monotonic()
    result = train_model(samples[n_val:], samples[:n_val], config, progress=False)
    seconds = time.monotonic() - t0
    tuned = None
    if kind in INSTANCE_KINDS:  # as `export train` does: the seed parameters that suit the model
        val = SegDataset(samples[:n_val], args.task, COARSE, False, 128, 0, output=kind)
        outs = []
        for i, sample in enumerate(val.samples):
            h, w = sample.target.shape
            outs.append(_output(result.model, val[i]["x"].numpy())[:, :h, :w])
        tuned = tune_decoding(outs, [s.instances for s in val.samples], kind, 2)
    contract = _contract(kind, args.task, tuned.decoding if tuned else None)
    preds = []
    test = synth_samples(args.test, 256, TEST_SEED, crowding=args.crowding)
    for i, d in enumerate(test):
        planes = [sample_from_arrays(d.image, d.cells).image]
        if args.task == "upgrade":
            planes += coarse_planes(coarse[i], kind in INSTANCE_KINDS)
        preds.append(_instances(_output(result.model, np.concatenate(planes)), contract))
    return kind, preds, result.epochs_run, result.stopped, seconds, tuned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("segment", "upgrade"), default="segment")
    parser.add_argument("--train", type=int, default=160, help="training images (256²)")
    parser.add_argument("--test", type=int, default=12, help="held-out images (256²)")
    parser.add_argument("--crowding", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=400, help="per model (the same for all)")
    parser.add_argument(
        "--minutes", type=float, default=0.0, help="safety cap per model (default 0: none)"
    )
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    test = list(synth_samples(args.test, 256, TEST_SEED, crowding=args.crowding))
    truths = [d.cells for d in test]
    rng = np.random.default_rng(TEST_SEED)
    coarse = [_coarse(d.cells, rng) for d in test] if args.task == "upgrade" else []
    rows: list[tuple[str, str, str, str]] = []
    results: dict[str, tuple[float, float, float, float]] = {}

    def score(name: str, preds: list[np.ndarray], seconds: float = 0.0) -> None:
        results[name] = (f1_at(truths, preds), coco_ap(truths, preds), dice(truths, preds), seconds)

    if args.task == "segment":
        score("Otsu, connected components", [otsu(d.image, split=False).instances for d in test])
        score("Otsu + distance-transform watershed", [otsu(d.image).instances for d in test])
    else:
        score("coarse label as given", coarse)
    # the kinds train side by side, one process and one thread each, on the same data
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(kinds), mp_context=ctx) as pool:
        futures = [pool.submit(_train_and_predict, k, args, coarse) for k in kinds]
        for future in futures:
            kind, preds, epochs, stopped, seconds, tuned = future.result()
            name = "today: softmax, connected components" if kind == "softmax" else kind
            if tuned is not None:
                chosen = ", ".join(f"{k} {tuned.decoding[k]}" for k in GRID[kind])
                name += f"; decoding chosen on val ({chosen})"
            score(f"{name} ({epochs} ep, stopped by {stopped})", preds, seconds)
            print(f"{kind}: {results[list(results)[-1]]}", flush=True)
    base = next((v for k, v in results.items() if k.startswith("today")), None)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    rows.append(("load average (1, 5, 15 min)", load, "< 1 for trustworthy timings", ""))
    rows.append(
        (
            "held-out set",
            f"{len(test)} images 256², crowding {args.crowding}, seed {TEST_SEED}, "
            f"{sum(int(t.max()) for t in truths)} cells",
            "",
            "",
        )
    )
    for name, (f1, ap, dc, secs) in results.items():
        goal = f"F1 ≥ {GOAL_F1}, Dice ≥ today's"
        verdict = ""
        if base is not None:
            verdict = f"F1 {f1 / max(base[0], 1e-9):.2f}× today's, Dice {dc - base[2]:+.3f}"
        trained = f", trained {secs:.0f} s" if secs else ""
        value = f"F1 {f1:.3f} · AP {ap:.3f} · Dice {dc:.3f}{trained}"
        rows.append((name, value, goal, verdict))
    print(table(f"instances ({args.task}): F1 at IoU 0.5, COCO AP 0.5:0.95, Dice", rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
