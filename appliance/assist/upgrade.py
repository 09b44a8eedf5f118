"""Upgrade u(x, y~) (seed 003): image plus coarse label in, careful label out.

The upgrade network sees the image channels and the coarse foreground as one extra 0/1 channel
(contract `mask_channel: true`), and newer models also the coarse instances' edges (contract
`boundary_channel: true`), so the coarse label arrives as instances. Instances of its output come
from the contract's decoding (seeded watershed for instance kinds: coarse touching cells drawn as
one blob come back apart where the image shows them apart). A binary model knows no classes, so
each new instance takes the class of the coarse instance it overlaps most (the expert's class
choice survives the refinement).
The result is stored as a new version (source `upgrade`, parent = the coarse version) for the
expert to check; nothing is overwritten.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from appliance.assist.runtime import InferenceModel, active_model
from appliance.errors import ApplianceError
from appliance.labels import DEFAULT_CLASS, Label
from appliance.store import Project

__all__ = [
    "AUTHOR",
    "candidates",
    "inherit_classes",
    "upgrade",
    "upgrade_all",
    "upgrade_image",
    "upgrade_version",
]

AUTHOR = "upgrade"


def inherit_classes(refined: Label, coarse: Label) -> Label:
    """Give each refined instance the majority coarse class under it (default class if none)."""
    ids = refined.ids()
    if ids.size == 0:
        return refined
    sem = coarse.semantic().astype(np.int64).ravel()
    inst = refined.instances.ravel()
    fg = (inst > 0) & (sem > 0)
    k = int(sem.max()) + 1
    idx = np.searchsorted(ids, inst[fg])
    votes = np.bincount(idx * k + sem[fg], minlength=ids.size * k).reshape(ids.size, k)
    best = votes.argmax(axis=1)
    classes = {
        int(i): int(best[j]) if votes[j, best[j]] > 0 else DEFAULT_CLASS for j, i in enumerate(ids)
    }
    return Label(refined.instances, classes)


def upgrade(
    model: InferenceModel, image: np.ndarray, coarse: Label, check: Callable[[], None] | None = None
) -> Label:
    """u(x, y~) for one image; classes from the model if it has several, else the coarse label."""
    if not model.contract.mask_channel:
        raise ApplianceError(
            f"{model.path}: not an upgrade model (its contract has no mask channel)"
        )
    if coarse.shape != tuple(np.asarray(image).shape[:2]):
        raise ApplianceError(
            f"coarse label {coarse.shape} does not match image {np.shape(image)[:2]}"
        )
    refined = model.predict(image, mask=coarse.instances, check=check).label
    return refined if model.contract.n_classes > 2 else inherit_classes(refined, coarse)


def _model(project: Project, model: InferenceModel | None) -> InferenceModel:
    model = model or active_model(project, "upgrade")
    if model is None:
        raise ApplianceError(f"{project.root}: no active upgrade model is installed")
    return model


def upgrade_version(
    project: Project,
    version_id: int,
    model: InferenceModel | None = None,
    check: Callable[[], None] | None = None,
) -> int:
    """Upgrade one stored version; returns the id of the new `upgrade` version."""
    model = _model(project, model)
    v = project.label_version(version_id)
    refined = upgrade(model, project.load_pixels(v.image_id), v.label, check)
    return project.save_label(v.image_id, refined, author=AUTHOR, source="upgrade", parent_id=v.id)


def upgrade_image(project: Project, image_id: int, model: InferenceModel | None = None) -> int:
    """Upgrade the newest version of one image."""
    latest = project.latest_label(image_id)
    if latest is None:
        raise ApplianceError(
            f"image {image_id} has no label to upgrade; scribble a coarse one first"
        )
    return upgrade_version(project, latest.id, model)


def candidates(project: Project, only_coarse: bool = False) -> list[int]:
    """Newest version of every labeled image that is not itself an upgrade result.

    Skipping upgrades makes `--all` idempotent: running it twice refines nothing twice.
    `only_coarse` keeps versions from pre-labeling or explicitly marked coarse.
    """
    return project.newest_versions(exclude_source="upgrade", only_coarse=only_coarse)


def upgrade_all(
    project: Project,
    only_coarse: bool = False,
    model: InferenceModel | None = None,
    check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[int]:
    """Upgrade every candidate version; returns the new version ids (each saved on its own)."""
    model = _model(project, model)
    todo = candidates(project, only_coarse)
    out = []
    for k, vid in enumerate(todo, start=1):
        if check is not None:
            check()
        out.append(upgrade_version(project, vid, model, check))
        if progress is not None:
            progress(k / len(todo))
    return out
