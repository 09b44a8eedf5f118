"""A project: `project.db` plus content-addressed original images beside it.

Label versions are append-only (triggers in the schema enforce it); a save is one transaction;
image files are written to a temporary name, fsynced and renamed before their row is committed,
so a crash leaves either no row or a row whose file is complete.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.labels import Label, decode_instances, encode_runs, instance_runs, run_ids
from appliance.store import db as dbm
from appliance.store import oplog

DB_NAME = "project.db"
IMAGES_DIR = "images"
SOURCES = ("manual", "prelabel", "upgrade", "postprocess", "import")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    name: str
    path: Path
    page: int | None
    height: int
    width: int
    channels: int
    dtype: str
    sequence: str | None
    frame: int | None
    cherry_picked: bool


@dataclass
class LabelVersion:
    id: int
    uid: str
    image_id: int
    parent_id: int | None
    author: str
    source: str
    created: str
    seconds_spent: float
    coarse: bool
    reviewed: bool
    n_instances: int
    _blob: bytes = field(repr=False)
    _classes: str = field(repr=False)

    @cached_property
    def label(self) -> Label:
        classes = {int(k): int(v) for k, v in json.loads(self._classes).items()}
        return Label(decode_instances(self._blob), classes)


_LABEL_COLUMNS = (
    "id, uid, image_id, parent_id, author, source, created, seconds_spent, coarse, reviewed, "
    "n_instances, instances, classes"
)


def _label_from_row(row: tuple) -> LabelVersion:
    return LabelVersion(
        id=row[0],
        uid=row[1],
        image_id=row[2],
        parent_id=row[3],
        author=row[4],
        source=row[5],
        created=row[6],
        seconds_spent=row[7],
        coarse=bool(row[8]),
        reviewed=bool(row[9]),
        n_instances=row[10],
        _blob=row[11],
        _classes=row[12],
    )


class Project:
    """Open handle on one project folder. Not shared between processes' writers at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.db = dbm.connect(self.root / DB_NAME)
        dbm.migrate(self.db)

    @classmethod
    def create(cls, root: Path | str, classes: list[str]) -> Project:
        root = Path(root)
        if (root / DB_NAME).exists():
            raise ApplianceError(f"{root}: already holds a project")
        names = [c.strip() for c in classes if c.strip()]
        if not names:
            raise ApplianceError("a project needs at least one class (--classes a,b)")
        if len(set(names)) != len(names):
            raise ApplianceError(f"duplicate class names in {','.join(names)}")
        try:
            (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ApplianceError(f"{root}: cannot create project folder ({exc.strerror})") from None
        project = cls(root)
        with project.transaction():
            for i, name in enumerate(names, start=1):
                project.db.execute("INSERT INTO classes (id, name) VALUES (?, ?)", (i, name))
        return project

    @classmethod
    def open(cls, root: Path | str) -> Project:
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file():
            raise ApplianceError(f"{root}: no project here (missing {DB_NAME}); run `init` first")
        dbm.check_schema(path)
        return cls(root)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[None]:
        return dbm.transaction(self.db)

    # classes ---------------------------------------------------------------------------------

    def classes(self) -> dict[int, str]:
        return dict(self.db.execute("SELECT id, name FROM classes ORDER BY id").fetchall())

    # images ----------------------------------------------------------------------------------

    def blob_path(self, sha256: str, suffix: str) -> Path:
        return self.root / IMAGES_DIR / sha256[:2] / f"{sha256}{suffix}"

    def store_blob(self, data: bytes, sha256: str, suffix: str) -> Path:
        """Write the original bytes once under their hash, atomically (tmp, fsync, rename)."""
        path = self.blob_path(sha256, suffix)
        if path.exists() and path.stat().st_size == len(data):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return path

    def _image_from_row(self, row: tuple) -> ImageRecord:
        return ImageRecord(
            id=row[0],
            sha256=row[1],
            page=row[2],
            name=row[3],
            path=self.root / row[4],
            height=row[5],
            width=row[6],
            channels=row[7],
            dtype=row[8],
            sequence=row[9],
            frame=row[10],
            cherry_picked=bool(row[11]),
        )

    _IMAGE_COLUMNS = (
        "id, sha256, page, name, blob, height, width, channels, dtype, sequence, frame, "
        "cherry_picked"
    )

    def images(self) -> list[ImageRecord]:
        rows = self.db.execute(f"SELECT {self._IMAGE_COLUMNS} FROM images ORDER BY id")
        return [self._image_from_row(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        row = self.db.execute(
            f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        if row is None:
            raise ApplianceError(f"no image with id {image_id} in {self.root}")
        return self._image_from_row(row)

    def find_image(self, ref: str) -> ImageRecord:
        """An image by id, by file name (or stem), or by a unique sha256 prefix."""
        ref = str(ref).strip()
        if ref.isdigit():
            row = self.db.execute("SELECT id FROM images WHERE id = ?", (int(ref),)).fetchone()
            if row:
                return self.image(row[0])
        rows = self.db.execute(
            "SELECT id FROM images WHERE name = ? OR name LIKE ? || '.%' ORDER BY id",
            (ref, ref),
        ).fetchall()
        if not rows and len(ref) >= 6:
            rows = self.db.execute(
                "SELECT id FROM images WHERE sha256 LIKE ? || '%' ORDER BY id", (ref.lower(),)
            ).fetchall()
        if not rows:
            raise ApplianceError(f"no image matching '{ref}' in {self.root}")
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows[:5])
            raise ApplianceError(f"'{ref}' matches several images (ids {ids}); give an id")
        return self.image(rows[0][0])

    def load_pixels(self, image_id: int) -> np.ndarray:
        rec = self.image(image_id)
        return read_image(rec.path, page=rec.page, name=rec.name)

    def set_cherry_picked(self, image_id: int, flag: bool = True) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE images SET cherry_picked = ? WHERE id = ?", (int(flag), image_id)
            )

    # labels ----------------------------------------------------------------------------------

    def save_label(
        self,
        image_id: int,
        label: Label,
        *,
        author: str,
        source: str,
        seconds_spent: float = 0.0,
        parent_id: int | None = None,
        coarse: bool = False,
        reviewed: bool = False,
        uid: str | None = None,
    ) -> int:
        """Append a new version (one transaction) and return its id."""
        if source not in SOURCES:
            raise ApplianceError(f"unknown label source '{source}' (one of {', '.join(SOURCES)})")
        if not author:
            raise ApplianceError("a label version needs an author")
        rec = self.image(image_id)
        if label.shape != (rec.height, rec.width):
            raise ApplianceError(
                f"label shape {label.shape} does not match image {rec.name} "
                f"({rec.height}×{rec.width})"
            )
        values, lengths = instance_runs(label.instances)
        blob = encode_runs(label.shape, values, lengths)
        ids = run_ids(values)
        classes = json.dumps({str(int(i)): label.class_of(i) for i in ids})
        with self.transaction():
            self._ensure_annotator(author)
            cur = self.db.execute(
                "INSERT INTO labels (uid, image_id, parent_id, author, source, created, "
                "seconds_spent, coarse, reviewed, n_instances, instances, classes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    uid or uuid.uuid4().hex,
                    image_id,
                    parent_id,
                    author,
                    source,
                    dbm.utcnow(),
                    float(seconds_spent),
                    int(coarse),
                    int(reviewed),
                    int(ids.size),
                    blob,
                    classes,
                ),
            )
            oplog.record_label(self.db, int(cur.lastrowid))
            return int(cur.lastrowid)

    def _ensure_annotator(self, name: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO annotators (name, created) VALUES (?, ?)", (name, dbm.utcnow())
        )

    def latest_label(self, image_id: int) -> LabelVersion | None:
        row = self.db.execute(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE image_id = ? ORDER BY id DESC LIMIT 1",
            (image_id,),
        ).fetchone()
        return _label_from_row(row) if row else None

    def label_version(self, version_id: int) -> LabelVersion:
        row = self.db.execute(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE id = ?", (version_id,)
        ).fetchone()
        if row is None:
            raise ApplianceError(f"no label version {version_id} in {self.root}")
        return _label_from_row(row)

    def history(self, image_id: int) -> list[LabelVersion]:
        rows = self.db.execute(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE image_id = ? ORDER BY id", (image_id,)
        )
        return [_label_from_row(r) for r in rows]

    def labeled_image_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT image_id FROM labels ORDER BY 1")]

    # settings and events ---------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def record_event(
        self,
        image_id: int | None,
        kind: str,
        annotator: str | None = None,
        seconds: float | None = None,
        detail: dict | None = None,
    ) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO events (image_id, annotator, kind, at, seconds, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    annotator,
                    kind,
                    dbm.utcnow(),
                    seconds,
                    json.dumps(detail) if detail else None,
                ),
            )

    def status(self) -> dict[str, Any]:
        """Counts for `appliance status`; plain aggregate queries, fast on 100,000 images."""
        q = self.db.execute
        return {
            "project": str(self.root),
            "images": q("SELECT count(*) FROM images").fetchone()[0],
            "labeled_images": q("SELECT count(DISTINCT image_id) FROM labels").fetchone()[0],
            "label_versions": q("SELECT count(*) FROM labels").fetchone()[0],
            "classes": q("SELECT count(*) FROM classes").fetchone()[0],
            "sequences": q(
                "SELECT count(DISTINCT sequence) FROM images WHERE sequence IS NOT NULL"
            ).fetchone()[0],
            "seconds_spent": round(
                q("SELECT coalesce(sum(seconds_spent), 0) FROM labels").fetchone()[0], 1
            ),
            "models": q("SELECT count(*) FROM models").fetchone()[0],
        }
