"""Sub-commands that hand labels to other tools: QuPath GeoJSON (and label images)."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.store import Project

__all__ = ["cmd_export_geojson", "register"]


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


def cmd_export_geojson(args: argparse.Namespace) -> int:
    """`appliance export-geojson`: newest labels as QuPath GeoJSON files."""
    from appliance.label_io import export_geojson

    with Project.open(args.dir) as project:
        counts = export_geojson(project, args.out)
    print(f"wrote {args.out}: {counts['images']} images, {counts['features']} features")
    return 0
