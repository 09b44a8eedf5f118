"""A project: `project.db` plus content-addressed original images beside it.

Label versions are append-only (triggers in the schema enforce it); a save is one transaction;
image files are written durably (`appliance.durable`) before their row is committed
(`appliance.store.images.add_images`), so a crash leaves either no row or a row whose file is
complete.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from appliance.durable import replace_durably
from appliance.errors import ApplianceError
from appliance.imageio import read_image
from appliance.labels import Label, decode_label, encode_runs, instance_runs, run_ids
from appliance.security.lock import check_unlocked
from appliance.store import at_rest, oplog
from appliance.store import db as dbm
from appliance.store.migrations import MIGRATIONS
from appliance.store.opcheck import SOURCES

__all__ = [
    "DB_NAME",
    "HUMAN_LABELED_SQL",
    "HUMAN_SOURCES",
    "IMAGES_DIR",
    "SOURCES",
    "ImagePosition",
    "ImageRecord",
    "LabelVersion",
    "Project",
]

DB_NAME = "project.db"
IMAGES_DIR = "images"
HUMAN_SOURCES = ("manual", "postprocess", "import")
"""Sources of versions a person made; with `reviewed = 1` the only versions assistance trusts.

Pre-labels and upgrades are machine guesses until someone saves over them or marks them
reviewed. Judging a pre-labeler against them would let it vote for itself, chaining
"previous" pre-labels would smear one guess over a whole sequence, and counting them as
labeled would let `prelabel --all` empty the selector's queue. One definition, used by all.
"""
_HUMAN = f"(reviewed = 1 OR source IN ({', '.join(repr(s) for s in HUMAN_SOURCES)}))"
HUMAN_LABELED_SQL = f"SELECT DISTINCT image_id FROM labels WHERE {_HUMAN}"


@dataclass(frozen=True)
class ImageRecord:
    """One stored image (a frame of a multi-page file has its own record and `page`).

    `path` is the stored original file; `height`, `width`, `channels` and `dtype` describe the
    decoded pixels; `sequence`/`frame` place it in its folder or multi-page file.
    """

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


class ImagePosition(NamedTuple):
    """Where an image sits for the selector: its sequence, frame and cherry-pick flag."""

    id: int
    sequence: str | None
    frame: int | None
    cherry_picked: int  # 1 when the user flagged it, else 0 (as stored)


@dataclass
class LabelVersion:
    """One saved version of an image's label (append-only); `label` decodes it on access."""

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
        """The instance map and class table of this version (decoded once)."""
        try:
            classes = {int(k): int(v) for k, v in json.loads(self._classes).items()}
            return decode_label(self._blob, classes)
        except Exception as exc:  # damaged bytes: zlib, JSON and shape errors alike
            raise ApplianceError(
                f"label version {self.id} of image {self.image_id} is damaged ({exc}); "
                "run `appliance check` on the project"
            ) from exc


_LABEL_COLUMNS = (
    "id, uid, image_id, parent_id, author, source, created, seconds_spent, coarse, reviewed, "
    "n_instances, instances, classes"
)


def _label_from_row(row: sqlite3.Row) -> LabelVersion:
    return LabelVersion(
        id=row["id"],
        uid=row["uid"],
        image_id=row["image_id"],
        parent_id=row["parent_id"],
        author=row["author"],
        source=row["source"],
        created=row["created"],
        seconds_spent=row["seconds_spent"],
        coarse=bool(row["coarse"]),
        reviewed=bool(row["reviewed"]),
        n_instances=row["n_instances"],
        _blob=row["instances"],
        _classes=row["classes"],
    )


