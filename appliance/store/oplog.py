"""The tablet's append-only operation log: what sync sends to the lab server and receives back.

Every change a tablet makes (image added, label version saved, control scored, model activated)
is recorded as an operation with an id made on the device, in the same transaction as the
change itself, so a change and its operation exist together or not at all. `outbox` lists the
local operations the server has not acknowledged; pulled operations from other tablets are
applied (images and label versions inserted under their global ids) and logged with origin
`server`, so every tablet ends with the union of everyone's operations. No clock is ever
compared: order comes from the log and the server's sequence numbers, identity from the ids.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.durable import holds, replace_durably
from appliance.errors import ApplianceError
from appliance.store.db import transaction, utcnow
from appliance.store.opcheck import SUFFIX_RE, UID_RE, check_operation, image_ref

if TYPE_CHECKING:
    from appliance.store.project import Project

__all__ = [
    "KINDS",
    "Operation",
    "apply_remote",
    "backfill",
    "blob_file",
    "erase_state",
    "get_state",
    "image_ref",
    "mark_sent",
    "missing_blobs",
    "operation_uids",
    "original_on_disk",
    "pending",
    "pending_blobs",
    "pending_count",
    "record",
    "record_control_added",
    "record_image",
    "record_label",
    "record_model_activated",
    "record_refusal",
    "refusals",
    "remember_upload",
    "set_state",
    "upload_url",
]

KINDS = ("image.added", "label.saved", "control.scored", "model.activated", "control.added")


@dataclass(frozen=True)
class Operation:
    """One logged change; `blob` names (by sha256) a file the server must hold before it."""

    uid: str
    kind: str
    ref: str
    payload: dict[str, Any]
    blob: str | None = None
    device: int | None = None  # the lab server's id of the device that made it (pulled ones)

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "uid": self.uid,
            "kind": self.kind,
            "ref": self.ref,
            "payload": self.payload,
            "blob": self.blob,
        }
        return wire if self.device is None else wire | {"device": self.device}

    @classmethod
    def from_wire(cls, data: Any) -> Operation:
        """Parse an operation the server sent; anything malformed is refused in one line."""
        try:
            op = cls(
                uid=str(data["uid"]),
                kind=str(data["kind"]),
                ref=str(data["ref"]),
                payload=dict(data["payload"]),
                blob=None if data.get("blob") is None else str(data["blob"]),
                device=None if data.get("device") is None else int(data["device"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ApplianceError(f"lab server sent a malformed operation: {data!r:.200}") from None
        if not UID_RE.match(op.uid):  # `opcheck.check_operation` checks everything else
            raise ApplianceError(f"lab server sent an invalid operation id: {op.uid!r:.80}")
        return op


def record(
    db: sqlite3.Connection,
    kind: str,
    ref: str,
    payload: dict[str, Any],
    blob: str | None = None,
) -> str:
    """Log a local change; call inside the transaction that makes the change. Returns its id."""
    if kind not in KINDS:
        raise ApplianceError(f"unknown operation kind {kind!r} (one of {', '.join(KINDS)})")
    uid = uuid.uuid4().hex
    now = utcnow()
    db.execute(
        "INSERT INTO operations (uid, kind, ref, payload, blob, origin, recorded) "
        "VALUES (?, ?, ?, ?, ?, 'local', ?)",
        (uid, kind, ref, json.dumps(payload, separators=(",", ":")), blob, now),
    )
    db.execute("INSERT INTO outbox (kind, ref, created) VALUES ('operation', ?, ?)", (uid, now))
    return uid


_IMAGE_COLS = "sha256, page, name, blob, height, width, channels, dtype, sequence, frame"


def record_image(db: sqlite3.Connection, image_id: int) -> str:
    """Log the image row `image_id` as added (inside the transaction that inserted it)."""
    row = db.execute(f"SELECT {_IMAGE_COLS} FROM images WHERE id = ?", (image_id,)).fetchone()
    sha, page, name, blob, height, width, channels, dtype, sequence, frame = row
    payload = {
        "sha256": sha,
        "page": page,
        "name": name,
        "suffix": Path(blob).suffix,
        "height": height,
        "width": width,
        "channels": channels,
        "dtype": dtype,
        "sequence": sequence,
        "frame": frame,
    }
    return record(db, "image.added", image_ref(sha, page), payload, blob=sha)


_LABEL_COLS = (
    "l.uid, i.sha256, i.page, p.uid, l.author, l.source, l.created, l.seconds_spent, l.coarse, "
    "l.reviewed, l.n_instances, l.instances, l.classes"
)


def record_label(db: sqlite3.Connection, label_id: int, merges: Iterable[int] = ()) -> str:
    """Log label version `label_id` as saved (inside the transaction that inserted it);
    `merges`: ids of other versions of the same image it resolves (besides its parent)."""
    row = db.execute(
        f"SELECT {_LABEL_COLS} FROM labels l JOIN images i ON i.id = l.image_id "
        "LEFT JOIN labels p ON p.id = l.parent_id WHERE l.id = ?",
        (label_id,),
    ).fetchone()
    uid, sha, page, parent, author, source, created, seconds, coarse, reviewed, n, blob, cls = row
    payload = {
        "uid": uid,
        "image": image_ref(sha, page),
        "parent": parent,
        "author": author,
        "source": source,
        "created": created,
        "seconds_spent": seconds,
        "coarse": bool(coarse),
        "reviewed": bool(reviewed),
        "n_instances": n,
        "instances": base64.b64encode(blob).decode("ascii"),
        "classes": cls,
    }
    merged = []
    for other in merges:
        found = db.execute(
            "SELECT uid FROM labels WHERE id = ? AND image_id = "
            "(SELECT image_id FROM labels WHERE id = ?)",
            (other, label_id),
        ).fetchone()
        if found is None:
            raise ApplianceError(f"version {other} is not a version of the same image")
        merged.append(found[0])
    if merged:
        payload["merges"] = merged
    return record(db, "label.saved", uid, payload)


def record_control_scored(
    db: sqlite3.Connection, label_id: int, annotator: str, scores: dict[str, float]
) -> str:
    """Log that label version `label_id`, saved on a control item, was scored (call inside the
    transaction that stores the score). `scores["dice"]` is what the lab page averages."""
    row = db.execute("SELECT uid FROM labels WHERE id = ?", (label_id,)).fetchone()
    payload: dict[str, Any] = {"label": row[0], "annotator": annotator}
    payload |= {k: float(v) for k, v in scores.items()}
    payload["score"] = float(scores.get("dice", 0.0))
    return record(db, "control.scored", row[0], payload)


def record_control_added(
    db: sqlite3.Connection,
    image_id: int,
    kind: str,
    truth: tuple[bytes, dict[str, int]],
    prelabel: tuple[bytes, dict[str, int]] | None,
    errors: list[dict[str, Any]],
    detail: dict[str, Any],
) -> str:
    """Log that image `image_id` is a control (inside the transaction that stored it).

    The payload says everything a tablet needs to hide and score the control: the image it
    hides behind, its kind, the truth map (encoded as a label's instances) with its class
    table (JSON text, as a label's), the planted pre-label likewise (or null) and the record
    of its planted errors. Sync carries it to every tablet of the project, which keeps it in
    its `controls` table, where exports, training jobs and galleries look before they show
    anything; the truth never becomes a label version anywhere. Checked by
    `opcheck._control_added` before it is numbered or applied.
    """
    sha, page = db.execute("SELECT sha256, page FROM images WHERE id = ?", (image_id,)).fetchone()
    ref = image_ref(sha, page)
    payload = {
        "image": ref,
        "kind": kind,
        "truth": base64.b64encode(truth[0]).decode("ascii"),
        "truth_classes": json.dumps(truth[1]),
        "prelabel": None if prelabel is None else base64.b64encode(prelabel[0]).decode("ascii"),
        "prelabel_classes": None if prelabel is None else json.dumps(prelabel[1]),
        "errors": errors,
        "detail": detail,
    }
    return record(db, "control.added", ref, payload)


def record_model_activated(db: sqlite3.Connection, model_id: str, role: str) -> str:
    """Log that `model_id` became the active model of `role` on this tablet."""
    return record(db, "model.activated", model_id, {"model_id": model_id, "role": role})


def backfill(project: Project) -> int:
    """Log images, controls and label versions that predate the log (projects made before
    sync, or before controls were logged, existed).

    Images first, then controls, then label versions in save order, so parents precede
    children. Returns the number of operations added; a second call adds none.
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
    if images or labels or controls:
        with transaction(db):
            for image_id in images:
                record_image(db, image_id)
            for row in controls:
                _record_stored_control(db, row)
            for label_id in labels:
                record_label(db, label_id)
    return len(images) + len(labels) + len(controls)


def _record_stored_control(db: sqlite3.Connection, row: tuple) -> None:
    """Log a control added before `control.added` existed, from its `controls` row."""
    image_id, kind, truth, truth_classes, prelabel, detail_json, errors = row
    detail = json.loads(detail_json or "{}")
    pre_classes = json.loads(detail.pop("prelabel_classes", None) or "{}")
    pre = None if prelabel is None else (bytes(prelabel), pre_classes)
    truth_map = (bytes(truth), json.loads(truth_classes or "{}"))
    errors_list = json.loads(errors or "[]")
    record_control_added(db, image_id, kind, truth_map, pre, errors_list, detail)


def _from_row(row: tuple) -> Operation:
    return Operation(uid=row[0], kind=row[1], ref=row[2], payload=json.loads(row[3]), blob=row[4])


def pending(db: sqlite3.Connection, limit: int = 500) -> list[Operation]:
    """Local operations the server has not acknowledged, oldest first."""
    rows = db.execute(
        "SELECT o.uid, o.kind, o.ref, o.payload, o.blob FROM outbox b "
        "JOIN operations o ON o.uid = b.ref WHERE b.sent IS NULL AND b.kind = 'operation' "
        "ORDER BY b.id LIMIT ?",
        (limit,),
    )
    return [_from_row(r) for r in rows]


def pending_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0])


