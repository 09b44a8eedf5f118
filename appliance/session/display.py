"""A virtual X screen for running the real app where there is no display (CI, the demo tour).

No Kivy here: the display and Kivy's environment must be settled before Kivy is imported.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess

__all__ = ["emulate_tablet", "start_virtual_display"]

TABLET_SIZE = (1920, 1200)
TABLET_DPI = 224  # a 10-inch 1920×1200 screen: sizes in mm come out as on the tablet


def start_virtual_display(size: tuple[int, int] = TABLET_SIZE) -> bool:
    """Start Xvfb and point DISPLAY at it, unless a display exists; False when Xvfb is missing."""
    if os.environ.get("DISPLAY"):
        return True
    if shutil.which("Xvfb") is None:
        return False
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as fh:
        display = fh.readline().strip()
    atexit.register(proc.terminate)
    os.environ["DISPLAY"] = f":{display}"
    return True


def emulate_tablet() -> None:
    """Kivy settings that make a virtual screen look like the target tablet (DPI, no clipboard
    helpers such as xclip, which a bare Xvfb machine lacks)."""
    os.environ.setdefault("KIVY_DPI", str(TABLET_DPI))
    os.environ.setdefault("KIVY_METRICS_DENSITY", "1")
    os.environ.setdefault("KIVY_CLIPBOARD", "sdl2")
