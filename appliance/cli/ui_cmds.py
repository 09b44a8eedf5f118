"""`appliance run DIR`: start the tablet app (Kivy is imported only inside the handler)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run` to the `appliance` parser."""
    p = sub.add_parser(
        "run",
        help="start the tablet app on a folder of projects (or one project folder)",
        description="Start the pen/touch annotation app. DIR holds projects (one per "
        "sub-folder) or is itself a project; it is created when missing.",
    )
    p.add_argument(
        "dir", type=Path, metavar="DIR", help="folder of projects, or one project folder"
    )
    p.add_argument(
        "--screenshot-tour",
        type=Path,
        metavar="OUTDIR",
        help="drive every screen once, save a PNG of each into OUTDIR, and quit",
    )
    p.add_argument(
        "--kiosk",
        action="store_true",
        help="the appliance's own start: fullscreen, borderless, no mouse multitouch emulation",
    )
    p.add_argument(
        "--smoke-report",
        type=Path,
        metavar="OUT.json",
        help="check a build: open DIR, run its active model, save a screenshot beside OUT.json, "
        "write timings and versions to OUT.json, and quit",
    )
    p.add_argument(
        "--window",
        type=_window_size,
        default=(1920, 1200),
        metavar="WxH",
        help="window size in pixels for --screenshot-tour and --smoke-report (default 1920x1200, "
        "the 10-inch tablet; 1280x800: an 8-inch one; 1200x1920: held upright)",
    )
    p.set_defaults(func=_run)


def _window_size(text: str) -> tuple[int, int]:
    """`WxH` in pixels, each side 320..8192."""
    width, _, height = text.lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x800") from exc
    if not all(320 <= side <= 8192 for side in size):
        raise argparse.ArgumentTypeError(f"{text!r}: each side must be 320..8192 pixels")
    return size


def _run(args: argparse.Namespace) -> int:
    from appliance.errors import ApplianceError

    try:
        args.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{args.dir}: cannot create the folder ({exc.strerror})") from exc
    from appliance.ui.launch import launch  # Kivy loads only here, not for `--help`

    return launch(
        args.dir,
        tour=args.screenshot_tour,
        kiosk=args.kiosk,
        smoke=args.smoke_report,
        window=args.window,
    )
