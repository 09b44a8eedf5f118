"""Removable media (USB sticks, SD cards) the images come from, and the tablet's image source.

The expert answers "where do your images come from?" once, on first start, by tapping a stick
this module found; Home's import then starts there. Finding sticks stays free of Kivy so that it
can be tested with a fake mount table and fake folders:

- **Linux:** a medium is a mounted folder under one of the search roots: `/media/$USER` and
  `/run/media/$USER` (where desktop auto-mounters put sticks: every folder there is one),
  `/media` and `/mnt` (only mount points: `/media/alice` is a user's folder, not a stick).
  Mount points come from `/proc/mounts`; folders are listed too, for mounts that the table
  shows under another name.
- **Windows:** each drive letter that `GetDriveTypeW` reports as removable (2).
- **Tests and odd set-ups:** `APPLIANCE_MEDIA_ROOTS` (folders separated by `os.pathsep`)
  replaces the roots above; every folder in such a root counts as a medium.

Counting images walks the medium only so far (`COUNT_LIMIT` entries), so a full 1 TB disk
never stalls the screen: the count then reads "1000+".
"""

from __future__ import annotations

import getpass
import os
import string
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.imageio import IMAGE_SUFFIXES
from appliance.typed import from_json

__all__ = [
    "COUNT_LIMIT",
    "ROOTS_ENV",
    "ImageSource",
    "Medium",
    "Root",
    "count_images",
    "find_media",
    "mount_points",
    "search_roots",
    "windows_drives",
]

ROOTS_ENV = "APPLIANCE_MEDIA_ROOTS"
COUNT_LIMIT = 1000
DRIVE_REMOVABLE = 2  # GetDriveTypeW's answer for USB sticks and card readers


@dataclass(frozen=True)
class Root:
    """A folder whose sub-folders may be media; `any_folder`: every sub-folder is one (per-user
    auto-mount folders, injected roots), else only mount points are."""

    path: Path
    any_folder: bool


@dataclass(frozen=True)
class Medium:
    """One stick or card: where it is mounted, the name to show, how many images it holds."""

    path: Path
    name: str
    images: int
    more: bool = False  # counting stopped at COUNT_LIMIT: there are at least `images`

    def label(self) -> str:
        """`STICK (42 images)`: what the button says."""
        return f"{self.name} ({self.images}{'+' if self.more else ''} images)"


def search_roots(env: Mapping[str, str] | None = None, user: str | None = None) -> list[Root]:
    """Where sticks are mounted on this system, or the folders in `APPLIANCE_MEDIA_ROOTS`."""
    env = os.environ if env is None else env
    injected = env.get(ROOTS_ENV, "")
    if injected:
        return [Root(Path(p), True) for p in injected.split(os.pathsep) if p]
    if user is None:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no user name in a container: the shared roots remain
            user = ""
    roots = [Root(Path("/media") / user, True), Root(Path("/run/media") / user, True)]
    roots = roots if user else []
    return [*roots, Root(Path("/media"), False), Root(Path("/mnt"), False)]


def mount_points(table: str) -> set[Path]:
    """Mount points in a `/proc/mounts` text (spaces in names are written `\\040`)."""
    points = set()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            raw = fields[1]
            for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                raw = raw.replace(code, char)
            points.add(Path(raw))
    return points


def _read_mounts(path: Path) -> set[Path]:
    try:
        return mount_points(path.read_text(errors="replace"))
    except OSError:  # no /proc (macOS, a sandbox): listing the roots still finds folders
        return set()


