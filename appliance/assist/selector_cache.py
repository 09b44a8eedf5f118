"""Keeping the selector's caches filled, so every strategy works in the app, not only in
`appliance next`.

The diversity and sequence-aware strategies read feature vectors, the uncertainty strategy the
active pre-label model's scores; without them those strategies drop out (or score every image
alike) and their weight sliders do nothing. `refresh` fills what is missing: feature vectors
of images imported since the last run, then the active model's uncertainty for the images the
selector can still choose. Both steps skip what is already stored, so `refresh` is cheap to
call after every import and every model install or switch; a new model has a new id and so
gets its own scores (what the new model changes is recomputed, the rest is kept). It runs as a
background job (`JobContext`): progress is reported, and a cancel stops it between images
with everything committed so far kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.assist import features, runtime, uncertainty
from appliance.assist.jobs import JobContext
from appliance.store import Project

__all__ = ["Refreshed", "flag", "refresh"]

# share of the progress bar for the feature step; decoding is cheaper than inference
FEATURE_SHARE = 0.3


@dataclass(frozen=True)
class Refreshed:
    """What one `refresh` added: feature vectors, uncertainty scores and for which model."""

    features: int
    uncertainty: int
    model_id: str | None

    def summary(self) -> str:
        scored = f", {self.uncertainty} uncertainty scores" if self.model_id else ""
        return f"selector ready: {self.features} new feature vectors{scored}"


def refresh(project: Project, ctx: JobContext | None = None) -> Refreshed:
    """Compute the missing feature vectors, then the active pre-label model's missing scores."""
    check = None if ctx is None else ctx.check

    def feature_progress(fraction: float) -> None:
        if ctx is not None:
            ctx.progress(FEATURE_SHARE * fraction)

    def model_progress(fraction: float) -> None:
        if ctx is not None:
            ctx.progress(FEATURE_SHARE + (1 - FEATURE_SHARE) * fraction)

    added = features.update(project, check=check, progress=feature_progress)
    model = runtime.active_model(project, "prelabel")
    if model is None:
        return Refreshed(added, 0, None)
    scored = uncertainty.update(project, model, check=check, progress=model_progress)
    return Refreshed(added, scored, model.model_id)


def flag(project: Project, refs: list[str], on: bool = True) -> list[int]:
    """Flag images for cherry-picking (seed 004: the expert's own picks come first when the
    cherry-pick weight is up), or unflag them; `refs` are ids, names or sha256 prefixes.

    Every reference is resolved before anything changes, so a typo changes nothing.
    """
    ids = [project.find_image(ref).id for ref in refs]
    for image_id in ids:
        project.set_cherry_picked(image_id, on)
    return ids
