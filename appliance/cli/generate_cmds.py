"""`appliance generate`: synthetic cells from the installed generator (docs/generators.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["generate", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "generate",
        help="draw synthetic cells of one class with the installed generator",
        description="Sample N cells of a class from the project's active generator model "
        "(install a generator bundle first) and write each as an 8-bit PNG with its mask "
        "(cell_0000.png, cell_0000_mask.png). Mask-conditioned generators follow real outlines "
        "of that class from the project's labels (random outlines when there are none); "
        "label-to-image generators rearrange pixels of random crops of the project's images.",
    )
    p.add_argument("project", type=Path, metavar="DIR", help="project folder")
    p.add_argument(
        "--class", dest="class_name", required=True, metavar="NAME", help="cell class to draw"
    )
    p.add_argument("--n", type=int, default=8, help="number of cells (default 8)")
    p.add_argument("--out", type=Path, required=True, metavar="FOLDER", help="output folder")
    p.add_argument("--size", type=int, help="side in pixels (default: the generator's own)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=generate)


def generate(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from appliance.cli import require_range
    from appliance.errors import ApplianceError
    from appliance.generators.runtime import Generator, project_masks
    from appliance.generators.sources import source_crops
    from appliance.store import Project

    require_range("--n", args.n, 1)
    if args.out.exists() and not args.out.is_dir():
        raise ApplianceError(f"{args.out}: exists and is not a folder")
    rng = np.random.default_rng(args.seed)
    with Project.open(args.project) as project:
        gen = Generator.from_project(project, args.threads)
        c = gen.contract
        c.class_index(args.class_name, str(args.project))
        size = args.size or c.size
        masks = project_masks(project, args.class_name, args.n, size, rng)
        sources = source_crops(project, args.n, size, rng) if c.kind == "label2image" else None
        cells = []
        for start in range(0, args.n, 8):
            k = min(8, args.n - start)
            cells += gen.sample(
                args.class_name,
                k,
                rng,
                masks=None if masks is None else masks[start : start + k],
                sources=None if sources is None else sources[start : start + k],
                size=size,
            )
            print(f"generated {len(cells)}/{args.n}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, cell in enumerate(cells):
        pixels = (np.clip(cell.pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
        if pixels.ndim == 3:
            pixels = pixels[..., ::-1]  # OpenCV writes BGR
        cv2.imwrite(str(args.out / f"cell_{i:04d}.png"), pixels)
        cv2.imwrite(str(args.out / f"cell_{i:04d}_mask.png"), cell.mask.astype(np.uint8) * 255)
    print(f"wrote {len(cells)} {args.class_name} cells ({c.kind}, {size}×{size}) to {args.out}")
    return 0
