"""`python -m export bundle`: wrap an existing ONNX model as a model bundle for the tablet."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bundle` to the workstation's parser."""
    p = sub.add_parser(
        "bundle",
        help="wrap an ONNX model you already have as a verified model bundle",
        description="Check an ONNX model against its I/O contract, run it through the "
        "tablet's runtime on a training job's test images (or on virtual-microscope images), "
        "record its latency at 512² on 2 threads and, with --job, its Dice and instance F1, "
        "then write a model bundle the tablet installs with `appliance install-model`. A model "
        "the contract cannot describe is refused with the field that does not fit.",
    )
    p.add_argument("--onnx", type=Path, help="the ONNX model (one file, no external data)")
    p.add_argument(
        "--role",
        choices=("prelabel", "upgrade", "detector"),
        default="prelabel",
        help="prelabel: image in; upgrade: image and coarse mask in; detector: image in, cell "
        "centres out (output kind 'centres') (default prelabel)",
    )
    p.add_argument("--contract", type=Path, help="the model's I/O contract, a JSON file")
    p.add_argument("--out", type=Path, help="model bundle to write (.zip)")
    p.add_argument("--job", type=Path, help="training-job bundle whose test split to score on")
    p.add_argument("--name", help="model name shown on the tablet (default: the file's stem)")
    p.add_argument(
        "--print-contract",
        action="store_true",
        help="print a contract to start from, for --role, and exit",
    )
    p.set_defaults(func=_bundle)


def _bundle(args: argparse.Namespace) -> int:
    from appliance.errors import ApplianceError
    from export.bundle.wrap import contract_template, wrap_onnx

    if args.print_contract:
        print(contract_template(args.role))
        return 0
    missing = [f"--{n}" for n in ("onnx", "contract", "out") if getattr(args, n) is None]
    if missing:
        raise ApplianceError(f"bundle needs {', '.join(missing)} (see --help)")
    report = wrap_onnx(
        args.onnx, role=args.role, contract=args.contract, out=args.out, job=args.job,
        name=args.name,
    )  # fmt: skip
    print("\n".join(report.lines()))
    return 0
