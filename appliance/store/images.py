"""Adding image rows and their original file: one transaction, safe against concurrent imports.

The duplicate check, the frame number and the insert all run inside one `BEGIN IMMEDIATE`
transaction, so two processes importing the same folder at once never both insert a file (the
second sees the first's rows) and never hit the UNIQUE constraint. The original is copied
durably under its hash before the rows commit; when the transaction fails, a file this call
created is removed again, so no orphan is left. A row whose file has gone missing gets it back
when the same file is imported again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.store import db as dbm
from appliance.store import oplog
from appliance.store.project import Project

__all__ = ["AddedImages", "NewImage", "add_images", "insert_image"]


@dataclass(frozen=True)
class NewImage:
    """One frame to store: `page` is None for single-frame files."""

    page: int | None
    name: str
    height: int
    width: int
    channels: int
    dtype: str


@dataclass
class AddedImages:
    """What `add_images` did: new ids, names already present, whether a lost original came back."""

    ids: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    restored: bool = False


def add_images(
    project: Project,
    source: Path,
    sha256: str,
    frames: list[NewImage],
    *,
    sequence: str,
    source_path: str,
    link: Callable[[sqlite3.Connection, int], None] | None = None,
) -> AddedImages:
    """Store `source` under `sha256` and one row per new frame, in one transaction.

    Single-frame files take the next frame number of `sequence`; the pages of a multi-page file
    are their own sequence, numbered by page. `link(db, image_id)` runs for each new row inside
    the same transaction (a slide region records where it lies), so both commit or neither.
    """
    out = AddedImages()
    blob = project.blob_path(sha256, source.suffix.lower())
    created = False
    db = project.db
    try:
        with project.transaction():
            new = []
            for frame in frames:
                row = db.execute(
                    "SELECT id, blob FROM images WHERE sha256 = ? AND page IS ?",
                    (sha256, frame.page),
                ).fetchone()
                if row is None:
                    new.append(frame)
                    continue
                out.duplicates.append(frame.name)
                blob = project.root / row[1]
            if not project.holds_original(blob, sha256):
                out.restored = bool(out.duplicates)
                blob.parent.mkdir(parents=True, exist_ok=True)
                created = not blob.exists()
                project.store_original(source, blob)
            next_frame = db.execute(
                "SELECT coalesce(max(frame) + 1, 0) FROM images WHERE sequence = ?", (sequence,)
            ).fetchone()[0]
            for frame in new:
                frame_no = frame.page if frame.page is not None else next_frame
                rel = str(blob.relative_to(project.root))
                new_id = insert_image(db, sha256, frame, rel, sequence, frame_no, source_path)
                out.ids.append(new_id)
                if link is not None:
                    link(db, new_id)
    except BaseException:
        if created:
            blob.unlink(missing_ok=True)
        raise
    return out


def insert_image(
    db: sqlite3.Connection,
    sha256: str,
    frame: NewImage,
    blob: str,
    sequence: str | None,
    frame_no: int | None,
    source_path: str,
) -> int:
    """Insert one image row and its `image.added` operation; call inside a transaction whose
    original file `blob` (relative to the project) is stored. Returns the new row id."""
    cur = db.execute(
        "INSERT INTO images (sha256, page, name, blob, height, width, channels, "
        "dtype, sequence, frame, source_path, added) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sha256,
            frame.page,
            frame.name,
            blob,
            frame.height,
            frame.width,
            frame.channels,
            frame.dtype,
            sequence,
            frame_no,
            source_path,
            dbm.utcnow(),
        ),
    )
    image_id = int(cur.lastrowid or 0)
    oplog.record_image(db, image_id)  # for sync, inside the same transaction
    return image_id
