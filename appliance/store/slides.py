"""Slides and their regions in the project (tables `slides` and `regions`, migration
`0007_slides`).

A slide file is stored once under its sha256 in `slides/` (beside `images/`, so `appliance
check --repair` never mistakes it for an orphan original). Annotation happens on regions: each
is an ordinary image row (its level-0 pixels stored as a PNG original, so the selector, the
label versions, training jobs, controls and sync treat it like any other image) plus a
`regions` row with its place on the slide.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.durable import file_sha256
from appliance.errors import ApplianceError
from appliance.slides import REGION_ORIGINS
from appliance.store import db as dbm
from appliance.store import oplog
from appliance.store.project import Project

__all__ = [
    "SLIDES_DIR",
    "Region",
    "SlideRecord",
    "add_slide",
    "find_slide",
    "region_linker",
    "region_of",
    "regions",
    "slides",
]

SLIDES_DIR = "slides"
ORIGINS = REGION_ORIGINS


@dataclass(frozen=True)
class SlideRecord:
    """A stored slide: level-0 size, pyramid depth, µm per pixel when known."""

    id: int
    sha256: str
    name: str
    path: Path
    width: int
    height: int
    levels: int
    mpp: float | None
    vendor: str | None


@dataclass(frozen=True)
class Region:
    """Where an image (a region) lies on its slide: level-0 top-left corner and size."""

    image_id: int
    slide_id: int
    x: int
    y: int
    width: int
    height: int
    origin: str


_SLIDE_COLUMNS = "id, sha256, name, blob, width, height, levels, mpp, vendor"


def _slide(project: Project, row: tuple) -> SlideRecord:
    sid, sha, name, blob, w, h, levels, mpp, vendor = row
    return SlideRecord(sid, sha, name, project.root / blob, w, h, levels, mpp, vendor)


def add_slide(
    project: Project,
    source: Path,
    *,
    name: str,
    width: int,
    height: int,
    levels: int,
    mpp: float | None,
    vendor: str | None,
    source_path: str,
) -> tuple[SlideRecord, bool]:
    """Store a checked slide file once under its hash; returns it and whether it is new.

    The file is copied durably before its row commits; a failed transaction removes a copy
    this call made, so nothing is left behind.
    """
    sha = file_sha256(source)
    existing = [s for s in slides(project) if s.sha256 == sha]
    if existing:
        return existing[0], False
    blob = project.root / SLIDES_DIR / sha[:2] / f"{sha}{source.suffix.lower()}"
    created = not blob.exists()
    try:
        blob.parent.mkdir(parents=True, exist_ok=True)
        project.store_original(source, blob)
        with project.transaction():
            cur = project.db.execute(
                "INSERT INTO slides (sha256, name, blob, width, height, levels, mpp, vendor, "
                "source_path, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sha,
                    name,
                    str(blob.relative_to(project.root)),
                    width,
                    height,
                    levels,
                    mpp,
                    vendor,
                    source_path,
                    dbm.utcnow(),
                ),
            )
            slide_id = int(cur.lastrowid or 0)
            oplog.record_slide(project.db, slide_id)  # for sync, inside the same transaction
    except BaseException:
        if created:
            blob.unlink(missing_ok=True)
        raise
    return find_slide(project, str(slide_id)), True


def slides(project: Project) -> list[SlideRecord]:
    """Every stored slide, by id."""
    rows = project.db.execute(f"SELECT {_SLIDE_COLUMNS} FROM slides ORDER BY id").fetchall()
    return [_slide(project, tuple(r)) for r in rows]


def find_slide(project: Project, ref: str) -> SlideRecord:
    """A slide by id or by file name (ApplianceError naming the project when there is none)."""
    for s in slides(project):
        if ref in (str(s.id), s.name, Path(s.name).stem):
            return s
    raise ApplianceError(f"{project.root}: no slide {ref!r}")


def region_linker(
    slide_id: int, x: int, y: int, origin: str
) -> Callable[[sqlite3.Connection, int], None]:
    """The `link` for `add_images` that records a new region image's place on its slide."""
    if origin not in ORIGINS:
        raise ApplianceError(f"region origin {origin!r} is not one of {', '.join(ORIGINS)}")

    def link(db: sqlite3.Connection, image_id: int) -> None:
        db.execute(
            "INSERT INTO regions (image_id, slide_id, x, y, origin) VALUES (?, ?, ?, ?, ?)",
            (image_id, slide_id, x, y, origin),
        )
        oplog.record_region(db, image_id)  # after the image's own `image.added`

    return link


_REGION_SQL = (
    "SELECT r.image_id, r.slide_id, r.x, r.y, i.width, i.height, r.origin "
    "FROM regions r JOIN images i ON i.id = r.image_id"
)


def region_of(project: Project, image_id: int) -> Region | None:
    """The region an image is, or None for an ordinary image."""
    row = project.db.execute(f"{_REGION_SQL} WHERE r.image_id = ?", (image_id,)).fetchone()
    return Region(*row) if row else None


def regions(project: Project, slide_id: int | None = None) -> list[Region]:
    """Regions of one slide (or of all), by image id."""
    if slide_id is None:
        rows = project.db.execute(f"{_REGION_SQL} ORDER BY r.image_id").fetchall()
    else:
        rows = project.db.execute(
            f"{_REGION_SQL} WHERE r.slide_id = ? ORDER BY r.image_id", (slide_id,)
        ).fetchall()
    return [Region(*r) for r in rows]
