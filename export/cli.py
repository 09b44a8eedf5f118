"""`python -m export` (also `appliance-export`): the workstation's command line.

Sub-commands: `synth` (virtual microscope) and `train` (training-job bundle → model bundle).
Other sub-commands live in their own modules listed in `COMMAND_MODULES`, each with a
`register(sub)` like the core's CLI areas. Heavy imports (torch, onnx) happen inside handlers,
so `--help` and `synth` stay fast and work without torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli import require_range, run_command
from appliance.errors import ApplianceError
from export.centres import DEFAULT_POINT_SIGMA
from export.targets import DEFAULT_OUTPUT, TRAINABLE

if TYPE_CHECKING:
    from export.train import TrainConfig

COMMAND_MODULES: tuple[str, ...] = (
    "export.demo",
    "export.bundle.cli",
    "export.bundle.sign",
    "export.lab.workstation",
    "export.generators.cli",
    "export.controls",
)


def _synth(args: argparse.Namespace) -> int:
    from export.synth import write_dataset

    require_range("--n", args.n, 1, 100_000)
    require_range("--size", args.size, 32, 8192)
    require_range("--seed", args.seed, 0, 2**32 - 1)
    require_range("--crowding", args.crowding, 0.0, 1.0)
    summary = write_dataset(args.out, args.n, args.size, args.seed, args.kind, args.crowding)
    print(
        f"wrote {summary['n']} images ({summary['cells']} cells, {summary['others']} other "
        f"objects) to {args.out}; Otsu Dice on this set: {summary['otsu_dice']:.3f}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    require_range("--epochs", args.epochs, 1)
    require_range("--batch", args.batch, 1, 4096)
    require_range("--width", args.width, 1, 512)
    require_range("--depth", args.depth, 1, 8)
    require_range("--max-minutes", args.max_minutes, 0.1)
    require_range("--lr", args.lr, 1e-7, 1.0)
    require_range("--min-epoch-items", args.min_epoch_items, 1, 1_000_000)
    require_range("--patience", args.patience, 1)
    require_range("--seed", args.seed, 0, 2**32 - 1)
    from appliance.perturb import PerturbSpec
    from export.train import TrainConfig, train_job
    from export.unet import DEFAULT_DEPTH, DEFAULT_WIDTH

    require_range("--point-sigma", args.point_sigma, 0.5, 64.0)
    require_range("--point-radius", args.point_radius, 1, 256)
    spec = PerturbSpec.parse(args.perturb) if args.perturb else None
    run_dir = args.run_dir or Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.task}"
    if args.upgrade_with and args.targets != "masks":
        raise ApplianceError("--upgrade-with refines the coarse masks of --targets masks")
    config = TrainConfig(
        task=args.task,
        width=args.width or DEFAULT_WIDTH,
        depth=args.depth or DEFAULT_DEPTH,
        epochs=args.epochs,
        batch=args.batch,
        patience=args.patience,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        device=args.device,
        seed=args.seed,
        max_minutes=0 if args.no_time_budget else args.max_minutes,
        min_epoch_items=args.min_epoch_items,
        output="centres" if args.task == "detect" else args.output,
    )
    if args.task == "detect":
        return _train_detector(args, config, run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        relabel = None
        if args.targets == "masks":
            from export.object_masks import mask_targets, upgrader_from_bundle

            upgrader = (
                upgrader_from_bundle(args.upgrade_with, Path(tmp)) if args.upgrade_with else None
            )
            relabel = mask_targets(args.point_radius, upgrader)
        shipped = train_job(
            args.job, args.out, run_dir, config, perturb=spec, quantize=args.quantize,
            relabel=relabel,
        )  # fmt: skip
    if shipped:
        brief = {k: v for k, v in shipped.metrics.items() if k not in ("config", "parity")}
        parity = shipped.metrics["parity"]
        assert isinstance(parity, dict)
        brief["parity"] = {k: parity[k] for k in ("exporter", "max_abs_diff", "argmax_agreement")}
        print(f"wrote {args.out} (run folder {run_dir})")
        print(json.dumps(brief, indent=1))
    return 0


def _train_detector(args: argparse.Namespace, config: TrainConfig, run_dir: Path) -> int:
    from export.train.detector import train_detector_job

    if args.targets == "masks":
        raise ApplianceError("--targets masks trains a segmentation model, not --task detect")
    if args.quantize:
        raise ApplianceError("--quantize is not available for --task detect (fp32 only)")
    out, _, metrics = train_detector_job(
        args.job, args.out, run_dir, config, point_sigma=args.point_sigma
    )
    brief = {k: v for k, v in metrics.items() if k not in ("config", "parity")}
    print(f"wrote {out} (run folder {run_dir})")
    print(json.dumps(brief, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export",
        description="Workstation: virtual microscope, training, ONNX export, model bundles.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "synth",
        help="write virtual-microscope images with instance labels",
        description="Write synthetic microscopy images with their instance masks (and, for "
        "mixed, the second object class), ready for `appliance import --labels`.",
    )
    p.add_argument("out", type=Path, help="output folder (images/, masks/, other/)")
    p.add_argument("--n", type=int, default=40, help="number of images (default 40)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--kind",
        choices=("nuclei", "mixed"),
        default="nuclei",
        help="nuclei only, or nuclei mixed with lobed granulocyte-like cells (default nuclei)",
    )
    p.add_argument(
        "--crowding",
        type=float,
        default=0.0,
        help="share of cells (0-1) that join a cluster of touching and overlapping cells "
        "(default 0: cells only touch by chance)",
    )
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "train",
        help="train a model from a training-job bundle",
        description="Train a U-Net on a training-job bundle, export it to ONNX (checked for "
        "parity with PyTorch) and write a model bundle for `appliance install-model`.",
    )
    p.add_argument("job", type=Path, help="training-job bundle (.zip)")
    p.add_argument(
        "--task",
        choices=("segment", "upgrade", "detect"),
        default="segment",
        help="segment: a pre-label model; upgrade: coarse label in, careful label out; "
        "detect: a cell detector learned from points and boxes (masks count as boxes), "
        "proposing points or boxes on the tablet (docs/training.md)",
    )
    p.add_argument(
        "--targets",
        choices=("labels", "masks"),
        default="labels",
        help="segment and upgrade: labels (default) trains on the masks as drawn; masks also "
        "turns points and boxes into coarse masks (box: inscribed ellipse, point: a disc of "
        "--point-radius), refined by --upgrade-with when given",
    )
    p.add_argument(
        "--point-radius",
        type=int,
        default=8,
        help="--targets masks: radius in pixels of a point's disc (default 8)",
    )
    p.add_argument(
        "--upgrade-with",
        type=Path,
        help="--targets masks: a model bundle whose upgrade model refines the coarse masks",
    )
    p.add_argument(
        "--point-sigma",
        type=float,
        default=DEFAULT_POINT_SIGMA,
        help=f"--task detect: Gaussian sigma in pixels of a point's centre target (default "
        f"{DEFAULT_POINT_SIGMA:g}; a box's follows its size)",
    )
    p.add_argument("--out", type=Path, required=True, help="model bundle to write (.zip)")
    p.add_argument("--epochs", type=int, default=300, help="upper bound (early stopping)")
    p.add_argument("--batch", type=int, help="per process; default: 4 on a CPU, 16 per GPU")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="cosine (default): the rate falls by the last epoch to a twentieth of --lr, "
        "which settles the weights of a long run; constant: --lr throughout",
    )
    p.add_argument("--width", type=int, help="channels at full resolution (default 6)")
    p.add_argument("--depth", type=int, help="resolution levels (default 4)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the GPU when there is one (default)",
    )
    p.add_argument(
        "--perturb",
        help="upgrade task: perturbations drawn every epoch (default "
        "omission=0.7,inclusion=0.7,bias=6 when the job has a second object class, else "
        "omission=0.5,inclusion=0.1,bias=6,salt_pepper=0.1 with Felzenszwalb segments)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-minutes", type=float, help="hard time budget (default 9 on a CPU)")
    budget.add_argument(
        "--no-time-budget",
        action="store_true",
        help="train the given epochs whatever the machine's speed (no time budget, CPU too)",
    )
    p.add_argument(
        "--min-epoch-items",
        type=int,
        default=64,
        help="an epoch repeats a small training set up to this many crops (default 64)",
    )
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience in epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quantize", action="store_true", help="ship an int8 QDQ model")
    p.add_argument(
        "--output",
        choices=("auto", *TRAINABLE),
        default="auto",
        help="output kind; auto (default): "
        + ", ".join(f"{kind} for --task {task}" for task, kind in DEFAULT_OUTPUT.items())
        + ". three_class (background/interior/"
        "boundary) or distance (foreground + distance to the cell edge), both decoded into "
        "separate touching cells by seeded watershed; softmax: classes only, touching cells "
        "merge (see docs/instances.md)",
    )
    p.add_argument("--run-dir", type=Path, help="run folder (default runs/<time>-<task>)")
    p.set_defaults(func=_train)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)