def count_images(folder: Path, limit: int = COUNT_LIMIT) -> tuple[int, bool]:
    """(image files under `folder`, whether counting stopped early), hidden folders skipped.

    At most `limit` directory entries are looked at; an unreadable sub-folder is skipped (the
    import reports its files later)."""
    found = seen = 0
    stack = [Path(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return found, True
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                        found += 1
        except OSError:
            continue
    return found, False


def _medium(path: Path, count: bool) -> Medium:
    images, more = count_images(path) if count else (0, False)
    return Medium(path, path.name or str(path), images, more)


def find_media(
    roots: Sequence[Root] | None = None,
    mounts: Iterable[Path] | None = None,
    count: bool = True,
    platform: str = sys.platform,
    drive_type: Callable[[str], int] | None = None,
) -> list[Medium]:
    """The removable media present now, sorted by name; never raises for a missing root.

    `roots` default to `search_roots()`, `mounts` to `/proc/mounts`; on Windows (`platform`
    "win32") removable drive letters are listed instead (`drive_type` as in `windows_drives`).
    """
    if platform == "win32" and roots is None:
        return [_medium(p, count) for p in windows_drives(drive_type)]
    roots = search_roots() if roots is None else roots
    mounted = _read_mounts(Path("/proc/mounts")) if mounts is None else set(mounts)
    found: dict[Path, Medium] = {}
    for root in roots:
        candidates = {p for p in mounted if p.parent == root.path}
        try:
            listed = [p for p in root.path.iterdir() if not p.name.startswith(".")]
        except OSError:  # no such root here (no /run/media), or not readable
            listed = []
        for path in listed:
            if root.any_folder or os.path.ismount(path):
                candidates.add(path)
        for path in candidates:
            if path not in found and path.is_dir():
                found[path] = _medium(path, count)
    return sorted(found.values(), key=lambda m: (m.name.lower(), str(m.path)))


def windows_drives(drive_type: Callable[[str], int] | None = None) -> list[Path]:
    """Drive letters whose type is removable; `drive_type` defaults to `GetDriveTypeW`."""
    if drive_type is None:
        import ctypes

        drive_type = ctypes.windll.kernel32.GetDriveTypeW  # type: ignore[attr-defined]
    drives = []
    for letter in string.ascii_uppercase:
        root = f"{letter}:\\"
        if drive_type(root) == DRIVE_REMOVABLE:
            drives.append(Path(root))
    return drives


@dataclass(frozen=True)
class ImageSource:
    """Where this tablet's images come from, as kept in `tablet.json` under `image_source`.

    `kind` is "usb" (a stick, found again by its name wherever it is mounted next time),
    "folder" (a fixed folder) or "later" (asked, not answered: Home offers the plain chooser).
    """

    kind: str
    path: str = ""
    name: str = ""

    KINDS = ("usb", "folder", "later")

    def to_json(self) -> dict[str, str]:
        """The `tablet.json` form."""
        return {"kind": self.kind, "path": self.path, "name": self.name}

    @classmethod
    def from_json(cls, data: Any) -> ImageSource | None:
        """The stored choice, or None when there is none or it was edited into nonsense."""
        try:
            source = from_json(cls, data, "image source")
        except ApplianceError:
            return None
        return source if source.kind in cls.KINDS else None

    @classmethod
    def of_medium(cls, medium: Medium) -> ImageSource:
        """The choice of a stick found by `find_media`."""
        return cls("usb", str(medium.path), medium.name)

    def describe(self) -> str:
        """`USB stick SCANS` or `folder /data/scans`: how messages name the source."""
        return f"USB stick {self.name}" if self.kind == "usb" else f"folder {self.path}"

    def locate(self, media: Sequence[Medium] | None = None) -> Path | None:
        """The folder to import from now; None for "later"; ApplianceError (one line) when the
        stick is not plugged in or the folder is gone.

        A stick is looked up by name among `media` (default: `find_media(count=False)`), since
        the mount point may differ between plug-ins (`/media/u/SCANS1`); its last path is the
        fallback."""
        if self.kind == "later":
            return None
        if self.kind == "usb":
            media = find_media(count=False) if media is None else media
            for medium in media:
                if medium.name == self.name:
                    return medium.path
            if self.path and Path(self.path).is_dir():
                return Path(self.path)
            raise ApplianceError(
                f"USB stick {self.name} is not plugged in: plug it in, or choose another folder"
            )
        if Path(self.path).is_dir():
            return Path(self.path)
        raise ApplianceError(f"{self.path}: image folder not found; choose another folder")
