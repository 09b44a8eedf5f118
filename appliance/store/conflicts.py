"""Conflicts: versions of one image made on different devices that nobody has reconciled.

Label versions form a graph: each names its parent, and a resolving version also names the
other versions it `merges`. A head is a version nothing builds on or merges. An image is in
conflict when it has more than one head and its versions come from more than one device (a
tablet's own pre-labels and re-imports beside its manual versions are not a conflict). An
ordinary save builds on one head only, so it never closes a conflict by itself: only a
version that merges the other heads does (the expert picked one or combined them), on any
tablet, and that version travels like any other, so the lab page and every tablet see the
conflict closed. The lab server applies the same rule to its operations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.store.db import rows

if TYPE_CHECKING:
    from appliance.labels import Label
    from appliance.store.project import LabelVersion, Project

__all__ = ["conflict_heads", "conflicted_image_ids", "resolve"]

# Heads of every image whose versions come from more than one device ('local' for this
# tablet's own operations), with the device of each head.
_HEADS = """
WITH merged AS (
    SELECT DISTINCT m.value AS uid FROM operations o, json_each(o.payload, '$.merges') m
    WHERE o.kind = 'label.saved' AND o.payload LIKE '%"merges"%'  -- no JSON parse of the rest
      AND json_type(o.payload, '$.merges') = 'array'
),
made AS (
    SELECT l.id, l.image_id, l.uid,
           coalesce((SELECT CAST(o.device AS TEXT) FROM operations o
                     WHERE o.kind = 'label.saved' AND o.ref = l.uid), 'local') AS device
    FROM labels l
),
shared AS (
    SELECT image_id FROM made GROUP BY image_id HAVING count(DISTINCT device) > 1
),
heads AS (
    SELECT m.id, m.image_id FROM made m
    WHERE m.image_id IN (SELECT image_id FROM shared)
      AND NOT EXISTS (SELECT 1 FROM labels c WHERE c.parent_id = m.id)
      AND m.uid NOT IN (SELECT uid FROM merged)
)
SELECT id, image_id FROM heads
WHERE image_id IN (SELECT image_id FROM heads GROUP BY image_id HAVING count(*) > 1)
"""


def _heads(project: Project, image_id: int | None = None) -> dict[int, list[int]]:
    sql, args = _HEADS, []
    if image_id is not None:
        sql, args = f"SELECT * FROM ({_HEADS}) WHERE image_id = ?", [image_id]
    out: dict[int, list[int]] = {}
    for row in rows(project.db, sql + " ORDER BY 1", args):
        out.setdefault(int(row["image_id"]), []).append(int(row["id"]))
    return out


def conflicted_image_ids(project: Project) -> set[int]:
    """Images with an open conflict (for the gallery's marker)."""
    return set(_heads(project))


def conflict_heads(project: Project, image_id: int) -> list[LabelVersion]:
    """The competing versions of an image in conflict, oldest first; [] when none."""
    return [project.label_version(v) for v in _heads(project, image_id).get(image_id, [])]


def resolve(
    project: Project,
    image_id: int,
    *,
    keep: int,
    author: str,
    label: Label | None = None,
    seconds_spent: float = 0.0,
) -> int:
    """Close the image's conflict: a version on top of head `keep` that merges every other
    head, holding `label` (the expert's merge) or, by default, `keep`'s label (the expert
    picked it). Returns the new version's id; ApplianceError when there is no conflict."""
    from appliance.errors import ApplianceError

    heads = [v.id for v in conflict_heads(project, image_id)]
    if keep not in heads:
        raise ApplianceError(f"version {keep} is not one of the conflicting versions {heads}")
    return project.save_label(
        image_id,
        project.label_version(keep).label if label is None else label,
        author=author,
        source="manual",
        seconds_spent=seconds_spent,
        parent_id=keep,
        merges=[h for h in heads if h != keep],
    )