def pending_blobs(db: sqlite3.Connection) -> list[str]:
    """Hashes of the files that pending operations need on the server."""
    rows = db.execute(
        "SELECT DISTINCT o.blob FROM outbox b JOIN operations o ON o.uid = b.ref "
        "WHERE b.sent IS NULL AND o.blob IS NOT NULL"
    )
    return [r[0] for r in rows]


def mark_sent(db: sqlite3.Connection, uids: Iterable[str]) -> None:
    """The server acknowledged these operations: they leave the outbox (one transaction)."""
    now = utcnow()
    with transaction(db):
        db.executemany(
            "UPDATE outbox SET sent = ? WHERE kind = 'operation' AND ref = ? AND sent IS NULL",
            [(now, uid) for uid in uids],
        )


def operation_uids(db: sqlite3.Connection) -> list[str]:
    """Every operation this tablet holds, its own and pulled ones, in log order."""
    return [r[0] for r in db.execute("SELECT uid FROM operations ORDER BY seq")]


def blob_file(project: Project, sha256: str) -> Path | None:
    """The local file holding blob `sha256`, when this tablet has it."""
    row = project.db.execute(
        "SELECT blob FROM images WHERE sha256 = ? LIMIT 1", (sha256,)
    ).fetchone()
    if row is None:
        return None
    path = project.root / row[0]
    return path if path.is_file() else None


