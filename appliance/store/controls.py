"""Control items and annotator scores in the project database (tables of 0002_supervision).

A control is an ordinary row in `images` plus a row in `controls` holding its hidden truth (and,
for planted-error controls, the planted pre-label and the record of what was planted). The truth
never becomes a label version, so nothing that reads labels can leak it. Each save of a control
by a person adds one row to `control_scores`; an annotator's running summary lives in
`annotators`, whose every column travels in training-job bundles (`annotators.json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.labels import Label, decode_label, encode_label
from appliance.store import db as dbm
from appliance.store import oplog
from appliance.store.project import _HUMAN, Project

__all__ = [
    "KINDS",
    "Control",
    "ScoreRow",
    "add_control",
    "annotator_summaries",
    "bundle_installed",
    "control_for_image",
    "count_by_kind",
    "human_authors_by_image",
    "is_control",
    "is_scored",
    "known_hashes",
    "machine_version",
    "offer_prelabel",
    "record_bundle",
    "record_score",
    "score_rows",
    "versions_by",
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


def _classes_json(label: Label) -> str:
    return json.dumps({str(int(i)): label.class_of(i) for i in label.ids()})


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
    """Store one control for an image already in `images`; call inside a transaction.

    The image leaves any sequence it was imported into: a folder name or a frame number would
    set it apart from the images around it.
    """
    db = project.db
    pre_blob = None
    pre_classes = None
    if prelabel is not None:
        pre_blob = encode_label(prelabel)
        pre_classes = _classes_json(prelabel)
    cur = db.execute(
        "INSERT INTO controls (image_id, kind, truth, truth_classes, detail, created, prelabel, "
        "errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image_id,
            kind,
            encode_label(truth),
            _classes_json(truth),
            json.dumps({**(detail or {}), "prelabel_classes": pre_classes}),
            dbm.utcnow(),
            pre_blob,
            errors_json,
        ),
    )
    db.execute("UPDATE images SET sequence = NULL, frame = NULL WHERE id = ?", (image_id,))
    assert cur.lastrowid is not None
    return cur.lastrowid


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


def machine_version(project: Project, image_id: int, machine_authors: str) -> int | None:
    """Newest version of an image made by a machine (author LIKE `machine_authors`)."""
    row = project.db.execute(
        "SELECT id FROM labels WHERE image_id = ? AND author LIKE ? AND reviewed = 0 "
        "ORDER BY id DESC LIMIT 1",
        (image_id, machine_authors),
    ).fetchone()
    return None if row is None else int(row[0])


def offer_prelabel(project: Project, image_id: int, computed: Label | None) -> Label | None:
    """The pre-label to show: a planted control's planted one, else the computed one.

    Callers run the real pre-labeler first and pass its result, so a control costs the same
    time and offers a pre-label exactly when an ordinary image would (seed 002's planted
    errors; `appliance.supervision`).
    """
    if computed is None:
        return None
    control = control_for_image(project, image_id)
    if control is None or control.prelabel is None:
        return computed
    return control.prelabel


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
