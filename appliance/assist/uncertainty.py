"""Model uncertainty for the selector: mean pixel entropy per image, cached per model.

Running the pre-label model over a whole project takes minutes on a tablet, so it runs as a
background job, commits in batches (cancel-safe) and scores only what the selector can still
choose (images without a human label), in sequential order. Scores are keyed by the installed
model's id, so a new model version starts a fresh cache and the old rows stay valid for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.assist.contract import mean_entropy
from appliance.assist.runtime import InferenceModel
from appliance.errors import ApplianceError
from appliance.store import Project, cache

__all__ = ["update"]

log = logging.getLogger(__name__)


def update(
    project: Project,
    model: InferenceModel,
    check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    limit: int | None = None,
    batch: int = 16,
) -> int:
    """Score images that have no entry for `model` yet; returns how many were scored (an
    unreadable image is logged and skipped)."""
    todo = cache.missing_uncertainty(project, model.model_id)[:limit]
    scored = 0
    for start in range(0, len(todo), batch):
        done = []
        chunk = todo[start : start + batch]
        for image_id in chunk:
            if check is not None:
                check()
            try:
                probs = model.predict(project.load_pixels(image_id), check=check).probs
            except ApplianceError as exc:  # an unreadable file: it keeps the mean score
                log.warning("no uncertainty for image %d: %s", image_id, exc)
                continue
            done.append((image_id, mean_entropy(probs)))
        cache.put_uncertainty(project, model.model_id, done)
        scored += len(done)
        if progress is not None:
            progress((start + len(chunk)) / len(todo))
    return scored
