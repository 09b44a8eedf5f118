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
from typing import Any

from appliance.errors import ApplianceError
from appliance.store.db import transaction, utcnow
from appliance.store.opcheck import UID_RE, image_ref

__all__ = [
    "KINDS",
    "Operation",
    "erase_state",
    "get_state",
    "image_ref",
    "mark_sent",
    "operation_uids",
    "pending",
    "pending_blobs",
    "pending_count",
    "put_state",
    "record",
    "record_control_added",
    "record_image",
    "record_label",
    "record_model_activated",
    "record_refusal",
    "record_region",
    "record_slide",
    "refusals",
    "remember_upload",
    "set_state",
    "upload_url",
]

KINDS = (
    "image.added",
    "label.saved",
    "control.scored",
    "model.activated",
    "control.added",
    "slide.added",
    "region.added",
)


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
        except (KeyError, TypeError, ValueError) as exc:
            raise ApplianceError(f"lab server sent a malformed operation: {data!r:.200}") from exc
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


def record_slide(db: sqlite3.Connection, slide_id: int) -> str:
    """Log the slide row `slide_id` as added (inside the transaction that inserted it); its
    blob is the slide file, which sync uploads once, resumably, like an image's original."""
    row = db.execute(
        "SELECT sha256, name, blob, width, height, levels, mpp, vendor FROM slides WHERE id = ?",
        (slide_id,),
    ).fetchone()
    sha, name, blob, width, height, levels, mpp, vendor = row
    payload = {
        "sha256": sha,
        "name": name,
        "suffix": Path(blob).suffix,
        "width": width,
        "height": height,
        "levels": levels,
        "mpp": mpp,
        "vendor": vendor,
    }
    return record(db, "slide.added", sha, payload, blob=sha)


def record_region(db: sqlite3.Connection, image_id: int) -> str:
    """Log where region image `image_id` lies on its slide (inside the transaction that
    linked it, after its `image.added`): level-0 corner, the slide by its sha256, origin."""
    row = db.execute(
        "SELECT i.sha256, i.page, s.sha256, r.x, r.y, r.origin FROM regions r "
        "JOIN images i ON i.id = r.image_id JOIN slides s ON s.id = r.slide_id "
        "WHERE r.image_id = ?",
        (image_id,),
    ).fetchone()
    sha, page, slide, x, y, origin = row
    ref = image_ref(sha, page)
    payload = {"image": ref, "slide": slide, "x": x, "y": y, "origin": origin}
    return record(db, "region.added", ref, payload)


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


def record_refusal(db: sqlite3.Connection, key: str, reason: str, data: Any) -> None:
    """Keep aside a pulled operation that cannot even be parsed, with its reason."""
    with transaction(db):
        put_state(db, f"refused:{key}", json.dumps({"reason": reason, "op": data}, default=str))


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


# sync state: server address, token, checkpoint, last success and error --------------------


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
                put_state(db, key, value)


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


def put_state(db: sqlite3.Connection, key: str, value: str) -> None:
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
