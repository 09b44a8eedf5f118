"""Where an annotator's work on an image starts (seed 002's independent votes).

Votes are only independent if no annotator sees another's label. In blind mode (and always
for controls, whose scoring needs it) a person starts from their own newest version of the
image, else from the newest stored machine pre-label, else from empty. Outside blind mode
the newest version of anyone is the start, as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from appliance.store import controls as store
from appliance.store.conflicts import conflict_heads
from appliance.store.project import LabelVersion, Project
from appliance.supervision import config
from appliance.supervision.controls import MACHINE_AUTHORS

__all__ = [
    "is_blind",
    "labeled_count",
    "start_version",
    "views",
    "visible_conflict",
    "visible_versions",
]


def is_blind(project: Project, image_id: int) -> bool:
    """Whether annotators see only their own and machine versions of `image_id`."""
    return config.load(project).blind_mode or store.is_control(project, image_id)


def visible_versions(project: Project, image_id: int, author: str) -> list[LabelVersion]:
    """The versions of an image `author` may see (gallery, history), oldest first: all of them,
    or in blind mode and on controls only their own and the machine's, so that a gallery
    shows a control exactly as an ordinary image nobody else has labeled yet."""
    return views(project, author, [image_id])[image_id][0]


def views(
    project: Project, author: str, image_ids: Iterable[int]
) -> dict[int, tuple[list[LabelVersion], LabelVersion | None]]:
    """(visible versions, the version an edit starts from) per image, as `author` may see
    them; settings and controls are read once, for galleries of many images."""
    blind_all = config.load(project).blind_mode
    controls = project.control_image_ids()
    out = {}
    for image_id in image_ids:
        history = project.history(image_id)
        if not (blind_all or image_id in controls):
            out[image_id] = (history, history[-1] if history else None)
            continue
        seen = [v for v in history if v.author == author or _machine(v)]
        mine = [v for v in seen if v.author == author]
        machine = [v for v in seen if _machine(v)]
        out[image_id] = (seen, mine[-1] if mine else machine[-1] if machine else None)
    return out


def visible_conflict(project: Project, image_id: int, author: str) -> list[LabelVersion]:
    """The competing versions of an image's conflict that `author` may see (none when fewer
    than two): on controls and in blind mode other people's versions are not theirs to see,
    so independent answers (k votes, a control answered on two tablets) show no conflict,
    on controls and ordinary images alike."""
    heads = conflict_heads(project, image_id)
    if heads and is_blind(project, image_id):
        heads = [v for v in heads if v.author == author or _machine(v)]
    return heads if len(heads) > 1 else []


def labeled_count(project: Project, author: str) -> int:
    """Images with a version `author` may see: the gallery's labeled and pre-labeled tiles."""
    blind = config.load(project).blind_mode
    return store.visible_labeled_count(project, author, blind, MACHINE_AUTHORS)


def _machine(version: LabelVersion) -> bool:
    return version.author.startswith(MACHINE_AUTHORS.rstrip("%")) and not version.reviewed


def start_version(project: Project, image_id: int, author: str) -> LabelVersion | None:
    """The version an annotator's edit session of `image_id` starts from (None: empty)."""
    if not is_blind(project, image_id):
        return project.latest_label(image_id)
    mine = store.versions_by(project, image_id, author)
    if mine:
        return project.label_version(mine[-1][0])
    machine = store.machine_version(project, image_id, MACHINE_AUTHORS)
    return None if machine is None else project.label_version(machine)
