"""Control items and annotator scores in the project database (tables of 0002_supervision).

A control is an ordinary row in `images` plus a row in `controls` holding its hidden truth (and,
for planted-error controls, the planted pre-label and the record of what was planted). The truth
never becomes a label version, so nothing that reads labels can leak it. Each save of a control
by a person adds one row to `control_scores`; an annotator's running summary lives in
`annotators`, whose every column travels in training-job bundles (`annotators.json`).
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.labels import Label, decode_label, encode_label
from appliance.store import db as dbm
from appliance.store import oplog
from appliance.store.images import NewImage, insert_image
from appliance.store.project import _HUMAN, Project

__all__ = [
    "KINDS",
    "Control",
    "NewControl",
    "ScoreRow",
    "add_control",
    "add_controls",
    "annotator_summaries",
    "bundle_installed",
    "control_for_image",
    "count_by_kind",
    "human_authors_by_image",
    "insert_row",
    "is_control",
    "is_scored",
    "known_hashes",
    "machine_version",
    "offered_classes",
    "record_bundle",
    "record_score",
    "score_rows",
    "versions_by",
    "visible_labeled_count",
]

KINDS = ("gold", "synthetic", "planted")


@dataclass(frozen=True)
class Control:
    """A control item: the image it hides behind, its truth and what was planted in it."""

    id: int
    image_id: int
    kind: str
    truth: Label
    prelabel: Label | None
    errors_json: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ScoreRow:
    """One scored save of a control (see `appliance.supervision.scoring.ControlScore`)."""

    control_id: int
    label_id: int
    annotator: str
    seconds: float
    n_truth: int
    n_label: int
    matched: int
    class_correct: int
    dice: float
    instance_f1: float
    boundary_f1: float
    planted: dict[str, tuple[int, int]]
    scored: str = ""


def _label(blob: bytes, classes: str | None) -> Label:
    table = {int(k): int(v) for k, v in json.loads(classes or "{}").items()}
    return decode_label(blob, table)


def _classes(label: Label) -> dict[str, int]:
    return {str(int(i)): label.class_of(i) for i in label.ids()}


def insert_row(
    db: sqlite3.Connection,
    image_id: int,
    kind: str,
    truth: tuple[bytes, dict[str, int]],
    prelabel: tuple[bytes, dict[str, int]] | None,
    errors: list[dict[str, Any]],
    detail: dict[str, Any],
) -> int:
    """The `controls` row of an image (encoded maps with their class tables); call inside a
    transaction. Used for local adds and for controls that sync brings (`oplog`)."""
    pre_classes = None if prelabel is None else json.dumps(prelabel[1])
    cur = db.execute(
        "INSERT INTO controls (image_id, kind, truth, truth_classes, detail, created, prelabel, "
        "errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image_id,
            kind,
            truth[0],
            json.dumps(truth[1]),
            json.dumps({**detail, "prelabel_classes": pre_classes}),
            dbm.utcnow(),
            None if prelabel is None else prelabel[0],
            json.dumps(errors),
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def add_control(
    project: Project,
    image_id: int,
    kind: str,
    truth: Label,
    *,
    prelabel: Label | None = None,
    errors_json: str = "[]",
    detail: dict[str, Any] | None = None,
) -> int:
    """Store one control for an image already in `images` and log it for sync (`control.added`,
    so every tablet of the project hides and scores it); call inside a transaction."""
    truth_map = (encode_label(truth), _classes(truth))
    pre = None if prelabel is None else (encode_label(prelabel), _classes(prelabel))
    errors = json.loads(errors_json)
    control_id = insert_row(project.db, image_id, kind, truth_map, pre, errors, detail or {})
    oplog.record_control_added(project.db, image_id, kind, truth_map, pre, errors, detail or {})
    return control_id


@dataclass(frozen=True)
class NewControl:
    """A control to add: its image file (already decoded and checked), truth and planting."""

    source: Path
    sha256: str
    image: NewImage
    kind: str
    truth: Label
    prelabel: Label | None = None
    errors_json: str = "[]"
    detail: dict[str, Any] = field(default_factory=dict)


def add_controls(
    project: Project, items: list[NewControl], rng: np.random.Generator, bundle_id: str | None
) -> list[int]:
    """Store control images and their controls, all in one transaction: a failure leaves the
    project as it was (originals this call wrote are removed again).

    Each control joins an ordinary sequence as its next frame, named after that sequence's
    naming pattern (`_placement`), so neither its name, nor its sequence and frame, nor the
    'previous' pre-labeler set it apart from the images around it.
    """
    written: list[Path] = []
    try:
        for item in items:
            path = project.blob_path(item.sha256, item.source.suffix.lower())
            if not project.holds_original(path, item.sha256):
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():
                    written.append(path)
                project.store_original(item.source, path)
        ids = []
        with project.transaction():
            for item in items:
                sequence, frame_no, name = _placement(project.db, item.image, rng)
                blob = project.blob_path(item.sha256, item.source.suffix.lower())
                image = NewImage(None, name, *astuple(item.image)[2:])
                image_id = insert_image(
                    project.db,
                    item.sha256,
                    image,
                    str(blob.relative_to(project.root)),
                    sequence,
                    frame_no,
                    "",
                )
                ids.append(
                    add_control(
                        project,
                        image_id,
                        item.kind,
                        item.truth,
                        prelabel=item.prelabel,
                        errors_json=item.errors_json,
                        detail=item.detail,
                    )
                )
            if bundle_id is not None:
                record_bundle(project, bundle_id, len(ids))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return ids


_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def _placement(
    db: sqlite3.Connection, image: NewImage, rng: np.random.Generator
) -> tuple[str | None, int | None, str]:
    """(sequence, frame, name) for a new control: the next frame of a random ordinary sequence
    (one with images of the control's size when there is one), named like that sequence's
    last image with the next free number. Without ordinary images the control keeps its name
    and has no sequence."""
    rows = db.execute(
        "SELECT sequence, max(height = ? AND width = ?) FROM images WHERE sequence IS NOT NULL "
        "AND id NOT IN (SELECT image_id FROM controls) GROUP BY sequence ORDER BY sequence",
        (image.height, image.width),
    ).fetchall()
    taken = {str(r[0]) for r in db.execute("SELECT name FROM images")}
    if not rows:
        return None, None, _free(image.name, taken)
    fitting = [r[0] for r in rows if r[1]] or [r[0] for r in rows]
    sequence = str(fitting[int(rng.integers(len(fitting)))])
    frame_no, last = db.execute(
        "SELECT max(frame) + 1, (SELECT name FROM images WHERE sequence = ?1 "
        "ORDER BY frame DESC, id DESC LIMIT 1) FROM images WHERE sequence = ?1",
        (sequence,),
    ).fetchone()
    return sequence, int(frame_no or 0), _next_name(str(last), image.name, taken)


def _next_name(last: str, fallback: str, taken: set[str]) -> str:
    """`last` with its number counted up to the first free name (`img_0042.tif` → `img_0043.tif`);
    `fallback` made unique when `last` has no number."""
    m = _NUMBERED.match(last)
    if m is None:
        return _free(fallback, taken)
    prefix, digits, suffix = m.groups()
    number = int(digits) + 1
    while (name := f"{prefix}{number:0{len(digits)}d}{suffix}") in taken:
        number += 1
    return name


def _free(name: str, taken: set[str]) -> str:
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    k, out = 2, name
    while out in taken:
        out = f"{stem}_{k}{dot}{suffix}"
        k += 1
    return out


_COLUMNS = "id, image_id, kind, truth, truth_classes, detail, prelabel, errors"


def _control(row: tuple) -> Control:
    detail = json.loads(row[5] or "{}")
    pre_classes = detail.pop("prelabel_classes", None)
    prelabel = None if row[6] is None else _label(row[6], pre_classes)
    return Control(
        id=row[0],
        image_id=row[1],
        kind=row[2],
        truth=_label(row[3], row[4]),
        prelabel=prelabel,
        errors_json=row[7] or "[]",
        detail=detail,
    )


def control_for_image(project: Project, image_id: int) -> Control | None:
    row = project.db.execute(
        f"SELECT {_COLUMNS} FROM controls WHERE image_id = ? ORDER BY id DESC LIMIT 1",
        (image_id,),
    ).fetchone()
    return None if row is None else _control(row)


def known_hashes(project: Project, hashes: list[str]) -> set[str]:
    """The sha256 values among `hashes` that some image of the project already has."""
    marks = ",".join("?" * len(hashes))
    rows = project.db.execute(
        f"SELECT DISTINCT sha256 FROM images WHERE sha256 IN ({marks})", hashes
    ).fetchall()
    return {str(r[0]) for r in rows}


def is_control(project: Project, image_id: int) -> bool:
    q = "SELECT 1 FROM controls WHERE image_id = ? LIMIT 1"
    return project.db.execute(q, (image_id,)).fetchone() is not None


def count_by_kind(project: Project) -> dict[str, int]:
    rows = project.db.execute("SELECT kind, count(*) FROM controls GROUP BY kind").fetchall()
    return {str(k): int(n) for k, n in rows}


def human_authors_by_image(project: Project) -> dict[int, set[str]]:
    """Image id → the people whose versions of it count as human labels."""
    out: dict[int, set[str]] = {}
    rows = project.db.execute(
        f"SELECT DISTINCT image_id, author FROM labels WHERE {_HUMAN}"
    ).fetchall()
    for image_id, author in rows:
        out.setdefault(int(image_id), set()).add(str(author))
    return out


def versions_by(project: Project, image_id: int, author: str) -> list[tuple[int, str, bool]]:
    """(version id, source, reviewed) of `author`'s versions of an image, oldest first."""
    rows = project.db.execute(
        "SELECT id, source, reviewed FROM labels WHERE image_id = ? AND author = ? ORDER BY id",
        (image_id, author),
    ).fetchall()
    return [(int(r[0]), str(r[1]), bool(r[2])) for r in rows]


def visible_labeled_count(project: Project, annotator: str, blind: bool, machine: str) -> int:
    """Images with a version `annotator` may see (`supervision.blind.visible_versions`): their
    own or a machine's (author LIKE `machine`, not reviewed), and on ordinary images outside
    blind mode anyone's. The status line counts progress with it, as the gallery shows it."""
    mine = "(author = ? OR (author LIKE ? AND reviewed = 0))"
    others = "" if blind else "image_id NOT IN (SELECT image_id FROM controls) OR "
    row = project.db.execute(
        f"SELECT count(DISTINCT image_id) FROM labels WHERE {others}{mine}", (annotator, machine)
    ).fetchone()
    return int(row[0])


def machine_version(project: Project, image_id: int, machine_authors: str) -> int | None:
    """Newest version of an image made by a machine (author LIKE `machine_authors`)."""
    row = project.db.execute(
        "SELECT id FROM labels WHERE image_id = ? AND author LIKE ? AND reviewed = 0 "
        "ORDER BY id DESC LIMIT 1",
        (image_id, machine_authors),
    ).fetchone()
    return None if row is None else int(row[0])


def offered_classes(project: Project, image_id: int, annotator: str) -> set[int] | None:
    """Classes of the newest pre-label offer `annotator` was shown on an image (an `offered`
    event), or None when none was shown."""
    row = project.db.execute(
        "SELECT detail FROM events WHERE image_id = ? AND annotator = ? AND kind = 'offered' "
        "ORDER BY id DESC LIMIT 1",
        (image_id, annotator),
    ).fetchone()
    if row is None:
        return None
    return {int(c) for c in json.loads(row[0] or "{}").get("classes", [])}


def record_score(project: Project, row: ScoreRow, summary: dict[str, Any], n: int) -> None:
    """Store one scored save and the annotator's new summary, in one transaction; the
    operation log gets a `control.scored` entry in the same one (sync to the lab server)."""
    now = dbm.utcnow()
    with project.transaction():
        project.db.execute(
            "INSERT OR IGNORE INTO annotators (name, created) VALUES (?, ?)", (row.annotator, now)
        )
        project.db.execute(
            "INSERT INTO control_scores (control_id, label_id, annotator, scored, seconds, "
            "n_truth, n_label, matched, class_correct, dice, instance_f1, boundary_f1, planted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.control_id,
                row.label_id,
                row.annotator,
                now,
                row.seconds,
                row.n_truth,
                row.n_label,
                row.matched,
                row.class_correct,
                row.dice,
                row.instance_f1,
                row.boundary_f1,
                json.dumps({k: list(v) for k, v in row.planted.items()}),
            ),
        )
        project.db.execute(
            "UPDATE annotators SET n_controls = ?, scores = ?, scores_updated = ? WHERE name = ?",
            (n, json.dumps(summary), now, row.annotator),
        )
        scores = {"dice": row.dice, "instance_f1": row.instance_f1, "boundary_f1": row.boundary_f1}
        oplog.record_control_scored(project.db, row.label_id, row.annotator, scores)


