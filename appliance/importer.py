"""Importing image files and folders into a project, past bad files, with a summary.

Each folder is a sequence (natural sort: `img2` before `img10`); a multi-page TIFF is a sequence
of its own. Files are identified by content (sha256), so importing the same folder twice adds
nothing. Every file is checked from its header (size guard) and decoded once (truncation,
corruption) before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    UNSUPPORTED_SUFFIXES,
    iter_frames,
    probe,
)
from appliance.store.images import NewImage, add_images
from appliance.store.project import Project

__all__ = ["ImportSummary", "collect", "import_paths", "natural_key", "printable"]


@dataclass
class ImportSummary:
    """What an import did: new image ids, duplicate names and failed files with reasons."""

    imported: list[int] = field(default_factory=list)  # new image ids
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)  # how stacks were read, originals restored

    def lines(self) -> list[str]:
        """The summary line, `note:` lines, then one `failed: FILE: REASON` line per failure."""
        out = [
            f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
            f"failed {len(self.failed)}"
        ]
        out += [f"note: {note}" for note in self.notes]
        out += [f"failed: {name}: {reason}" for name, reason in self.failed]
        return out


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value (`img2` before `img10`).

    Examples
    --------
    >>> sorted(["img10.tif", "img2.tif", "IMG1.tif"], key=natural_key)
    ['IMG1.tif', 'img2.tif', 'img10.tif']
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def printable(path: Path | str) -> str:
    """A path as text that SQLite and a one-line message can hold: bytes that are not UTF-8
    become U+FFFD and control characters (a newline in a file name) become escapes."""
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def collect(
    paths: Iterable[Path], suffixes: tuple[str, ...] = IMAGE_SUFFIXES
) -> dict[Path, list[Path]]:
    """Image-like files grouped by folder, each group naturally sorted.

    Missing paths raise; a folder's non-image files (notes, hidden files) are left out, except
    GIF and WebP files, which are kept so that the import reports them instead of skipping them
    without a word.
    """
    groups: dict[Path, list[Path]] = {}
    wanted = suffixes + UNSUPPORTED_SUFFIXES
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [
                f
                for f in path.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and f.suffix.lower() in wanted
            ]
        elif path.exists():
            files = [path]  # a FIFO or device is refused by the reader, one line
        else:
            raise ApplianceError(f"{printable(path)}: no such file or folder")
        for f in files:
            groups.setdefault(f.parent.resolve(), []).append(f)
    return {
        folder: sorted(set(fs), key=lambda f: natural_key(f.name)) for folder, fs in groups.items()
    }


def import_paths(
    project: Project, paths: Iterable[Path], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> ImportSummary:
    """Import image files and folders, each folder a sequence; bad files are reported, not fatal.

    Returns the new image ids, the duplicates skipped and the failures with their reasons.
    """
    summary = ImportSummary()
    for folder, files in collect(paths).items():
        for path in files:
            try:
                _import_file(project, path, printable(folder), max_pixels, summary)
            except ApplianceError as exc:
                shown = printable(path)
                summary.failed.append((shown, str(exc).removeprefix(f"{shown}: ")))
    return summary


def _import_file(
    project: Project, path: Path, sequence: str, max_pixels: int, summary: ImportSummary
) -> None:
    """Import every frame of one file: headers checked first, pages decoded one at a time (to
    prove them complete) and dropped, then the file and its rows stored in one transaction."""
    label = printable(path)
    found = probe(path, label)
    multi = len(found.frames) > 1
    frames = []
    for frame, img in iter_frames(path, label, max_pixels):
        frames.append(
            NewImage(
                page=frame.page if multi else None,
                name=f"{printable(path.name)}[{frame.page}]" if multi else printable(path.name),
                height=img.shape[0],
                width=img.shape[1],
                channels=1 if img.ndim == 2 else img.shape[2],
                dtype=str(img.dtype),
            )
        )
    try:
        sha = file_sha256(path)
    except OSError as exc:
        raise ApplianceError(f"{label}: cannot read ({exc.strerror})") from exc
    source = printable(path.resolve())
    try:
        added = add_images(
            project, path, sha, frames, sequence=source if multi else sequence, source_path=source
        )
    except OSError as exc:  # a full disk or a read-only project: this file is not stored
        raise ApplianceError(f"{label}: cannot store ({exc.strerror or exc})") from exc
    summary.imported += added.ids
    summary.duplicates += added.duplicates
    if found.note:
        summary.notes.append(f"{label}: {found.note}")
    if added.restored:
        summary.notes.append(f"{label}: restored the missing stored original")
