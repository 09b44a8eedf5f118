"""Entry point of the frozen tablet app: the `appliance` command line, kiosk `run` by default.

Started with no arguments (the autostart entry, a tap on the icon) it opens the app fullscreen
on the expert's workspace, `~/Annotations`; with arguments it is the ordinary `appliance`
command line, so the same folder also imports, exports and checks projects.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from appliance.cli import main

DEFAULT_WORKSPACE = Path.home() / "Annotations"

if __name__ == "__main__":
    multiprocessing.freeze_support()
    argv = sys.argv[1:] or ["run", str(DEFAULT_WORKSPACE), "--kiosk"]
    sys.exit(main(argv))
