"""Project sub-commands: init, import, status, export-coco, log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.imageio import DEFAULT_MAX_PIXELS
from appliance.store import Project

__all__ = [
    "cmd_check",
    "cmd_export_coco",
    "cmd_import",
    "cmd_init",
    "cmd_log",
    "cmd_status",
    "register",
]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the project and store sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "init",
        help="create a project folder",
        description="Create a project: DIR/project.db and DIR/images/.",
    )
    p.add_argument("dir", type=Path, help="project folder (created if missing)")
    p.add_argument(
        "--classes", required=True, help="comma-separated class names, e.g. nucleus,debris"
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "import",
        help="import images (and optionally labels)",
        description="Import image files or folders (PNG, JPEG, TIFF incl. multi-page, BMP), "
        "whole slides (SVS, NDPI, SCN, pyramidal/OME-TIFF: stored once, annotated as regions) "
        "and microscope files (CZI, ND2, LIF, OME-Zarr: one channel of one series, or of every "
        "series, as stacks; see --channel and --series). "
        "Each folder becomes a sequence in natural order. Bad files are reported and skipped; "
        "the exit status is 1 when any file failed.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    p.add_argument(
        "--labels",
        type=Path,
        help="masks (file or folder, matched to images by file stem; they replace masks and "
        "keep points and boxes), a COCO JSON file, or QuPath GeoJSON (FILE.geojson or a "
        "folder of them, matched by stem; the whole label: masks, points, boxes)",
    )
    p.add_argument("--author", default="import", help="author recorded on imported labels")
    p.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="X,Y,W,H",
        help="a region of every slide imported (SVS, NDPI, SCN, pyramidal TIFF) to annotate, "
        "in level-0 pixels (repeat for several); without it, regions are found on the tissue",
    )
    p.add_argument(
        "--channel",
        default="0",
        metavar="N|NAME",
        help="channel of microscope files (CZI, ND2, LIF, OME-Zarr) to import, by index or "
        "name (default 0; the import lists the file's channels); with --series all it is "
        "looked up in each series",
    )
    p.add_argument(
        "--series",
        default="0",
        metavar="N|NAME|all",
        help="series of microscope files holding several (a LIF's images, an ND2's XY "
        "positions, a CZI's scenes) to import, by index or name; 'all' imports every series, "
        "each its own stack (default 0, the first; the import names the series left out)",
    )
    p.add_argument(
        "--tissue-regions",
        type=int,
        default=8,
        metavar="N",
        help="how many square regions to take from each slide's tissue (default 8)",
    )
    p.add_argument(
        "--region-size",
        type=int,
        default=1024,
        metavar="PX",
        help="side of the tissue regions in level-0 pixels (default 1024, at most 4096)",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="let imported labels empty or shrink an image's newest label (by default such "
        "images are skipped and listed; older versions are kept either way)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images larger than this many pixels (default 2**28)",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "status",
        help="counts of images, labels, classes, sequences",
        description="Print the project's counts: images, labeled images, label versions, "
        "classes, sequences, annotation time and installed models.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "export-coco",
        help="write the newest label of each image as COCO JSON",
        description="Write the newest label version of every labeled image as COCO JSON "
        "(RLE segmentations; the instance id is kept in each annotation's instance_id).",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("out", type=Path, help="output .json file")
    p.set_defaults(func=cmd_export_coco)

    p = sub.add_parser(
        "check",
        help="integrity check of a project (database, originals, leftovers)",
        description="Check the database (SQLite integrity_check), decode every label version, "
        "recompute the sha256 of every stored original, and list orphan files and leftovers "
        "of interrupted writes. With --repair, remove the leftovers and orphans (never a row "
        "or a label). A missing original is restored by importing the same file again. Exit "
        "status 1 when problems remain.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("--repair", action="store_true", help="remove leftovers and orphan files")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "log",
        help="version history of one image's label",
        description="List every label version of one image, oldest first: author, source, "
        "time, seconds spent and number of objects.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("image", help="image id, file name or sha256 prefix")
    p.set_defaults(func=cmd_log)


def cmd_init(args: argparse.Namespace) -> int:
    """`appliance init`: create a project."""
    with Project.create(args.dir, args.classes.split(",")) as project:
        names = ", ".join(project.classes().values())
    print(f"created project {args.dir} with classes {names}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """`appliance import`: import images (and labels); exit status 1 when some failed."""
    from appliance.importer import import_paths, printable
    from appliance.label_io import import_labels

    if args.labels is not None and not args.labels.exists():
        raise ApplianceError(f"{printable(args.labels)}: no such file or folder")
    if args.labels is not None and not (args.labels.is_file() or args.labels.is_dir()):
        raise ApplianceError(f"{printable(args.labels)}: not a regular file or folder")
    if args.max_pixels < 1:
        raise ApplianceError(f"--max-pixels {args.max_pixels}: must be a positive pixel count")
    from appliance.cli import require_range
    from appliance.cli.slide_cmds import parse_box
    from appliance.importer import MAX_REGION_SIDE, SlideRegions

    require_range("--tissue-regions", args.tissue_regions, 0, 10_000)
    require_range("--region-size", args.region_size, 16, MAX_REGION_SIDE)
    want = SlideRegions(
        tuple(parse_box(r) for r in args.region), args.tissue_regions, args.region_size
    )
    with Project.open(args.dir) as project:
        summary = import_paths(
            project,
            args.paths,
            max_pixels=args.max_pixels,
            slide_regions=want,
            channel=args.channel,
            series=None if args.series == "all" else args.series,
        )
        lines = summary.lines()
        failed = bool(summary.failed)
        if args.labels is not None:
            label_summary = import_labels(
                project, args.labels, author=args.author, replace=args.replace
            )
            lines += label_summary.lines()
            failed = failed or bool(label_summary.failed)
    print(lines[0])
    for line in lines[1:]:
        print(line, file=sys.stderr if line.startswith("failed") else sys.stdout)
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    """`appliance status`: the project's counts, as a table or JSON."""
    with Project.open(args.dir) as project:
        status = project.status()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        width = max(len(k) for k in status)
        for key, value in status.items():
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def cmd_export_coco(args: argparse.Namespace) -> int:
    """`appliance export-coco`: newest labels as COCO JSON."""
    from appliance.label_io import export_coco

    with Project.open(args.dir) as project:
        counts = export_coco(project, args.out)
    print(f"wrote {args.out}: {counts['images']} images, {counts['annotations']} annotations")
    if counts["points_left_out"]:
        print(
            f"note: {counts['points_left_out']} point objects are not in COCO (use export-geojson)"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """`appliance check`: integrity report; exit status 1 while problems remain."""
    from appliance.store.check import check_project

    def progress(done: int, total: int) -> None:
        # for a person at a terminal only: a script's stderr holds nothing but the one-line
        # error when the check fails part-way (a damaged schema that passes quick_check)
        if (done % 500 == 0 or done == total) and sys.stderr.isatty():
            print(f"checked {done}/{total} images", file=sys.stderr)

    report = check_project(args.dir, repair=args.repair, progress=progress)
    for line in report.lines():
        print(line)
    return 1 if report.problems else 0


def cmd_log(args: argparse.Namespace) -> int:
    """`appliance log`: the version history of one image's label."""
    with Project.open(args.dir) as project:
        rec = project.find_image(args.image)
        versions = project.history(rec.id)
    print(f"image {rec.id} {rec.name} ({rec.width}×{rec.height} {rec.dtype})")
    if not versions:
        print("no label versions")
    for v in versions:
        parent = f"parent {v.parent_id}" if v.parent_id else "no parent"
        flags = " coarse" if v.coarse else ""
        print(
            f"v{v.id}  {v.created}  {v.source:<11} {v.author:<12} {v.n_instances:>5} instances  "
            f"{v.seconds_spent:7.1f}s  {parent}{flags}"
        )
    return 0
