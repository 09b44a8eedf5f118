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
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.store import oplog
from appliance.store.db import transaction, utcnow
from appliance.store.project import Project

__all__ = [
    "apply_remote",
    "backfill",
    "blob_file",
    "get_state",
    "mark_sent",
    "missing_blobs",
    "pending",
    "pending_blobs",
    "pending_count",
    "remember_upload",
    "set_state",
    "upload_url",
]


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


def upload_url(project: Project, sha256: str) -> str | None:
    """Where a started upload of `sha256` lives on the server, so it resumes after a crash."""
    return oplog.upload_url(project.db, sha256)


def remember_upload(project: Project, sha256: str, url: str | None) -> None:
    """Store (or with None forget) the upload resource of `sha256`."""
    oplog.remember_upload(project.db, sha256, url)


def backfill(project: Project) -> int:
    """Log images and label versions that predate the log (projects made before sync existed).

    Images first, then label versions in save order, so parents precede children. Returns the
    number of operations added; a second call adds none.
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
    if images or labels:
        with transaction(db):
            for image_id in images:
                oplog.record_image(db, image_id)
            for label_id in labels:
                oplog.record_label(db, label_id)
    return len(images) + len(labels)


def blob_file(project: Project, sha256: str) -> Path | None:
    """The local file holding blob `sha256`, when this tablet has it."""
    row = project.db.execute(
        "SELECT blob FROM images WHERE sha256 = ? LIMIT 1", (sha256,)
    ).fetchone()
    if row is None:
        return None
    path = project.root / row[0]
    return path if path.is_file() else None


def missing_blobs(project: Project, ops: Iterable[oplog.Operation]) -> dict[str, str]:
    """Blobs (sha256 → file suffix) that pulled image operations need and this tablet lacks."""
    out: dict[str, str] = {}
    for op in ops:
        if op.kind == "image.added" and op.blob and blob_file(project, op.blob) is None:
            suffix = str(op.payload.get("suffix", ""))
            if not re.fullmatch(r"(\.[A-Za-z0-9]{1,8})?", suffix):
                raise ApplianceError(f"lab server sent an invalid file suffix in {op.uid}")
            out[op.blob] = suffix
    return out


def apply_remote(project: Project, ops: list[oplog.Operation], checkpoint: int) -> int:
    """Apply pulled operations and advance the checkpoint, all in one transaction.

    oplog.Operations already held (this tablet's own, or pulled before a crash) are skipped, so a
    replay changes nothing. Blobs must already be stored (`missing_blobs`). Returns how many
    operations were new.
    """
    db = project.db
    new = 0
    with transaction(db):
        for op in ops:
            if db.execute("SELECT 1 FROM operations WHERE uid = ?", (op.uid,)).fetchone():
                continue
            try:
                if op.kind == "image.added":
                    _apply_image(project, op)
                elif op.kind == "label.saved":
                    _apply_label(db, op)
            except (KeyError, TypeError, ValueError) as exc:  # binascii.Error is a ValueError
                raise ApplianceError(
                    f"lab server sent operation {op.uid} that cannot be applied ({exc!r:.100})"
                ) from exc
            db.execute(
                "INSERT INTO operations (uid, kind, ref, payload, blob, origin, recorded) "
                "VALUES (?, ?, ?, ?, ?, 'server', ?)",
                (op.uid, op.kind, op.ref, json.dumps(op.payload), op.blob, utcnow()),
            )
            new += 1
        current = db.execute("SELECT value FROM sync_state WHERE key = 'checkpoint'").fetchone()
        if current is None or int(current[0]) < checkpoint:  # two syncs at once never go back
            oplog.put_state(db, "checkpoint", str(checkpoint))
    return new


def _apply_image(project: Project, op: oplog.Operation) -> None:
    p = op.payload
    page = p.get("page")
    exists = project.db.execute(
        "SELECT 1 FROM images WHERE sha256 = ? AND page IS ?", (op.blob, page)
    ).fetchone()
    if exists:
        return
    assert op.blob is not None
    path = project.blob_path(op.blob, str(p.get("suffix", "")))
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


def _apply_label(db: sqlite3.Connection, op: oplog.Operation) -> None:
    p = op.payload
    if db.execute("SELECT 1 FROM labels WHERE uid = ?", (p["uid"],)).fetchone():
        return
    sha, _, page = str(p["image"]).partition(":")
    image = db.execute(
        "SELECT id FROM images WHERE sha256 = ? AND page IS ?", (sha, int(page) if page else None)
    ).fetchone()
    if image is None:
        raise ApplianceError(f"lab server sent label {p['uid']} before its image {p['image']}")
    parent_id = None
    if p.get("parent"):
        parent = db.execute("SELECT id FROM labels WHERE uid = ?", (p["parent"],)).fetchone()
        if parent is None:
            raise ApplianceError(f"lab server sent label {p['uid']} before its parent")
        parent_id = parent[0]
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
