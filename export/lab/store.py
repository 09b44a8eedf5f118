"""Every query of the lab server, on SQLite (default) or PostgreSQL through SQLAlchemy 2.

Operations get the server's sequence numbers here. A puller reads "everything after N", so an
operation must never become visible with a number below one already read: inserts of one
project are serialised (a process lock on SQLite, whose writers are serial anyway; a row lock
on the project in PostgreSQL), so numbers commit in order per project.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    CursorResult,
    Table,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from appliance.store.opcheck import check_operation
from appliance.store.oplog import Operation
from export.lab import schema as t

ROLES = ("tablet", "workstation")
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud, typed on a tablet


def now() -> str:
    """Server clock; only ever used for expiry and display, never to order tablets' work."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def token_hash(secret: str) -> str:
    """Tokens and codes are 256-bit (codes ~60-bit, single use, rate-limited) random secrets:
    a plain sha256 is enough to make a leaked table useless, and costs nothing per request."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Device:
    id: int
    name: str
    role: str
    project_id: int
    project: str
    revoked: bool


@dataclass(frozen=True)
class StoredOp:
    seq: int
    uid: str
    kind: str
    ref: str
    payload: dict[str, Any]
    blob: str | None
    device: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "uid": self.uid,
            "kind": self.kind,
            "ref": self.ref,
            "payload": self.payload,
            "blob": self.blob,
            "device": self.device,
        }


class MissingBlob(Exception):
    """An operation names a blob the project does not hold yet (upload it first)."""


class InvalidOperation(Exception):
    """An operation fails the core's check (`appliance.store.opcheck`): not numbered."""


