"""Model uncertainty for the selector: mean pixel entropy per image, cached per model.

Running the pre-label model over a whole project takes minutes on a tablet, so it runs as a
background job, commits in batches (cancel-safe) and scores only what the selector can still
choose (images without a human label), in sequential order. Scores are keyed by the installed
model's id, so a new model version starts a fresh cache and the old rows stay valid for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.assist.contract import mean_entropy
from appliance.assist.history import LABELED_IMAGES_SQL
from appliance.assist.runtime import InferenceModel


def update(
    project: Any,
    model: InferenceModel,
    check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    limit: int | None = None,
    batch: int = 16,
) -> int:
    """Score images that have no entry for `model` yet; returns how many were scored."""
    rows = project.db.execute(
        "SELECT id FROM images WHERE id NOT IN "
        "(SELECT image_id FROM uncertainty WHERE model_id = ?) "
        f"AND id NOT IN ({LABELED_IMAGES_SQL}) "
        "ORDER BY sequence IS NULL, sequence, frame, id",
        (model.model_id,),
    ).fetchall()
    todo = [r[0] for r in rows][:limit]
    for start in range(0, len(todo), batch):
        done = []
        for image_id in todo[start : start + batch]:
            if check is not None:
                check()
            probs = model.predict(project.load_pixels(image_id), check=check).probs
            done.append((image_id, model.model_id, mean_entropy(probs)))
        with project.transaction():
            project.db.conn.executemany(
                "INSERT OR REPLACE INTO uncertainty (image_id, model_id, value) VALUES (?, ?, ?)",
                done,
            )
        if progress is not None:
            progress((start + len(done)) / len(todo))
    return len(todo)
