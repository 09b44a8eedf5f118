"""`python -m export train-generator` and `python -m export mipr` (docs/generators.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-generator",
        help="train a cell generator (cGAN, diffusion or MIPR label-to-image) from a job",
        description="Train a generator on a training-job bundle, export it to ONNX (parity "
        "checked) and write a `generator` model bundle with curves and a sample grid. cgan and "
        "diffusion learn from cell crops centred on each labelled instance (seed 000); "
        "label2image learns from whole labelled images (MIPR, seed 001). Ctrl-C cancels; "
        "nothing is written then.",
    )
    p.add_argument("job", type=Path, help="training-job bundle (.zip)")
    p.add_argument(
        "--kind",
        choices=("cgan", "diffusion", "label2image"),
        required=True,
        help="which generator (docs/generators.md)",
    )
    p.add_argument("--out", type=Path, required=True, help="generator bundle to write (.zip)")
    p.add_argument("--size", type=int, default=64, help="crop side the generator draws (64)")
    p.add_argument("--crop", type=int, help="pixels cut around each cell before resizing")
    p.add_argument("--epochs", type=int, default=200, help="passes over the crops (seed 000)")
    p.add_argument("--steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--batch", type=int, help="default 64 (cgan, diffusion), 16 (label2image)")
    p.add_argument("--width", type=int, help="network width (channels at full size)")
    p.add_argument("--arch", choices=("conv", "mlp"), default="conv", help="cgan generator")
    p.add_argument("--sample-steps", type=int, default=20, help="DDIM steps (diffusion)")
    p.add_argument(
        "--eta",
        type=float,
        default=0.0,
        help="DDIM stochasticity written into the contract: 0 deterministic (default), 1 "
        "DDPM-like fresh noise per step (keeps fine pixel noise)",
    )
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance")
    _budget_options(p, "training", "30 on a CPU, none on a GPU")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA if any"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--run-dir", type=Path, help="run folder (default runs/<time>-<kind>)")
    p.set_defaults(func=_train_generator)

    p = sub.add_parser(
        "mipr",
        help="MIPR: grow a segmentation model's training set from unlabeled images",
        description="Train the label-to-image generator and a segmentation U-Net on the job's "
        "labelled images, then for each iteration pseudo-label the unlabeled images (export the "
        "job with --include-unlabeled), render (image, deformed label) pairs with the generator, "
        "add them and retrain; prints and saves the test Dice per iteration (seed 001, Table 1) "
        "and writes the last U-Net as a prelabel model bundle.",
    )
    p.add_argument("job", type=Path, help="training-job bundle with unlabeled images (.zip)")
    p.add_argument("--iterations", type=int, default=3, help="pseudo-label rounds (3)")
    p.add_argument("--out", type=Path, required=True, help="model bundle to write (.zip)")
    p.add_argument("--seg-epochs", type=int, default=100, help="U-Net epochs per iteration")
    p.add_argument("--seg-width", type=int, help="U-Net width (default 6)")
    p.add_argument("--g-steps", type=int, default=5000, help="label-to-image steps")
    p.add_argument("--g-width", type=int, default=32, help="label-to-image width (32)")
    p.add_argument("--g-size", type=int, default=64, help="label-to-image crop side")
    _budget_options(
        p,
        "each training (the generator and every U-Net)",
        "on a CPU 30 for the generator and 9 per U-Net, none on a GPU",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA if any"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--run-dir", type=Path, help="run folder (default runs/<time>-mipr)")
    p.set_defaults(func=_mipr)


def _budget_options(p: argparse.ArgumentParser, what: str, default: str) -> None:
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--max-minutes",
        type=float,
        help=f"wall-clock budget of {what}: stops after the step that crosses it and keeps "
        f"what was learnt (default {default})",
    )
    budget.add_argument(
        "--no-time-budget",
        action="store_true",
        help="train the given steps/epochs whatever the machine's speed (CPU too)",
    )


def _max_minutes(args: argparse.Namespace) -> float | None:
    """0 (no budget) for --no-time-budget, else --max-minutes (None: the machine's default)."""
    from appliance.cli import require_range

    require_range("--max-minutes", args.max_minutes, 0.1)
    return 0.0 if args.no_time_budget else args.max_minutes


def _run_dir(given: Path | None, name: str) -> Path:
    return given or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"


def _train_generator(args: argparse.Namespace) -> int:
    from appliance.cli import require_range
    from appliance.errors import ApplianceError
    from export.generators.bundle import GeneratorSettings, train_generator

    if args.size < 16 or args.size % 8:
        raise ApplianceError(f"--size must be a multiple of 8 and at least 16, got {args.size}")
    require_range("--eta", args.eta, 0.0, 1.0)
    require_range("--steps", args.steps, 1)
    require_range("--epochs", args.epochs, 1)
    max_minutes = _max_minutes(args)
    settings = GeneratorSettings(
        kind=args.kind,
        size=args.size,
        crop=args.crop,
        steps=args.steps,
        epochs=args.epochs,
        batch=args.batch,
        width=args.width,
        arch=args.arch,
        sample_steps=args.sample_steps,
        eta=args.eta,
        guidance=args.guidance,
        device=args.device,
        seed=args.seed,
        max_minutes=max_minutes,
    )
    run_dir = _run_dir(args.run_dir, args.kind)
    metrics = train_generator(args.job, settings, args.out, run_dir)
    if metrics:
        brief = {k: v for k, v in metrics.items() if k not in ("config", "parity")}
        print(f"wrote {args.out} (run folder {run_dir}; sample grid {run_dir / 'samples.png'})")
        print(json.dumps(brief, indent=1))
    return 0


def _mipr(args: argparse.Namespace) -> int:
    from appliance.cli import require_range
    from export.generators.mipr import MiprConfig, mipr_job

    require_range("--iterations", args.iterations, 1)
    config = MiprConfig(
        iterations=args.iterations,
        seg_epochs=args.seg_epochs,
        seg_width=args.seg_width,
        g_steps=args.g_steps,
        g_width=args.g_width,
        g_size=args.g_size,
        device=args.device,
        seed=args.seed,
        max_minutes=_max_minutes(args),
    )
    run_dir = _run_dir(args.run_dir, "mipr")
    metrics = mipr_job(args.job, args.out, run_dir, config)
    if metrics:
        print(f"wrote {args.out} (run folder {run_dir})")
        for row in metrics["iterations"]:  # type: ignore[attr-defined]
            print(
                f"  MIPR[{row['iteration']}] train images {row['train_images']:4d}  "
                f"test Dice {row['test_dice']:.4f}"
            )
    return 0