class _ProjectKnown:
    """`opcheck.Known` answered from a project's operations, loaded in bulk for one batch
    (the images and versions the batch names) and extended as the batch is accepted."""

    def __init__(
        self,
        conn: Connection,
        project_id: int,
        ops: list[dict[str, Any]],
        blob: Callable[[str], Path | bytes | None],
    ) -> None:
        self._blob = blob
        payloads = [op["payload"] for op in ops if isinstance(op.get("payload"), dict)]
        images = {str(p.get("image")) for p in payloads}
        versions = {str(p.get(k)) for p in payloads for k in ("uid", "parent", "label")}
        versions |= {str(m) for p in payloads for m in _listed(p.get("merges"))}
        ops_ = t.operations.c
        self.shapes: dict[str, tuple[int, int]] = {}
        for ref, payload in conn.execute(
            select(ops_.ref, ops_.payload).where(
                ops_.project_id == project_id, ops_.kind == "image.added", ops_.ref.in_(images)
            )
        ):
            p = json.loads(payload)
            self.shapes[ref] = (int(p["height"]), int(p["width"]))
        self.versions: dict[str, str] = dict(
            conn.execute(
                select(ops_.ref, ops_.image).where(
                    ops_.project_id == project_id,
                    ops_.kind == "label.saved",
                    ops_.ref.in_(versions),
                )
            ).all()
        )
        named_slides = {str(p.get("slide")) for p in payloads}
        self.slides: dict[str, tuple[int, int]] = {}
        for ref, payload in conn.execute(
            select(ops_.ref, ops_.payload).where(
                ops_.project_id == project_id,
                ops_.kind == "slide.added",
                ops_.ref.in_(named_slides),
            )
        ):
            p = json.loads(payload)
            self.slides.setdefault(ref, (int(p["width"]), int(p["height"])))
        # who added each image, who labelled it, which are controls: a control's provenance
        self.adders: dict[str, int] = {}
        self.labellers: dict[str, set[int]] = {}
        self.controls: set[str] = set()
        for kind, ref, image, device in conn.execute(
            select(ops_.kind, ops_.ref, ops_.image, ops_.device_id).where(
                ops_.project_id == project_id,
                ops_.kind.in_(("image.added", "label.saved", "control.added")),
                or_(ops_.ref.in_(images), ops_.image.in_(images)),
            )
        ):
            self._record(kind, ref, image, device)

    def _record(self, kind: str, ref: str, image: str | None, device: int) -> None:
        if kind == "image.added":
            self.adders.setdefault(ref, device)
        elif kind == "label.saved" and image is not None:
            self.labellers.setdefault(image, set()).add(device)
        elif kind == "control.added":
            self.controls.add(ref)

    def control_refusal(self, op: Operation, device_id: int) -> str | None:
        """Why `device_id` may not make `op.ref` a control. A control hides its image from
        every tablet's exports and training jobs and scores whoever answers it, so only the
        device that added the image may declare it, once, before another device labelled it:
        otherwise one rogue device could pull honest work out of training."""
        image = op.ref
        if self.adders.get(image) != device_id:
            return f"operation {op.uid} (control.added): image {image} was added by another device"
        if self.labellers.get(image, set()) - {device_id}:
            return f"operation {op.uid} (control.added): image {image} was labelled elsewhere"
        if image in self.controls:
            return f"operation {op.uid} (control.added): image {image} is a control already"
        return None

    def note(self, op: Operation, device_id: int) -> None:
        """`op` was accepted from `device_id`: later operations of the batch may name it."""
        image = op.payload.get("image") if op.kind == "label.saved" else None
        self._record(op.kind, op.ref, None if image is None else str(image), device_id)
        if op.kind == "image.added":
            self.shapes[op.ref] = (int(op.payload["height"]), int(op.payload["width"]))
        elif op.kind == "label.saved":
            self.versions[op.ref] = str(op.payload["image"])
        elif op.kind == "slide.added":
            self.slides.setdefault(op.ref, (int(op.payload["width"]), int(op.payload["height"])))

    def image_shape(self, ref: str) -> tuple[int, int] | None:
        return self.shapes.get(ref)

    def version_image(self, uid: str) -> str | None:
        return self.versions.get(uid)

    def class_ids(self) -> None:
        return None  # classes are edited on each tablet; tablets check this part

    def blob(self, sha256: str) -> Path | bytes | None:
        return self._blob(sha256)

    def slide_size(self, sha256: str) -> tuple[int, int] | None:
        return self.slides.get(sha256)


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class LabStore:
    """One database; safe to share between the server's worker threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.Lock()
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Connection]:
        """One write transaction; serialised in-process on SQLite.

        `durable=False` skips waiting for the disk (SQLite synchronous=NORMAL in WAL mode,
        PostgreSQL synchronous_commit=off): for records that a power cut may take back without
        harm (upload bookkeeping, blob rows a device re-sends when asked what is missing, last
        seen). Both databases make the log durable in order, so the next durable commit (an
        operation push) makes every earlier one durable too; an operation is therefore never
        kept while the blob it names is lost.
        """
        if self.sqlite:
            with self._lock, self.engine.connect() as conn:
                conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                conn.commit()
                with conn.begin():
                    yield conn
        else:
            with self.engine.begin() as conn:
                if not durable:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    # projects, enrollment, devices ---------------------------------------------------------

    def project_id(self, conn: Connection, name: str, create: bool = False) -> int | None:
        row = conn.execute(select(t.projects.c.id).where(t.projects.c.name == name)).first()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        res = conn.execute(insert(t.projects).values(name=name, created=now()))
        return _new_id(res)

    def create_enrollment(
        self, project: str, role: str, name: str, ttl_hours: float = 24.0
    ) -> tuple[str, str]:
        """A one-time code for a new device of `project`; returns (code, expiry)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        code = "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3))
        expires = (datetime.now(timezone.utc) + timedelta(hours=ttl_hours)).isoformat(
            timespec="milliseconds"
        )
        with self.write() as conn:
            pid = self.project_id(conn, project, create=True)
            conn.execute(
                insert(t.enrollments).values(
                    code_hash=token_hash(normalise_code(code)),
                    project_id=pid,
                    role=role,
                    name=name,
                    created=now(),
                    expires=expires,
                )
            )
        return code, expires

    def redeem(
        self, code: str, device_name: str | None, proposed: str | None = None
    ) -> tuple[str, Device] | None:
        """Exchange an unused, unexpired code for a new device token (kept hashed).

        The code is marked used in the same transaction that creates the device, by a
        conditional update, so two racing requests with one code get one device. A device
        that proposes its token (`proposed`) can ask again with the same code and token after
        a lost reply and gets the same device; nobody else can, since only the hash is kept.
        """
        h = token_hash(normalise_code(code))
        token = proposed or secrets.token_urlsafe(32)
        with self.write() as conn:
            row = conn.execute(
                select(
                    t.enrollments.c.project_id,
                    t.enrollments.c.role,
                    t.enrollments.c.name,
                    t.enrollments.c.expires,
                    t.enrollments.c.used,
                    t.enrollments.c.device_id,
                ).where(t.enrollments.c.code_hash == h)
            ).first()
            if row is None or row.expires < now():
                return None
            if row.used is not None:
                return self._redeemed_before(conn, row.device_id, proposed)
            claimed = conn.execute(
                update(t.enrollments)
                .where(t.enrollments.c.code_hash == h, t.enrollments.c.used.is_(None))
                .values(used=now())
            )
            if claimed.rowcount != 1:
                return None
            name = (device_name or row.name)[:100]
            res = conn.execute(
                insert(t.devices).values(
                    project_id=row.project_id,
                    name=name,
                    role=row.role,
                    token_hash=token_hash(token),
                    enrolled=now(),
                )
            )
            device_id = _new_id(res)
            conn.execute(
                update(t.enrollments)
                .where(t.enrollments.c.code_hash == h)
                .values(device_id=device_id)
            )
            project = conn.execute(
                select(t.projects.c.name).where(t.projects.c.id == row.project_id)
            ).scalar_one()
        return token, Device(device_id, name, row.role, row.project_id, project, False)

    def _redeemed_before(
        self, conn: Connection, device_id: int | None, proposed: str | None
    ) -> tuple[str, Device] | None:
        """The device a used code made, when the caller proves it is that device."""
        if proposed is None or device_id is None:
            return None
        row = conn.execute(
            select(
                t.devices.c.name,
                t.devices.c.role,
                t.devices.c.project_id,
                t.devices.c.token_hash,
                t.devices.c.revoked,
                t.projects.c.name.label("project"),
            )
            .join(t.projects, t.projects.c.id == t.devices.c.project_id)
            .where(t.devices.c.id == device_id)
        ).first()
        if (
            row is None
            or row.revoked
            or not hmac.compare_digest(row.token_hash, token_hash(proposed))
        ):
            return None
        return proposed, Device(device_id, row.name, row.role, row.project_id, row.project, False)

    def device_for_token(self, token: str) -> Device | None:
        with self.read() as conn:
            row = conn.execute(
                select(
                    t.devices.c.id,
                    t.devices.c.name,
                    t.devices.c.role,
                    t.devices.c.project_id,
                    t.projects.c.name.label("project"),
                    t.devices.c.revoked,
                )
                .join(t.projects, t.projects.c.id == t.devices.c.project_id)
                .where(t.devices.c.token_hash == token_hash(token))
            ).first()
        if row is None:
            return None
        return Device(row.id, row.name, row.role, row.project_id, row.project, bool(row.revoked))

    def touch(self, device_id: int) -> None:
        """Record when a device last synced (the server calls it at most once a minute)."""
        with self.write(durable=False) as conn:
            conn.execute(
                update(t.devices).where(t.devices.c.id == device_id).values(last_seen=now())
            )

    def revoke(self, device_id: int) -> bool:
        with self.write() as conn:
            res = conn.execute(
                update(t.devices)
                .where(t.devices.c.id == device_id, t.devices.c.revoked.is_(None))
                .values(revoked=now())
            )
        return res.rowcount == 1

    def devices(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(
                    t.devices.c.id,
                    t.projects.c.name.label("project"),
                    t.devices.c.name,
                    t.devices.c.role,
                    t.devices.c.enrolled,
                    t.devices.c.last_seen,
                    t.devices.c.revoked,
                )
                .join(t.projects, t.projects.c.id == t.devices.c.project_id)
                .order_by(t.devices.c.id)
            )
            return [dict(r._mapping) for r in rows]

    # blobs and uploads ---------------------------------------------------------------------

    def missing_blobs(self, project_id: int, hashes: list[str]) -> list[str]:
        with self.read() as conn:
            have = {
                r[0]
                for r in conn.execute(
                    select(t.blobs.c.sha256).where(
                        t.blobs.c.project_id == project_id, t.blobs.c.sha256.in_(hashes)
                    )
                )
            }
        return [h for h in hashes if h not in have]

    def has_blob(self, project_id: int, sha256: str) -> bool:
        return not self.missing_blobs(project_id, [sha256])

    def project_bytes(self, project_id: int) -> int:
        """Bytes of the blobs a project holds (the bytes of unfinished uploads are counted
        apart, by the blob store: `open_uploads`)."""
        with self.read() as conn:
            held = conn.execute(
                select(func.coalesce(func.sum(t.blobs.c.size), 0)).where(
                    t.blobs.c.project_id == project_id
                )
            ).scalar_one()
        return int(held)

    def open_uploads(self, project_id: int, device_id: int | None = None) -> list[str]:
        """Ids of a project's unfinished uploads (of one device when given)."""
        where = [t.uploads.c.project_id == project_id]
        if device_id is not None:
            where.append(t.uploads.c.device_id == device_id)
        with self.read() as conn:
            return [r[0] for r in conn.execute(select(t.uploads.c.id).where(*where))]

    def add_upload(self, project_id: int, device_id: int, sha256: str, length: int) -> str:
        upload_id = secrets.token_hex(16)
        with self.write(durable=False) as conn:
            conn.execute(
                insert(t.uploads).values(
                    id=upload_id,
                    project_id=project_id,
                    device_id=device_id,
                    sha256=sha256,
                    length=length,
                    created=now(),
                )
            )
        return upload_id

    def upload(self, project_id: int, device_id: int, upload_id: str) -> tuple[str, int] | None:
        """(sha256, length) of an upload this device started in this project; None for
        another project's or another device's (nobody can write into someone else's)."""
        with self.read() as conn:
            row = conn.execute(
                select(t.uploads.c.sha256, t.uploads.c.length).where(
                    t.uploads.c.id == upload_id,
                    t.uploads.c.project_id == project_id,
                    t.uploads.c.device_id == device_id,
                )
            ).first()
        return None if row is None else (row[0], int(row[1]))

    def finish_upload(self, project_id: int, upload_id: str, sha256: str, size: int) -> None:
        """The verified blob now belongs to the project; the upload record goes."""
        self.drop_upload(upload_id)
        self.add_blob(project_id, sha256, size)

    def add_blob(self, project_id: int, sha256: str, size: int) -> None:
        """A verified blob belongs to the project. Two devices finishing the same blob at once
        both succeed (the row is inserted once)."""
        self._insert_once(
            t.blobs, project_id=project_id, sha256=sha256, size=size, created=now(), durable=False
        )

    def drop_upload(self, upload_id: str) -> None:
        with self.write(durable=False) as conn:
            conn.execute(t.uploads.delete().where(t.uploads.c.id == upload_id))

    def stale_uploads(self, max_age_s: float) -> list[str]:
        """Unfinished uploads older than `max_age_s` (server clock): abandoned ones, e.g. a
        creation whose reply was lost, after which the device made another."""
        cutoff = (datetime.now(timezone.utc) - timedelta(seconds=max_age_s)).isoformat(
            timespec="milliseconds"
        )
        with self.read() as conn:
            rows = conn.execute(select(t.uploads.c.id).where(t.uploads.c.created <= cutoff))
            return [r[0] for r in rows]

    # operations ----------------------------------------------------------------------------

    def push_ops(
        self,
        project_id: int,
        device_id: int,
        ops: list[dict[str, Any]],
        blob: Callable[[str], Path | bytes | None],
    ) -> list[tuple[str, int]]:
        """Accept operations in order; a known uid returns its first number (replay-safe).

        Each new operation must pass the core's `check_operation` against what the project
        held before it (earlier numbers and earlier in this batch), the check every tablet
        runs before applying it; one that fails refuses the whole batch (`InvalidOperation`)
        and nothing is numbered. `blob(sha256)` gives a held blob's file or bytes.
        """
        accepted: list[tuple[str, int]] = []
        with self.write() as conn:
            conn.execute(
                select(t.projects.c.id).where(t.projects.c.id == project_id).with_for_update()
            )
            blobs = {op["blob"] for op in ops if op.get("blob")}
            if blobs:
                have = {
                    r[0]
                    for r in conn.execute(
                        select(t.blobs.c.sha256).where(
                            t.blobs.c.project_id == project_id, t.blobs.c.sha256.in_(blobs)
                        )
                    )
                }
                if blobs - have:
                    raise MissingBlob(sorted(blobs - have)[0])
            uids = [op["uid"] for op in ops]
            known = dict(
                conn.execute(
                    select(t.operations.c.uid, t.operations.c.seq).where(
                        t.operations.c.project_id == project_id, t.operations.c.uid.in_(uids)
                    )
                ).all()
            )
            fresh = [op for op in ops if op["uid"] not in known]
            held = _ProjectKnown(conn, project_id, fresh, blob)
            received = now()
            for op in ops:
                if op["uid"] in known:
                    accepted.append((op["uid"], int(known[op["uid"]])))
                    continue
                operation = Operation.from_wire(op)
                if reason := check_operation(operation, held):
                    raise InvalidOperation(reason)
                if operation.kind == "control.added" and (
                    reason := held.control_refusal(operation, device_id)
                ):
                    raise InvalidOperation(reason)
                held.note(operation, device_id)
                payload = op["payload"]
                label = op["kind"] == "label.saved"
                res = conn.execute(
                    insert(t.operations).values(
                        project_id=project_id,
                        uid=op["uid"],
                        device_id=device_id,
                        kind=op["kind"],
                        ref=op["ref"],
                        image=str(payload.get("image"))[:80] if label else None,
                        parent=(payload.get("parent") or None) if label else None,
                        blob=op.get("blob"),
                        payload=json.dumps(payload, separators=(",", ":")),
                        received=received,
                    )
                )
                seq = _new_id(res)
                known[op["uid"]] = seq
                accepted.append((op["uid"], seq))
        return accepted

    def pull_ops(self, project_id: int, after: int, limit: int) -> list[StoredOp]:
        """Operations after `after`, in order, about `limit` of them. A page never ends between
        an image's `image.added` and its `control.added` or `region.added`: a tablet whose sync is
        cut between two pages would otherwise hold a control (or a slide region) as an ordinary
        image until its next sync."""
        ops_ = t.operations.c
        columns = (ops_.seq, ops_.uid, ops_.kind, ops_.ref, ops_.payload, ops_.blob, ops_.device_id)
        with self.read() as conn:
            rows = list(
                conn.execute(
                    select(*columns)
                    .where(ops_.project_id == project_id, ops_.seq > after)
                    .order_by(ops_.seq)
                    .limit(limit)
                ).all()
            )
            added = {r.ref for r in rows if r.kind == "image.added"}
            if added:
                last = rows[-1].seq
                until = conn.execute(
                    select(func.max(ops_.seq)).where(
                        ops_.project_id == project_id,
                        ops_.kind.in_(("control.added", "region.added")),
                        ops_.ref.in_(added),
                        ops_.seq > last,
                    )
                ).scalar()
                if until is not None:
                    rows += conn.execute(
                        select(*columns)
                        .where(ops_.project_id == project_id, ops_.seq > last, ops_.seq <= until)
                        .order_by(ops_.seq)
                    ).all()
        return [
            StoredOp(r.seq, r.uid, r.kind, r.ref, json.loads(r.payload), r.blob, r.device_id)
            for r in rows
        ]

    def conflicts(self, project_id: int) -> list[dict[str, Any]]:
        """Images whose versions come from more than one device and that have more than one
        head (a version nothing builds on or merges): concurrent versions nobody reconciled.

        The tablets' rule (`appliance.store.conflicts`): an ordinary save builds on one head
        and never closes a conflict; only a version that merges the other heads does. Each
        head is listed with its parent and the device that made it; nothing is merged here.
        """
        ops = t.operations.c
        with self.read() as conn:
            rows = conn.execute(
                select(ops.image, ops.ref, ops.parent, ops.device_id, t.devices.c.name, ops.seq)
                .join(t.devices, t.devices.c.id == ops.device_id)
                .where(ops.project_id == project_id, ops.kind == "label.saved")
                .order_by(ops.seq)
            ).all()
            resolving = conn.execute(
                select(ops.payload).where(
                    ops.project_id == project_id,
                    ops.kind == "label.saved",
                    ops.payload.contains('"merges":'),
                )
            ).all()
        closed = {r.parent for r in rows if r.parent}
        for (payload,) in resolving:
            closed.update(str(m) for m in json.loads(payload).get("merges", []))
        devices: dict[str, set[int]] = {}
        heads: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            devices.setdefault(r.image, set()).add(r.device_id)
            if r.ref not in closed:
                heads.setdefault(r.image, []).append(
                    {
                        "version": r.ref,
                        "parent": r.parent,
                        "device": r.name,
                        "device_id": r.device_id,
                        "seq": r.seq,
                    }
                )
        return [
            {"image": img, "heads": hs}
            for img, hs in heads.items()
            if len(hs) > 1 and len(devices[img]) > 1
        ]

    # models and jobs -----------------------------------------------------------------------

    def add_model(
        self, project_id: int, device_id: int, bundle_id: str, sha256: str, summary: dict
    ) -> None:
        self._insert_once(
            t.models,
            project_id=project_id,
            bundle_id=bundle_id,
            sha256=sha256,
            summary=json.dumps(summary),
            device_id=device_id,
            pushed=now(),
        )

    def _insert_once(self, table: Table, durable: bool = True, **values: Any) -> None:
        """Insert unless the row's unique key exists (a bundle pushed twice is listed once)."""
        with self.write(durable) as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(table).values(**values))
            except IntegrityError:
                pass

    def models(self, project_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(
                    t.models.c.bundle_id, t.models.c.sha256, t.models.c.summary, t.models.c.pushed
                )
                .where(t.models.c.project_id == project_id)
                .order_by(t.models.c.id)
            ).all()
        return [
            {"bundle_id": r.bundle_id, "sha256": r.sha256, "pushed": r.pushed}
            | json.loads(r.summary)
            for r in rows
        ]

    def add_job(self, project_id: int, device_id: int, sha256: str) -> None:
        self._insert_once(
            t.jobs, project_id=project_id, sha256=sha256, device_id=device_id, pushed=now()
        )

    def jobs(self, project_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                select(t.jobs.c.sha256, t.jobs.c.pushed, t.devices.c.name)
                .join(t.devices, t.devices.c.id == t.jobs.c.device_id)
                .where(t.jobs.c.project_id == project_id)
                .order_by(t.jobs.c.id)
            ).all()
        return [{"sha256": r.sha256, "pushed": r.pushed, "device": r.name} for r in rows]

    # the lab page ----------------------------------------------------------------------------

    def overview(self) -> list[dict[str, Any]]:
        """Per project: devices, counts, progress per annotator, scores, conflicts, models."""
        out = []
        with self.read() as conn:
            projects = conn.execute(
                select(t.projects.c.id, t.projects.c.name).order_by(t.projects.c.name)
            ).all()
            for p in projects:
                counts: dict[str, int] = dict(
                    conn.execute(
                        select(t.operations.c.kind, func.count())
                        .where(t.operations.c.project_id == p.id)
                        .group_by(t.operations.c.kind)
                    ).all()
                )
                labels = conn.execute(
                    select(t.operations.c.image, t.operations.c.payload).where(
                        t.operations.c.project_id == p.id,
                        t.operations.c.kind.in_(("label.saved", "control.scored")),
                    )
                ).all()
                images = conn.execute(
                    select(func.count(func.distinct(t.operations.c.ref))).where(
                        t.operations.c.project_id == p.id, t.operations.c.kind == "image.added"
                    )
                ).scalar_one()
                out.append(
                    {
                        "name": p.name,
                        "images": int(images),
                        "counts": counts,
                        "annotators": _annotator_progress(labels),
                        "conflicts": self.conflicts(p.id),
                        "models": self.models(p.id),
                    }
                )
        return out


def _annotator_progress(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Labeled images, versions and seconds per annotator; mean control score when scored."""
    per: dict[str, dict[str, Any]] = {}
    for image, payload in rows:
        p = json.loads(payload)
        who = str(p.get("author") or p.get("annotator") or "?")
        a = per.setdefault(who, {"images": set(), "versions": 0, "seconds": 0.0, "scores": []})
        if image is not None:
            a["images"].add(image)
            a["versions"] += 1
            a["seconds"] += float(p.get("seconds_spent") or 0)
        elif isinstance(p.get("score"), (int, float)):
            a["scores"].append(float(p["score"]))
    return [
        {
            "annotator": who,
            "images": len(a["images"]),
            "versions": a["versions"],
            "seconds": round(a["seconds"], 1),
            "score": round(sum(a["scores"]) / len(a["scores"]), 3) if a["scores"] else None,
        }
        for who, a in sorted(per.items())
    ]


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def migrate(engine: Engine) -> None:
    """Bring the database to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
