"""Slide sub-commands: list slides and their regions, add regions to annotate."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.store import Project

__all__ = ["cmd_add_region", "cmd_slides", "parse_box", "register"]


def parse_box(text: str) -> tuple[int, int, int, int]:
    """`X,Y,W,H` (level-0 pixels) as integers; one-line error for anything else.

    >>> parse_box("1024, 2048,512,512")
    (1024, 2048, 512, 512)
    """
    parts = text.split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError as exc:
        raise ApplianceError(f"region {text!r}: expected X,Y,W,H in whole pixels") from exc
    return x, y, w, h


def register(sub: argparse._SubParsersAction) -> None:
    """Add the slide sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "slides",
        help="list the project's slides and their regions",
        description="List every stored slide (level-0 size, pyramid levels, µm per pixel) "
        "and its regions (image id, level-0 place and size, who picked it).",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.set_defaults(func=cmd_slides)

    p = sub.add_parser(
        "add-region",
        help="add regions of a stored slide to annotate",
        description="Add regions (level-0 pixels) of a slide already in the project; each "
        "becomes an image the selector serves, read tile by tile from the stored slide.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("slide", help="slide id or file name")
    p.add_argument("regions", nargs="+", metavar="X,Y,W,H", help="regions in level-0 pixels")
    p.add_argument(
        "--origin",
        choices=("lab", "expert"),
        default="lab",
        help="who picked the regions (recorded with each; default lab)",
    )
    p.set_defaults(func=cmd_add_region)


def cmd_slides(args: argparse.Namespace) -> int:
    """`appliance slides`: slides and regions."""
    from appliance.store.slides import regions, slides

    with Project.open(args.dir) as project:
        for s in slides(project):
            mpp = f"  {s.mpp:g} µm/px" if s.mpp else ""
            print(f"slide {s.id}  {s.name}  {s.width}×{s.height}  {s.levels} levels{mpp}")
            for r in regions(project, s.id):
                print(f"  image {r.image_id}  at {r.x},{r.y}  {r.width}×{r.height}  {r.origin}")
    return 0


def cmd_add_region(args: argparse.Namespace) -> int:
    """`appliance add-region`: new regions of a stored slide."""
    from appliance.importer import add_regions
    from appliance.store.slides import find_slide

    boxes = [parse_box(r) for r in args.regions]
    with Project.open(args.dir) as project:
        summary = add_regions(project, find_slide(project, args.slide), boxes, args.origin)
    print(summary.lines()[0])
    return 0
