"""The sync client's typed access to the operation log (`oplog`) of one project.

The sync client (`appliance.sync`) and the Home screen's sync button talk to the store only
through these functions, which take the `Project`: no SQLite connection leaves the store, and
the log's connection-level half (`oplog`, which `Project.save_label` and the importer call
inside their own transactions) needs no `Project`, so `project` and `oplog` import one way.
Each call uses the calling thread's own connection (`Project.db`), so the sync client's upload
workers never share one.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from appliance.errors import ApplianceError
from appliance.store import oplog
from appliance.store.controls import insert_row
from appliance.store.db import transaction, utcnow
from appliance.store.opcheck import SUFFIX_RE, check_operation, image_ref
from appliance.store.project import Project
from appliance.store.slides import SLIDES_DIR

__all__ = [
    "apply_remote",
    "backfill",
    "blob_file",
    "erase_state",
    "get_state",
    "mark_sent",
    "missing_blobs",
    "original_on_disk",
    "pending",
    "pending_blobs",
    "pending_count",
    "record_refusal",
    "refusals",
    "remember_upload",
    "set_state",
    "slide_blobs",
    "upload_url",
]


def erase_state(project: Project, key: str) -> None:
    """Remove a secret (an old device token) so that no copy of the file holds its bytes."""
    oplog.erase_state(project.db, key)


def get_state(project: Project, key: str) -> str | None:
    """One sync setting (server, token, lab_project, checkpoint, last_success, ...)."""
    return oplog.get_state(project.db, key)


def set_state(project: Project, **values: str | None) -> None:
    """Set (or, with None, clear) several sync settings in one transaction."""
    oplog.set_state(project.db, **values)


def pending(project: Project, limit: int = 500) -> list[oplog.Operation]:
    """Local operations the server has not acknowledged, oldest first."""
    return oplog.pending(project.db, limit)


def pending_count(project: Project) -> int:
    """Changes waiting for the server (what the Home screen shows)."""
    return oplog.pending_count(project.db)


def pending_blobs(project: Project) -> list[str]:
    """Hashes of the files that pending operations need on the server."""
    return oplog.pending_blobs(project.db)


def mark_sent(project: Project, uids: Iterable[str]) -> None:
    """The server acknowledged these operations: they leave the outbox (one transaction)."""
    oplog.mark_sent(project.db, uids)


def record_refusal(project: Project, key: str, reason: str, data: Any) -> None:
    """Keep aside a pulled operation that cannot even be parsed, with its reason."""
    oplog.record_refusal(project.db, key, reason, data)


def refusals(project: Project) -> list[tuple[oplog.Operation | None, str]]:
    """Pulled operations this tablet refused (each with its reason), oldest first."""
    return oplog.refusals(project.db)


def upload_url(project: Project, sha256: str) -> str | None:
    """Where a started upload of `sha256` lives on the server, so it resumes after a crash."""
    return oplog.upload_url(project.db, sha256)


def remember_upload(project: Project, sha256: str, url: str | None) -> None:
    """Store (or with None forget) the upload resource of `sha256`."""
    oplog.remember_upload(project.db, sha256, url)


def backfill(project: Project) -> int:
    """Log images, slides, regions, controls and label versions that predate the log
    (projects made before sync, or before controls or slides were logged, existed).

    Images and slides first, then the regions placed on them, then controls, then label
    versions in save order, so whatever an operation names precedes it. Returns the number
    of operations added; a second call adds none.
    """
    db = project.db
    images = [
        r[0]
        for r in db.execute(
            "SELECT id FROM images i WHERE NOT EXISTS (SELECT 1 FROM operations o WHERE "
            "o.kind = 'image.added' AND o.ref = i.sha256 || ':' || coalesce(i.page, '')) "
            "ORDER BY id"
        )
    ]
    labels = [
        r[0]
        for r in db.execute(
            "SELECT id FROM labels l WHERE NOT EXISTS (SELECT 1 FROM operations o WHERE "
            "o.kind = 'label.saved' AND o.ref = l.uid) ORDER BY id"
        )
    ]
    controls = db.execute(
        "SELECT c.image_id, c.kind, c.truth, c.truth_classes, c.prelabel, c.detail, c.errors "
        "FROM controls c JOIN images i ON i.id = c.image_id WHERE c.id IN (SELECT min(id) "
        "FROM controls GROUP BY image_id) AND NOT EXISTS (SELECT 1 FROM operations o WHERE "
        "o.kind = 'control.added' AND o.ref = i.sha256 || ':' || coalesce(i.page, '')) "
        "ORDER BY c.id"
    ).fetchall()
    slides = [
        r[0]
        for r in db.execute(
            "SELECT id FROM slides s WHERE NOT EXISTS (SELECT 1 FROM operations o WHERE "
            "o.kind = 'slide.added' AND o.ref = s.sha256) ORDER BY id"
        )
    ]
    placed = [
        r[0]
        for r in db.execute(
            "SELECT r.image_id FROM regions r JOIN images i ON i.id = r.image_id WHERE NOT "
            "EXISTS (SELECT 1 FROM operations o WHERE o.kind = 'region.added' AND "
            "o.ref = i.sha256 || ':' || coalesce(i.page, '')) ORDER BY r.image_id"
        )
    ]
    if images or labels or controls or slides or placed:
        with transaction(db):
            for image_id in images:
                oplog.record_image(db, image_id)
            for slide_id in slides:
                oplog.record_slide(db, slide_id)
            for image_id in placed:
                oplog.record_region(db, image_id)
            for row in controls:
                _record_stored_control(db, row)
            for label_id in labels:
                oplog.record_label(db, label_id)
    return len(images) + len(labels) + len(controls) + len(slides) + len(placed)


def _record_stored_control(db: sqlite3.Connection, row: tuple) -> None:
    """Log a control added before `control.added` existed, from its `controls` row."""
    image_id, kind, truth, truth_classes, prelabel, detail_json, errors = row
    detail = json.loads(detail_json or "{}")
    pre_classes = json.loads(detail.pop("prelabel_classes", None) or "{}")
    pre = None if prelabel is None else (bytes(prelabel), pre_classes)
    truth_map = (bytes(truth), json.loads(truth_classes or "{}"))
    errors_list = json.loads(errors or "[]")
    oplog.record_control_added(db, image_id, kind, truth_map, pre, errors_list, detail)


def blob_file(project: Project, sha256: str) -> Path | None:
    """The local file holding blob `sha256` (an image's original or a slide file), when this
    tablet has it."""
    row = project.db.execute(
        "SELECT blob FROM images WHERE sha256 = ? UNION ALL "
        "SELECT blob FROM slides WHERE sha256 = ? LIMIT 1",
        (sha256, sha256),
    ).fetchone()
    if row is None:
        return None
    path = project.root / row[0]
    return path if path.is_file() else None


def slide_blobs(project: Project) -> set[str]:
    """Hashes of this tablet's slide files (uploaded as slides: the lab's larger limit)."""
    return {r[0] for r in project.db.execute("SELECT sha256 FROM slides")}


def slide_path(project: Project, sha256: str, suffix: str) -> Path:
    """Where a slide file is stored: `slides/ab/<sha256><suffix>` (as `add_slide` does)."""
    return project.root / SLIDES_DIR / sha256[:2] / f"{sha256}{suffix.lower()}"


def _held_on_disk(project: Project, op: oplog.Operation) -> bool:
    """Whether the file a pulled image or slide operation needs is stored already (even
    without its row: a sync that stopped after moving it), verified by its hash."""
    suffix = str(op.payload.get("suffix", ""))
    if op.kind == "slide.added":
        return project.holds_original(slide_path(project, str(op.blob), suffix), str(op.blob))
    return original_on_disk(project, str(op.blob), suffix) is not None


def original_on_disk(project: Project, sha256: str, suffix: str) -> Path | None:
    """Blob `sha256` stored as an original already, even without an image row (a sync that
    stopped after downloading it), verified by its hash; None when absent or different."""
    path = project.blob_path(sha256, suffix)
    return path if project.holds_original(path, sha256) else None


def missing_blobs(project: Project, ops: Iterable[oplog.Operation]) -> dict[str, str]:
    """Blobs (sha256 → file suffix) that pulled image and slide operations need and this
    tablet lacks. An operation with an unusable suffix is left to `apply_remote` to refuse."""
    out: dict[str, str] = {}
    for op in ops:
        if op.kind not in ("image.added", "slide.added") or not op.blob:
            continue
        if blob_file(project, op.blob) or op.blob in out:
            continue
        suffix = op.payload.get("suffix", "")
        usable = isinstance(suffix, str) and SUFFIX_RE.match(suffix)
        if usable and not _held_on_disk(project, op):
            out[op.blob] = suffix
    return out


class _TabletKnown:
    """`opcheck.Known` answered from this tablet's project (inside the applying transaction,
    so operations applied earlier in the same page count as known)."""

    def __init__(self, project: Project, staged: dict[str, Path]) -> None:
        self.project, self.staged = project, staged
        self._classes: set[int] | None = None

    def image_shape(self, ref: str) -> tuple[int, int] | None:
        sha, _, page = ref.partition(":")
        row = self.project.db.execute(
            "SELECT height, width FROM images WHERE sha256 = ? AND page IS ?",
            (sha, int(page) if page.isdigit() else None),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def version_image(self, uid: str) -> str | None:
        row = self.project.db.execute(
            "SELECT i.sha256, i.page FROM labels l JOIN images i ON i.id = l.image_id "
            "WHERE l.uid = ?",
            (uid,),
        ).fetchone()
        return None if row is None else image_ref(row[0], row[1])

    def class_ids(self) -> set[int]:
        if self._classes is None:
            self._classes = {int(r[0]) for r in self.project.db.execute("SELECT id FROM classes")}
        return self._classes

    def blob(self, sha256: str) -> Path | bytes | Callable[[], BinaryIO] | None:
        if sha256 in self.staged:
            return self.staged[sha256]  # a verified download, plain until it is stored
        held = blob_file(self.project, sha256)
        if held is None:
            for folder in (
                self.project.blob_path(sha256, "").parent,
                slide_path(self.project, sha256, "").parent,
            ):
                if folder.is_dir() and (found := sorted(folder.glob(f"{sha256}*"))):
                    held = found[0]
                    break
        if held is None or not self.project.encrypted:
            return held
        if held.parent.parent.name == SLIDES_DIR:  # a sealed slide: read by region, not whole
            sealed = held
            return lambda: self.project.open_original(sealed)
        try:  # a sealed image original: its plain bytes (images are small)
            with self.project.open_original(held) as fh:
                return fh.read()
        except ApplianceError:
            return None

    def slide_size(self, sha256: str) -> tuple[int, int] | None:
        row = self.project.db.execute(
            "SELECT width, height FROM slides WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))


def apply_remote(
    project: Project,
    ops: list[oplog.Operation],
    checkpoint: int,
    staged: dict[str, Path] | None = None,
) -> tuple[int, list[str]]:
    """Apply pulled operations and advance the checkpoint, all in one transaction.

    Each operation is checked first (`opcheck.check_operation`, the lab server's own check):
    one this tablet cannot use is refused, kept aside with its reason (`refusals`) and never
    applied, and the rest go on, so one bad device never stops this tablet. `staged` holds
    verified downloads (sha256 → file) that a usable image operation moves into place.
    Operations already held (this tablet's own, or pulled before a crash) are skipped, so a
    replay changes nothing. Returns how many operations were new and one line per refusal.
    """
    db = project.db
    staged = dict(staged or {})
    known = _TabletKnown(project, staged)
    new, refused = 0, []
    with transaction(db):
        for op in ops:
            if db.execute("SELECT 1 FROM operations WHERE uid = ?", (op.uid,)).fetchone():
                db.execute("DELETE FROM sync_state WHERE key = ?", (f"refused:{op.uid}",))
                continue
            reason = check_operation(op, known)
            if reason is None:
                try:
                    if op.kind == "image.added":
                        _apply_image(project, op, staged.pop(str(op.blob), None))
                    elif op.kind == "label.saved":
                        _apply_label(db, op)
                    elif op.kind == "control.added":
                        _apply_control(project, op)
                    elif op.kind == "slide.added":
                        _apply_slide(project, op, staged.pop(str(op.blob), None))
                    elif op.kind == "region.added":
                        _apply_region(db, op)
                except ApplianceError as exc:  # e.g. a stored original that cannot be moved
                    reason = f"operation {op.uid} ({op.kind}): {exc}"
            if reason is not None:
                oplog.put_state(
                    db, f"refused:{op.uid}", json.dumps({"reason": reason, "op": op.to_wire()})
                )
                refused.append(reason)
                continue
            db.execute(
                "INSERT INTO operations (uid, kind, ref, payload, blob, origin, recorded, device) "
                "VALUES (?, ?, ?, ?, ?, 'server', ?, ?)",
                (op.uid, op.kind, op.ref, json.dumps(op.payload), op.blob, utcnow(), op.device),
            )
            db.execute("DELETE FROM sync_state WHERE key = ?", (f"refused:{op.uid}",))
            new += 1
        current = db.execute("SELECT value FROM sync_state WHERE key = 'checkpoint'").fetchone()
        if current is None or int(current[0]) < checkpoint:  # two syncs at once never go back
            oplog.put_state(db, "checkpoint", str(checkpoint))
    return new, refused


def _adopt(project: Project, staged: Path | None, path: Path, what: str) -> None:
    """A pulled file (`staged`, its checked download) made the stored `what` at `path`."""
    if staged is None or staged == path:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        project.adopt_original(staged, path)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot store the pulled {what} ({exc})") from exc


def _apply_image(project: Project, op: oplog.Operation, staged: Path | None) -> None:
    p = op.payload
    page = p.get("page")
    path = project.blob_path(str(op.blob), str(p.get("suffix", "")))
    _adopt(project, staged, path, "original")
    exists = project.db.execute(
        "SELECT 1 FROM images WHERE sha256 = ? AND page IS ?", (op.blob, page)
    ).fetchone()
    if exists:
        return
    project.db.execute(
        "INSERT INTO images (sha256, page, name, blob, height, width, channels, dtype, "
        "sequence, frame, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            op.blob,
            page,
            str(p["name"]),
            str(path.relative_to(project.root)),
            int(p["height"]),
            int(p["width"]),
            int(p["channels"]),
            str(p["dtype"]),
            p.get("sequence"),
            p.get("frame"),
            utcnow(),
        ),
    )


def _apply_slide(project: Project, op: oplog.Operation, staged: Path | None) -> None:
    """Store a checked slide file under its hash (moved from the download, never copied) and
    its row; a slide this tablet holds already (imported here too) stays as it is."""
    p = op.payload
    path = slide_path(project, str(op.blob), str(p.get("suffix", "")))
    _adopt(project, staged, path, "slide")
    if project.db.execute("SELECT 1 FROM slides WHERE sha256 = ?", (op.blob,)).fetchone():
        return
    project.db.execute(
        "INSERT INTO slides (sha256, name, blob, width, height, levels, mpp, vendor, "
        "source_path, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        (
            op.blob,
            str(p["name"]),
            str(path.relative_to(project.root)),
            int(p["width"]),
            int(p["height"]),
            int(p["levels"]),
            None if p.get("mpp") is None else float(p["mpp"]),
            p.get("vendor"),
            utcnow(),
        ),
    )


def _apply_region(db: sqlite3.Connection, op: oplog.Operation) -> None:
    """Place a region image on its slide (both checked to exist); an image placed before
    (the same pixels picked twice) keeps its first place."""
    p = op.payload
    sha, _, page = op.ref.partition(":")
    image = db.execute(
        "SELECT id FROM images WHERE sha256 = ? AND page IS ?",
        (sha, int(page) if page.isdigit() else None),
    ).fetchone()[0]
    slide = db.execute("SELECT id FROM slides WHERE sha256 = ?", (p["slide"],)).fetchone()[0]
    db.execute(
        "INSERT OR IGNORE INTO regions (image_id, slide_id, x, y, origin) VALUES (?, ?, ?, ?, ?)",
        (image, slide, int(p["x"]), int(p["y"]), str(p["origin"])),
    )


def _apply_label(db: sqlite3.Connection, op: oplog.Operation) -> None:
    """Insert a checked label version (its image and parent are known: `check_operation`)."""
    p = op.payload
    sha, _, page = str(p["image"]).partition(":")
    image = db.execute(
        "SELECT id FROM images WHERE sha256 = ? AND page IS ?", (sha, int(page) if page else None)
    ).fetchone()
    parent_id = None
    if p.get("parent"):
        parent_id = db.execute("SELECT id FROM labels WHERE uid = ?", (p["parent"],)).fetchone()[0]
    db.execute(
        "INSERT OR IGNORE INTO annotators (name, created) VALUES (?, ?)", (p["author"], utcnow())
    )
    db.execute(
        "INSERT INTO labels (uid, image_id, parent_id, author, source, created, seconds_spent, "
        "coarse, reviewed, n_instances, instances, classes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            p["uid"],
            image[0],
            parent_id,
            p["author"],
            p["source"],
            p["created"],
            float(p["seconds_spent"]),
            int(bool(p["coarse"])),
            int(bool(p["reviewed"])),
            int(p["n_instances"]),
            base64.b64decode(p["instances"]),
            p["classes"],
        ),
    )


def _apply_control(project: Project, op: oplog.Operation) -> None:
    """Make the image a control here too (checked before); the first control of an image
    stays its control."""
    sha, _, page = op.ref.partition(":")
    image = project.db.execute(
        "SELECT id FROM images WHERE sha256 = ? AND page IS ?",
        (sha, int(page) if page.isdigit() else None),
    ).fetchone()
    if project.db.execute("SELECT 1 FROM controls WHERE image_id = ?", (image[0],)).fetchone():
        return
    p = op.payload
    pre = p.get("prelabel")
    insert_row(
        project.db,
        int(image[0]),
        str(p["kind"]),
        (base64.b64decode(p["truth"]), json.loads(p["truth_classes"])),
        None if pre is None else (base64.b64decode(pre), json.loads(p["prelabel_classes"])),
        list(p["errors"]),
        dict(p["detail"]),
    )
