"""Importing image files and folders into a project, past bad files, with a summary.

Each folder is a sequence (natural sort: `img2` before `img10`); a multi-page TIFF is a sequence
of its own. Files are identified by content (sha256), so importing the same folder twice adds
nothing. Every file is checked from its header (size guard) and decoded once (truncation,
corruption) before it is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_pixels,
    page_shapes,
    read_file,
    read_image,
)
from appliance.store.project import Project

__all__ = ["ImportSummary", "collect", "import_paths", "natural_key"]


@dataclass
class ImportSummary:
    """What an import did: new image ids, duplicate names and failed files with reasons."""

    imported: list[int] = field(default_factory=list)  # new image ids
    duplicates: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def lines(self) -> list[str]:
        """The summary line, then one `failed: FILE: REASON` line per failure."""
        out = [
            f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
            f"failed {len(self.failed)}"
        ]
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


def collect(paths: Iterable[Path]) -> dict[Path, list[Path]]:
    """Image-like files grouped by folder, each group naturally sorted.

    Unreadable paths raise; a folder's non-image files (notes, hidden files) are left out.
    """
    groups: dict[Path, list[Path]] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = [
                f
                for f in path.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and f.suffix.lower() in IMAGE_SUFFIXES
            ]
        elif path.is_file():
            files = [path]
        else:
            raise ApplianceError(f"{path}: no such file or folder")
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
        frame = project.next_frame(str(folder))
        for path in files:
            try:
                frame = _import_file(project, path, str(folder), frame, max_pixels, summary)
            except ApplianceError as exc:
                summary.failed.append((str(path), str(exc).removeprefix(f"{path}: ")))
    return summary


def _import_file(
    project: Project,
    path: Path,
    sequence: str,
    frame: int,
    max_pixels: int,
    summary: ImportSummary,
) -> int:
    """Import every frame of one file; returns the folder's next frame index."""
    data = read_file(path)
    shapes = page_shapes(data, str(path))
    for shape in shapes:
        check_pixels(shape, str(path), max_pixels)
    sha = hashlib.sha256(data).hexdigest()
    multi = len(shapes) > 1
    decoded = [
        read_image(data, page=p, name=str(path), max_pixels=max_pixels) for p in range(len(shapes))
    ]
    blob = None
    for page, img in enumerate(decoded):
        page_key = page if multi else None
        name = f"{path.name}[{page}]" if multi else path.name
        if project.image_with_content(sha, page_key) is not None:
            summary.duplicates.append(name)
            continue
        if blob is None:
            blob = project.store_blob(data, sha, path.suffix.lower())
        image_id = project.add_image(
            sha256=sha,
            page=page_key,
            name=name,
            blob=blob,
            shape=img.shape,
            dtype=str(img.dtype),
            sequence=str(path.resolve()) if multi else sequence,
            frame=page if multi else frame,
            source_path=str(path.resolve()),
        )
        summary.imported.append(image_id)
    return frame if multi else frame + 1
