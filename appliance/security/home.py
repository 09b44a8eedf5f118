"""The tablet's own folder, outside every project: pinned lab keys and device credentials.

A project folder is copied to USB sticks and backups; what lives here is not. The folder is
`APPLIANCE_HOME` when set (tests, kiosk images), else the platform's per-user configuration
folder. It and the files in it are owner-only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from appliance.durable import atomic_write
from appliance.errors import ApplianceError

__all__ = ["HOME_ENV", "appliance_home", "home_path", "write_private"]

HOME_ENV = "APPLIANCE_HOME"


def home_path() -> Path:
    """Where this user's appliance folder is (it may not exist yet; reading needs no more)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "appliance"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "appliance"


def appliance_home() -> Path:
    """This user's appliance folder, made owner-only (0700) on first use (for writing)."""
    home = home_path()
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.name == "posix" and home.stat().st_mode & 0o077:
            home.chmod(0o700)
    except OSError as exc:
        raise ApplianceError(f"{home}: cannot create the appliance folder ({exc})") from exc
    return home


def write_private(path: Path, data: bytes) -> None:
    """Write `data` durably with mode 0600 from the first byte (never readable by others)."""

    def write(fh: object) -> None:
        os.chmod(fh.name, 0o600)  # type: ignore[attr-defined]
        fh.write(data)  # type: ignore[attr-defined]

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