def original_on_disk(project: Project, sha256: str, suffix: str) -> Path | None:
    """Blob `sha256` stored as an original already, even without an image row (a sync that
    stopped after downloading it), verified by its hash; None when absent or different."""
    path = project.blob_path(sha256, suffix)
    return path if holds(path, sha256) else None


def missing_blobs(project: Project, ops: Iterable[Operation]) -> dict[str, str]:
    """Blobs (sha256 → file suffix) that pulled image operations need and this tablet lacks.
    An operation with an unusable suffix is left to `apply_remote` to refuse."""
    out: dict[str, str] = {}
    for op in ops:
        if op.kind != "image.added" or not op.blob or blob_file(project, op.blob):
            continue
        suffix = op.payload.get("suffix", "")
        usable = isinstance(suffix, str) and SUFFIX_RE.match(suffix)
        if usable and original_on_disk(project, op.blob, suffix) is None:
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

    def blob(self, sha256: str) -> Path | None:
        if sha256 in self.staged:
            return self.staged[sha256]
        held = blob_file(self.project, sha256)
        if held is not None:
            return held
        folder = self.project.blob_path(sha256, "").parent
        return next(iter(sorted(folder.glob(f"{sha256}*"))), None) if folder.is_dir() else None


def apply_remote(
    project: Project,
    ops: list[Operation],
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
                except ApplianceError as exc:  # e.g. a stored original that cannot be moved
                    reason = f"operation {op.uid} ({op.kind}): {exc}"
            if reason is not None:
                _set(db, f"refused:{op.uid}", json.dumps({"reason": reason, "op": op.to_wire()}))
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
            _set(db, "checkpoint", str(checkpoint))
    return new, refused


def record_refusal(db: sqlite3.Connection, key: str, reason: str, data: Any) -> None:
    """Keep aside a pulled operation that cannot even be parsed, with its reason."""
    with transaction(db):
        _set(db, f"refused:{key}", json.dumps({"reason": reason, "op": data}, default=str))


def refusals(db: sqlite3.Connection) -> list[tuple[Operation | None, str]]:
    """Pulled operations this tablet refused (each with its reason), oldest first; the
    operation is None when it could not be parsed at all."""
    out: list[tuple[Operation | None, str]] = []
    rows = db.execute("SELECT value FROM sync_state WHERE key LIKE 'refused:%' ORDER BY rowid")
    for (value,) in rows:
        entry = json.loads(value)
        try:
            op: Operation | None = Operation.from_wire(entry["op"])
        except ApplianceError:
            op = None
        out.append((op, str(entry["reason"])))
    return out


def _apply_image(project: Project, op: Operation, staged: Path | None) -> None:
    p = op.payload
    page = p.get("page")
    path = project.blob_path(str(op.blob), str(p.get("suffix", "")))
    if staged is not None and staged != path:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            replace_durably(staged, path)
        except OSError as exc:
            raise ApplianceError(f"{path}: cannot store the pulled original ({exc})") from None
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


def _apply_label(db: sqlite3.Connection, op: Operation) -> None:
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


# sync state: server address, token, checkpoint, last success and error --------------------


def _apply_control(project: Project, op: Operation) -> None:
    """Make the image a control here too (checked before); the first control of an image
    stays its control."""
    from appliance.store.controls import insert_row  # controls logs through this module

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


def get_state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_state(db: sqlite3.Connection, **values: str | None) -> None:
    """Set (or, with None, clear) several keys in one transaction."""
    with transaction(db):
        for key, value in values.items():
            if value is None:
                db.execute("DELETE FROM sync_state WHERE key = ?", (key,))
            else:
                _set(db, key, value)


def erase_state(db: sqlite3.Connection, key: str) -> None:
    """Remove a secret (an old device token) so that no copy of the file holds its bytes:
    SQLite's secure_delete zeroes the freed cells, and a checkpoint rewrites the database
    file and empties the write-ahead log that still held the old page."""
    db.execute("PRAGMA secure_delete = ON")
    try:
        with transaction(db):
            db.execute("DELETE FROM sync_state WHERE key = ?", (key,))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.execute("PRAGMA secure_delete = OFF")


def _set(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def upload_url(db: sqlite3.Connection, sha256: str) -> str | None:
    """Where a started upload of `sha256` lives on the server, so it resumes after a crash."""
    row = db.execute("SELECT url FROM sync_uploads WHERE sha256 = ?", (sha256,)).fetchone()
    return None if row is None else str(row[0])


def remember_upload(db: sqlite3.Connection, sha256: str, url: str | None) -> None:
    """Store (or with None forget) the upload resource of `sha256`."""
    with transaction(db):
        if url is None:
            db.execute("DELETE FROM sync_uploads WHERE sha256 = ?", (sha256,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO sync_uploads (sha256, url, created) VALUES (?, ?, ?)",
                (sha256, url, utcnow()),
            )
