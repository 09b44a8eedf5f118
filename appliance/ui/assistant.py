"""What the annotate screen asks of the assistance core, as functions for background jobs.

No Kivy: each function runs on the job worker thread and returns plain results that the screen
draws. Choices of *which* assistance to offer live here (the pre-labeler setting, the
post-processing suggestions offered on save); the algorithms live in `appliance.assist`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.assist import inspection, postprocess, prelabel, runtime
from appliance.assist.jobs import JobContext
from appliance.assist.upgrade import upgrade
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.store.project import Project

PRELABEL_KEY = "ui.prelabel"  # "auto" (suitability decides), a method name, or "none"
PRELABEL_CHOICES = ("auto", *prelabel.METHODS, "none")
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

    gamma: float
    warnings: list[inspection.LabelWarning]
    suggestions: list[Suggestion]

    @property
    def empty(self) -> bool:
        return not self.warnings and not self.suggestions


def prelabel_for(project: Project, image_id: int, ctx: JobContext) -> tuple[str, Label] | None:
    """The pre-label to show for an unlabeled image, or None when no pre-labeler is suitable.

    "auto" asks eq. 4 (Dice of each method on recently labeled images) which method to use and
    offers none when no method reaches the threshold, so a bad pre-labeler never slows the
    expert down.
    """
    choice = project.get_setting(PRELABEL_KEY, "auto")
    if choice == "none":
        return None
    if choice == "auto":
        scores = prelabel.suitability(project, max_images=SUITABILITY_IMAGES)
        ctx.check()
        choice = prelabel.best_method(scores)
        if choice is None:
            return None
    label, _ = prelabel.run(project, image_id, choice, save=False)
    if label is None or not label.instances.any():
        return None
    return choice, label


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
    return Review(report.gamma, report.warnings, suggestions)
