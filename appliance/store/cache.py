"""Per-image values derived from the pixels, cached so the selector never decodes images.

`features` holds one vector per image under a recipe version tag; `uncertainty` one score per
image and installed model. Both are recomputed, never edited: a new recipe or model writes new
rows beside the old ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from appliance.store.project import HUMAN_LABELED_SQL

if TYPE_CHECKING:
    from appliance.store.project import Project

__all__ = [
    "feature_rows",
    "missing_features",
    "missing_uncertainty",
    "put_features",
    "put_uncertainty",
    "uncertainty_rows",
]


def missing_features(project: Project, version: str) -> list[int]:
    """Images without a feature vector of `version`, by id."""
    rows = project.db.execute(
        "SELECT id FROM images WHERE id NOT IN "
        "(SELECT image_id FROM features WHERE version = ?) ORDER BY id",
        (version,),
    )
    return [r[0] for r in rows]


def put_features(project: Project, version: str, vectors: Sequence[tuple[int, bytes]]) -> None:
    """Store (image id, vector bytes) pairs under `version`, replacing older ones (one
    transaction)."""
    with project.transaction():
        project.db.executemany(
            "INSERT OR REPLACE INTO features (image_id, version, vector) VALUES (?, ?, ?)",
            [(image_id, version, vector) for image_id, vector in vectors],
        )


def feature_rows(project: Project, version: str) -> list[tuple[int, bytes]]:
    """(image id, vector bytes) for every image with a `version` vector, by image id."""
    rows = project.db.execute(
        "SELECT image_id, vector FROM features WHERE version = ? ORDER BY image_id", (version,)
    ).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def missing_uncertainty(project: Project, model_id: str) -> list[int]:
    """Images the selector can still choose (no human label) without a score from `model_id`,
    in sequence order (sequence, frame; loose images last)."""
    rows = project.db.execute(
        "SELECT id FROM images WHERE id NOT IN "
        "(SELECT image_id FROM uncertainty WHERE model_id = ?) "
        f"AND id NOT IN ({HUMAN_LABELED_SQL}) "
        "ORDER BY sequence IS NULL, sequence, frame, id",
        (model_id,),
    ).fetchall()
    return [r[0] for r in rows]


def put_uncertainty(project: Project, model_id: str, scores: Sequence[tuple[int, float]]) -> None:
    """Store (image id, score) pairs for `model_id`, replacing older ones (one transaction)."""
    with project.transaction():
        project.db.executemany(
            "INSERT OR REPLACE INTO uncertainty (image_id, model_id, value) VALUES (?, ?, ?)",
            [(image_id, model_id, value) for image_id, value in scores],
        )


def uncertainty_rows(project: Project, model_id: str) -> list[tuple[int, float]]:
    """(image id, score) for every image scored by `model_id`."""
    rows = project.db.execute(
        "SELECT image_id, value FROM uncertainty WHERE model_id = ?", (model_id,)
    ).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]