class Project:
    """Open handle on one project folder. Not shared between processes' writers at once.

    One handle serves every thread of the app (the UI, the assist worker, prefetch, sync
    uploads), but no SQLite connection is shared: `db` gives each thread its own, opened on
    the thread's first use, so two threads never interleave statements or transactions on
    one connection. SQLite (WAL) lets them read at once and queues their writers.
    """

    def __init__(self, root: Path, migrate: bool = True, key: bytes | None = None) -> None:
        self.root = Path(root)
        # encrypted at rest (`appliance.store.at_rest`): the keys the store reads and writes with
        self.keys = at_rest.StoreKeys(key) if key is not None else None
        self._key_pragma = self.keys.db_pragma if self.keys is not None else None
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._connections_lock = threading.Lock()
        self._closed = False
        if migrate:
            dbm.migrate(self.db)

    @property
    def db(self) -> sqlite3.Connection:
        """The calling thread's connection to project.db (store code only)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        conn = dbm.connect(self.root / DB_NAME, self._key_pragma)
        with self._connections_lock:
            # threads come and go (each sync starts its upload workers): close what the
            # finished ones opened, so a long session does not collect connections
            for thread in [t for t in self._connections if not t.is_alive()]:
                self._connections.pop(thread).close()
            self._connections[threading.current_thread()] = conn
        self._local.conn = conn
        return conn

    @classmethod
    def create(cls, root: Path | str, classes: list[str]) -> Project:
        """Make a new project in `root` with class names (ids 1, 2, ... in this order).

        Raises
        ------
        ApplianceError
            When `root` already holds a project, the class list is empty or has duplicates,
            or the folder cannot be created.
        """
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
            raise ApplianceError(f"{root}: cannot create project folder ({exc.strerror})") from exc
        project = cls(root)
        with project.transaction():
            for i, name in enumerate(names, start=1):
                project.db.execute("INSERT INTO classes (id, name) VALUES (?, ?)", (i, name))
        return project

    @classmethod
    def open(cls, root: Path | str, key: bytes | None = None) -> Project:
        """Open the project in `root`, refusing a missing, empty or damaged database (SQLite's
        quick_check, before anything can write) or one of a newer schema.

        An encrypted project needs its key: `key`, else the one this process unlocked
        (`at_rest.key_for`); without either it is refused in one line ("locked: ...").
        A migration to encryption that a crash interrupted is finished or undone first.
        """
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file():
            raise ApplianceError(f"{root}: no project here (missing {DB_NAME}); run `init` first")
        check_unlocked()  # a tablet its lab revoked opens nothing
        key = cls.resolve_key(root, key)
        pragma = at_rest.StoreKeys(key).db_pragma if key is not None else None
        dbm.quick_check(path, pragma)  # never write into a damaged file
        dbm.check_schema(path, pragma)
        return cls(root, key=key)

    @staticmethod
    def resolve_key(root: Path, key: bytes | None = None) -> bytes | None:
        """The key to open `root` with (None: a plain project), after crash recovery."""
        at_rest.recover(root)
        at_rest.refuse_erased(root)
        if not at_rest.is_encrypted(root):
            return None
        return key if key is not None else at_rest.key_for(root)

    @classmethod
    def peek(cls, root: Path | str) -> Project:
        """Open the project to read what a list of projects shows (Home), without the
        integrity check `open` runs before work starts.

        The check guards against writing into a damaged file; a look at counts writes nothing,
        and at 100,000 images the check costs some 0.4 s per project on every Home visit. A
        damaged file still fails here, on its first read, as one line naming it. A project
        that needs a migration (first look after an update) is opened in full instead.
        """
        root = Path(root)
        path = root / DB_NAME
        if not path.is_file():
            raise ApplianceError(f"{root}: no project here (missing {DB_NAME}); run `init` first")
        if (root / at_rest.MARKER).exists():
            return cls.open(root)  # an interrupted migration to finish or undo first
        key = cls.resolve_key(root, None)
        pragma = at_rest.StoreKeys(key).db_pragma if key is not None else None
        if path.stat().st_size == 0 or len(dbm.applied_migrations(path, pragma)) != len(MIGRATIONS):
            return cls.open(root, key)  # refuses newer and empty files; migrates older ones
        try:
            return cls(root, migrate=False, key=key)
        except dbm.DatabaseError as exc:
            raise ApplianceError(f"{path}: not a readable project database ({exc})") from exc

    def close(self) -> None:
        """Close every thread's connection (the project can be opened again)."""
        with self._connections_lock:
            self._closed = True
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[None]:
        """One atomic unit of work (`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on error)."""
        return dbm.transaction(self.db)

    # classes ---------------------------------------------------------------------------------

    def classes(self) -> dict[int, str]:
        """Class id -> name, by id."""
        return dict(self.db.execute("SELECT id, name FROM classes ORDER BY id").fetchall())

    # images ----------------------------------------------------------------------------------

    def blob_path(self, sha256: str, suffix: str) -> Path:
        """Where the original file with this content hash is (or would be) stored."""
        return self.root / IMAGES_DIR / sha256[:2] / f"{sha256}{suffix}"

    def _image_from_row(self, row: sqlite3.Row) -> ImageRecord:
        return ImageRecord(
            id=row["id"],
            sha256=row["sha256"],
            page=row["page"],
            name=row["name"],
            path=self.root / row["blob"],
            height=row["height"],
            width=row["width"],
            channels=row["channels"],
            dtype=row["dtype"],
            sequence=row["sequence"],
            frame=row["frame"],
            cherry_picked=bool(row["cherry_picked"]),
        )

    _IMAGE_COLUMNS = (
        "id, sha256, page, name, blob, height, width, channels, dtype, sequence, frame, "
        "cherry_picked"
    )

    def images(self) -> list[ImageRecord]:
        """Every image, by id."""
        rows = dbm.rows(self.db, f"SELECT {self._IMAGE_COLUMNS} FROM images ORDER BY id")
        return [self._image_from_row(r) for r in rows]

    def image(self, image_id: int) -> ImageRecord:
        """The image with this id (ApplianceError when there is none)."""
        rows = dbm.rows(
            self.db, f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)
        )
        if not rows:
            raise ApplianceError(f"no image with id {image_id} in {self.root}")
        return self._image_from_row(rows[0])

    def find_image(self, ref: str) -> ImageRecord:
        """An image by id, by file name (or stem), or by a unique sha256 prefix."""
        ref = str(ref).strip()
        if ref.isdigit():
            row = self.db.execute("SELECT id FROM images WHERE id = ?", (int(ref),)).fetchone()
            if row:
                return self.image(row[0])
        # prefix comparisons, not LIKE: `%` and `_` in what the user typed are plain characters
        rows = self.db.execute(
            "SELECT id FROM images WHERE name = ? OR substr(name, 1, length(?) + 1) = ? || '.' "
            "ORDER BY id",
            (ref, ref, ref),
        ).fetchall()
        if not rows and len(ref) >= 6:
            rows = self.db.execute(
                "SELECT id FROM images WHERE substr(sha256, 1, length(?)) = ? ORDER BY id",
                (ref.lower(), ref.lower()),
            ).fetchall()
        if not rows:
            raise ApplianceError(f"no image matching '{ref}' in {self.root}")
        if len(rows) > 1:
            ids = ", ".join(str(r[0]) for r in rows[:5])
            raise ApplianceError(f"'{ref}' matches several images (ids {ids}); give an id")
        return self.image(rows[0][0])

    def load_pixels(self, image_id: int) -> np.ndarray:
        """Decoded pixels of an image in their stored dtype: (H, W) grey or (H, W, 3) RGB."""
        rec = self.image(image_id)
        with self.open_original(rec.path) as fh:
            return read_image(fh, page=rec.page, name=rec.name)

    # stored originals: every reader and writer of images/ and slides/ goes through these, so
    # an encrypted project's files are sealed and opened in one place (`at_rest`)

    @property
    def encrypted(self) -> bool:
        """Whether this project is encrypted at rest (and open with its key)."""
        return self.keys is not None

    def open_original(self, path: Path) -> BinaryIO:
        """The plain bytes of a stored original (image or slide) as a seekable binary file;
        ApplianceError naming the file when it cannot be read or does not authenticate."""
        try:
            return at_rest.open_file(self.keys, path)
        except OSError as exc:
            raise ApplianceError(f"{path}: cannot read ({exc.strerror})") from exc

    def store_original(self, source: Path, dest: Path) -> None:
        """Store the plain file `source` durably as the original `dest` (sealed when the
        project is encrypted)."""
        at_rest.store_file(self.keys, source, dest)

    def adopt_original(self, staged: Path, dest: Path) -> None:
        """Make the plain file `staged` (a finished download) the original `dest`: moved into
        place in a plain project, never copied (a slide is gigabytes); sealed, then removed,
        in an encrypted one."""
        if self.encrypted:
            self.store_original(staged, dest)
            staged.unlink()
        else:
            replace_durably(staged, dest)

    def original_sha256(self, path: Path) -> str:
        """sha256 of a stored original's plain bytes."""
        return at_rest.file_sha256(self.keys, path)

    def original_size(self, path: Path) -> int:
        """Size in bytes of a stored original's plain bytes."""
        return at_rest.file_size(self.keys, path)

    def holds_original(self, path: Path, sha256: str) -> bool:
        """Whether `path` is a stored original whose plain bytes hash to `sha256`."""
        try:
            return path.is_file() and self.original_sha256(path) == sha256
        except (OSError, ApplianceError):
            return False

    def image_names(self) -> dict[int, str]:
        """Image id -> file name, for listings."""
        return dict(self.db.execute("SELECT id, name FROM images").fetchall())

    def image_positions(self) -> list[ImagePosition]:
        """Every image's sequence, frame and cherry-pick flag, by id (cheaper than `images`:
        the selector reads 100,000 of them at start)."""
        columns = ", ".join(ImagePosition._fields)  # the fields are named as the columns
        cursor = self.db.execute(f"SELECT {columns} FROM images ORDER BY id")
        return list(map(ImagePosition._make, cursor))

    def unlabeled_image_ids(self) -> list[int]:
        """Images without any label version (not even a pre-label), by id."""
        rows = self.db.execute(
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM labels) ORDER BY id"
        )
        return [r[0] for r in rows]

    def control_image_ids(self) -> set[int]:
        """Images that carry a quality control (gold, synthetic, planted)."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT image_id FROM controls")}

    def set_cherry_picked(self, image_id: int, flag: bool = True) -> None:
        """Flag (or unflag) an image the user wants labeled early (selector strategy)."""
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
        merges: list[int] | None = None,
    ) -> int:
        """Append a new version (one transaction) and return its id.

        `merges` names other versions of the image this one resolves besides its parent
        (the heads of a conflict the expert picked from or merged: `appliance.store.conflicts`).
        """
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
        blob = encode_runs(label.shape, values, lengths, label.objects)
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
            assert cur.lastrowid is not None  # an INSERT into a rowid table sets it
            oplog.record_label(self.db, cur.lastrowid, merges=merges or [])
            return cur.lastrowid

    def _ensure_annotator(self, name: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO annotators (name, created) VALUES (?, ?)", (name, dbm.utcnow())
        )

    def latest_label(self, image_id: int) -> LabelVersion | None:
        """The newest version of an image's label, or None when it has none."""
        rows = dbm.rows(
            self.db,
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE image_id = ? ORDER BY id DESC LIMIT 1",
            (image_id,),
        )
        return _label_from_row(rows[0]) if rows else None

    def label_version(self, version_id: int) -> LabelVersion:
        """One version by id (ApplianceError when there is none)."""
        rows = dbm.rows(self.db, f"SELECT {_LABEL_COLUMNS} FROM labels WHERE id = ?", (version_id,))
        if not rows:
            raise ApplianceError(f"no label version {version_id} in {self.root}")
        return _label_from_row(rows[0])

    def history(self, image_id: int) -> list[LabelVersion]:
        """Every version of an image's label, oldest first."""
        rows = dbm.rows(
            self.db,
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE image_id = ? ORDER BY id",
            (image_id,),
        )
        return [_label_from_row(r) for r in rows]

    def labeled_image_count(self) -> int:
        """How many images have at least one label version (one count, not the ids)."""
        return int(self.db.execute("SELECT count(DISTINCT image_id) FROM labels").fetchone()[0])

    def labeled_image_ids(self) -> list[int]:
        """Images with at least one label version of any source, by id."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT image_id FROM labels ORDER BY 1")]

    def human_labeled_image_ids(self) -> list[int]:
        """Images with at least one version a person made or checked (`HUMAN_SOURCES`)."""
        return [r[0] for r in self.db.execute(f"{HUMAN_LABELED_SQL} ORDER BY image_id")]

    def latest_human_versions(self, limit: int) -> list[tuple[int, int]]:
        """(image id, newest human version id) for the `limit` most recently labeled images."""
        rows = self.db.execute(
            f"SELECT image_id, MAX(id) FROM labels WHERE {_HUMAN} "
            "AND image_id NOT IN (SELECT image_id FROM controls) "  # test answers, not truth
            "GROUP BY image_id ORDER BY MAX(id) DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    def previous_human_version(self, image_id: int) -> int | None:
        """Newest human version of the closest earlier labeled frame of the same sequence and
        size, or None (no sequence, first frame, nothing labeled before). Control frames are
        passed over: an annotator's answer on a control is no one's pre-label."""
        rec = self.image(image_id)
        if rec.sequence is None or rec.frame is None:
            return None
        row = self.db.execute(
            "SELECT l.id FROM labels l JOIN images i ON i.id = l.image_id "
            f"WHERE i.sequence = ? AND i.frame < ? AND i.height = ? AND i.width = ? AND {_HUMAN} "
            "AND i.id NOT IN (SELECT image_id FROM controls) "  # a test answer is no pre-label
            "ORDER BY i.frame DESC, l.id DESC LIMIT 1",
            (rec.sequence, rec.frame, rec.height, rec.width),
        ).fetchone()
        return None if row is None else int(row[0])

    def newest_versions(self, *, exclude_source: str, only_coarse: bool = False) -> list[int]:
        """Newest version id of every labeled image, unless that version came from
        `exclude_source`; `only_coarse` keeps pre-labels and versions marked coarse. By image."""
        extra = "AND (l.source = 'prelabel' OR l.coarse = 1)" if only_coarse else ""
        rows = self.db.execute(
            "SELECT l.id FROM labels l JOIN "
            "(SELECT image_id, MAX(id) AS id FROM labels GROUP BY image_id) n "
            f"ON l.id = n.id WHERE l.source != ? {extra} ORDER BY l.image_id",
            (exclude_source,),
        ).fetchall()
        return [r[0] for r in rows]

    # annotators ------------------------------------------------------------------------------

    def annotators(self) -> list[dict[str, Any]]:
        """Every column of every annotator, by name (scores added later travel along)."""
        rows = [dict(r) for r in dbm.rows(self.db, "SELECT * FROM annotators ORDER BY name")]
        return [{**r, "scores": json.loads(r["scores"] or "null")} for r in rows]

    # settings and events ---------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default`."""
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under `key` (replacing the old one)."""
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
        """Append to the event log (opened, saved, skipped ...; `detail` is stored as JSON)."""
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
