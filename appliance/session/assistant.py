"""What the annotate screen asks of the assistance core, as functions for background jobs.

No Kivy: each function runs on the job worker thread and returns plain results that the screen
draws. Choices of *which* assistance to offer live here (the pre-labeler setting, the
post-processing suggestions offered on save); the algorithms live in `appliance.assist`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance import settings
from appliance.assist import inspection, postprocess, prelabel, runtime
from appliance.assist.jobs import JobContext
from appliance.assist.upgrade import upgrade
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.store.project import Project

__all__ = ["PrelabelChooser", "Review", "Suggestion", "review", "upgrade_label"]

SUITABILITY_IMAGES = 10


@dataclass(frozen=True)
class Suggestion:
    """A post-processing step worth offering: its name, result and how much it changes."""

    name: str
    after: Label
    changed: int  # number of instances it changes


@dataclass(frozen=True)
class Review:
    """Post-assistance for a saved label: inspection warnings and post-processing suggestions."""

    score: float
    warnings: list[inspection.LabelWarning]
    suggestions: list[Suggestion]

    @property
    def empty(self) -> bool:
        return not self.warnings and not self.suggestions


class PrelabelChooser:
    """Decides which pre-labeler to offer, re-judging suitability only as labels accumulate.

    Eq. 4 runs every method on up to ten labeled images, which takes seconds with a model; the
    answer changes only when new labels arrive, so it is cached and recomputed after every
    `RECHECK_EVERY` newly labeled images.
    """

    RECHECK_EVERY = 5

    def __init__(self) -> None:
        self._labeled_at: int | None = None
        self._method: str | None = None

    def method(self, project: Project, ctx: JobContext) -> str | None:
        choice = settings.PRELABEL.get(project)
        if choice != "auto":
            return None if choice == "none" else str(choice)
        labeled = project.labeled_image_count()
        if self._labeled_at is None or labeled - self._labeled_at >= self.RECHECK_EVERY:
            scores = prelabel.suitability(project, max_images=SUITABILITY_IMAGES)
            ctx.check()
            self._method, self._labeled_at = prelabel.best_method(scores), labeled
        return self._method

    def prelabel_for(
        self, project: Project, image_id: int, ctx: JobContext
    ) -> tuple[str, Label] | None:
        """The pre-label to show for an unlabeled image, or None when none is suitable.

        "auto" offers the method eq. 4 finds best and nothing when no method reaches the
        threshold, so a bad pre-labeler never slows the expert down. An installed cell detector
        adds its points or boxes to the offer (or is the offer, when no mask pre-label is).
        """
        method = self.method(project, ctx)
        label = None
        if method is not None:
            label, _ = prelabel.run(project, image_id, method, save=False)
            if label is not None and not label.instances.any():
                label = None
        found = self.detected(project, image_id, ctx)
        if found is not None:
            if label is None:
                return prelabel.DETECTOR, found
            objects = (*label.objects, *found.objects)
            return f"{method}+{prelabel.DETECTOR}", Label(label.instances, label.classes, objects)
        return None if label is None or method is None else (method, label)

    def detected(self, project: Project, image_id: int, ctx: JobContext) -> Label | None:
        """The active cell detector's points or boxes for an image (None: no detector, the
        pre-label setting is "none", or it found no cell)."""
        if settings.PRELABEL.get(project) == "none":
            return None
        detector = runtime.active_model(project, prelabel.DETECTOR)
        if detector is None:
            return None
        ctx.check()
        found, _ = prelabel.run(project, image_id, prelabel.DETECTOR, model=detector, save=False)
        return found if found is not None and found.objects else None


def upgrade_label(project: Project, pixels: np.ndarray, coarse: Label, ctx: JobContext) -> Label:
    """u(x, y~): the active upgrade model's refinement of a coarse drawing."""
    model = runtime.active_model(project, "upgrade")
    if model is None:
        raise ApplianceError("no upgrade model is installed: install a model bundle on Home")
    return upgrade(model, pixels, coarse, ctx.check)


def review(project: Project, label: Label, ctx: JobContext) -> Review:
    """Inspection (eq. 5) and the post-processing steps that would change this label."""
    settings = inspection.load_settings(project)
    report = inspection.inspect(label, settings)
    ctx.check()
    steps = (
        ("Fill holes", lambda: postprocess.fill_holes(label)),
        ("Remove specks", lambda: postprocess.remove_small(label, settings.min_fragment_area)),
    )
    suggestions = []
    for name, step in steps:
        result = step()
        ctx.check()
        if not result.diff.unchanged:
            suggestions.append(Suggestion(name, result.label, len(result.diff.changed_ids)))
    return Review(report.score, report.warnings, suggestions)
