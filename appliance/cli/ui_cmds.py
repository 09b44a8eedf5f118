"""`appliance run DIR`: start the tablet app (Kivy is imported only here, inside the handler)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run` to the `appliance` parser."""
    p = sub.add_parser(
        "run",
        help="start the tablet app on a folder of projects (or one project folder)",
        description="Start the pen/touch annotation app. DIR holds projects (one per "
        "sub-folder) or is itself a project; it is created when missing.",
    )
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument(
        "--screenshot-tour",
        type=Path,
        metavar="OUTDIR",
        help="drive every screen once, save a PNG of each into OUTDIR, and quit",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from appliance.errors import ApplianceError

    try:
        args.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{args.dir}: cannot create the folder ({exc.strerror})") from None
    os.environ.setdefault("KIVY_NO_ARGS", "1")  # our arguments are not Kivy's
    if args.screenshot_tour is not None:
        from appliance.ui.display import emulate_tablet, start_virtual_display

        if not start_virtual_display():
            raise ApplianceError("the screenshot tour needs a display or Xvfb (package xvfb)")
        emulate_tablet()
    from kivy.config import Config

    if args.screenshot_tour is not None:  # the target tablet's resolution, for screenshots
        Config.set("graphics", "width", "1920")
        Config.set("graphics", "height", "1200")
    else:
        Config.set("graphics", "window_state", "maximized")
    from appliance.ui.app import run  # imports the window: after the configuration above

    return run(args.dir, tour=args.screenshot_tour)