def is_scored(project: Project, label_id: int) -> bool:
    q = "SELECT 1 FROM control_scores WHERE label_id = ?"
    return project.db.execute(q, (label_id,)).fetchone() is not None


def score_rows(project: Project, annotator: str | None = None) -> list[ScoreRow]:
    """Scored saves, oldest first; each control counts once per annotator (its last save)."""
    where = "WHERE annotator = ?" if annotator is not None else ""
    args: tuple[Any, ...] = (annotator,) if annotator is not None else ()
    rows = project.db.execute(
        "SELECT control_id, label_id, annotator, seconds, n_truth, n_label, matched, "
        "class_correct, dice, instance_f1, boundary_f1, planted, scored FROM control_scores "
        f"WHERE id IN (SELECT max(id) FROM control_scores {where} "
        "GROUP BY annotator, control_id) ORDER BY id",
        args,
    ).fetchall()
    return [
        ScoreRow(
            control_id=r[0],
            label_id=r[1],
            annotator=r[2],
            seconds=r[3],
            n_truth=r[4],
            n_label=r[5],
            matched=r[6],
            class_correct=r[7],
            dice=r[8],
            instance_f1=r[9],
            boundary_f1=r[10],
            planted={k: (int(v[0]), int(v[1])) for k, v in json.loads(r[11]).items()},
            scored=r[12],
        )
        for r in rows
    ]


def annotator_summaries(project: Project) -> dict[str, tuple[int, dict[str, Any]]]:
    """Annotator → (number of controls, stored summary) for those with any scored control."""
    rows = project.db.execute(
        "SELECT name, n_controls, scores FROM annotators WHERE scores IS NOT NULL ORDER BY name"
    ).fetchall()
    return {str(r[0]): (int(r[1]), json.loads(r[2])) for r in rows}


def bundle_installed(project: Project, bundle_id: str) -> bool:
    q = "SELECT 1 FROM control_bundles WHERE id = ?"
    return project.db.execute(q, (bundle_id,)).fetchone() is not None


def record_bundle(project: Project, bundle_id: str, n: int) -> None:
    """Remember an installed control bundle; call inside the transaction that added its items."""
    project.db.execute(
        "INSERT INTO control_bundles (id, installed, controls) VALUES (?, ?, ?)",
        (bundle_id, dbm.utcnow(), n),
    )
