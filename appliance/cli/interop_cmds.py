"""Sub-commands that hand labels to other tools: QuPath GeoJSON, label TIFFs for napari/Fiji."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from appliance.store import Project

__all__ = ["cmd_export_geojson", "cmd_export_label_tiff", "cmd_export_ome_zarr", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the interop sub-commands to the `appliance` parser."""
    p = sub.add_parser(
        "export-geojson",
        help="write the newest label of each image as QuPath GeoJSON",
        description="Write OUT/<image stem>.geojson for every labeled image (control items "
        "left out): a FeatureCollection in full-resolution pixel coordinates, origin top "
        "left, each object with its class name and colour; masks as Polygon/MultiPolygon "
        "along pixel edges, points as Point, boxes as rectangle Polygon. QuPath reads them "
        "with File > Import objects; `appliance import --labels FILE.geojson` reads them back.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("out", type=Path, help="output folder (created if missing)")
    p.set_defaults(func=cmd_export_geojson)

    p = sub.add_parser(
        "export-label-tiff",
        help="write the newest label of each image as TIFF label images (napari, Fiji)",
        description="Write OUT/instances/<image stem>.tif (instance ids, uint16 or uint32; "
        "`appliance import --labels OUT/instances` reads them back) and OUT/classes/<image "
        "stem>.tif (class id per pixel) for every labeled image, control items left out. "
        "Points and boxes have no pixels: use export-geojson for them.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("out", type=Path, help="output folder (created if missing)")
    p.set_defaults(func=cmd_export_label_tiff)

    p = sub.add_parser(
        "export-ome-zarr",
        help="write each labeled image and its label as OME-Zarr (NGFF 0.4) for napari",
        description="Write OUT/<image stem>.ome.zarr for every labeled image (control items "
        "left out): the image at 0 and the instance ids at labels/cells/0 with NGFF "
        "image-label metadata (a colour and a class name per instance); a slide region "
        "carries its level-0 place as a translation. Points and boxes have no pixels: use "
        "export-geojson for them.",
    )
    p.add_argument("dir", type=Path, help="project folder")
    p.add_argument("out", type=Path, help="output folder (created if missing)")
    p.set_defaults(func=cmd_export_ome_zarr)


def cmd_export_geojson(args: argparse.Namespace) -> int:
    """`appliance export-geojson`: newest labels as QuPath GeoJSON files."""
    from appliance.label_io import export_geojson

    with Project.open(args.dir) as project:
        counts = export_geojson(project, args.out)
    print(f"wrote {args.out}: {counts['images']} images, {counts['features']} features")
    return 0


def cmd_export_label_tiff(args: argparse.Namespace) -> int:
    """`appliance export-label-tiff`: newest labels as instance and class TIFFs."""
    from appliance.label_io import export_label_tiffs

    return _export_pixels(args, export_label_tiffs)


def cmd_export_ome_zarr(args: argparse.Namespace) -> int:
    """`appliance export-ome-zarr`: images with NGFF labels."""
    from appliance.ngff import export_ngff

    return _export_pixels(args, export_ngff)


def _export_pixels(
    args: argparse.Namespace, export: Callable[[Project, Path], dict[str, int]]
) -> int:
    """Run a pixel-label export and say what it wrote; point and box objects have no pixels,
    so their count is reported with the format that keeps them."""
    with Project.open(args.dir) as project:
        counts = export(project, args.out)
    print(f"wrote {args.out}: {counts['images']} images")
    if counts["objects_left_out"]:
        print(
            f"note: {counts['objects_left_out']} point and box objects have no pixels "
            "(use export-geojson)"
        )
    return 0
