"""Where an annotator's work on an image starts (seed 002's independent votes).

Votes are only independent if no annotator sees another's label. In blind mode (and always
for controls, whose scoring needs it) a person starts from their own newest version of the
image, else from the newest stored machine pre-label, else from empty. Outside blind mode
the newest version of anyone is the start, as before.
"""

from __future__ import annotations

from appliance.store import controls as store
from appliance.store.project import LabelVersion, Project
from appliance.supervision import config
from appliance.supervision.controls import MACHINE_AUTHORS

__all__ = ["start_version"]


def start_version(project: Project, image_id: int, author: str) -> LabelVersion | None:
    """The version an annotator's edit session of `image_id` starts from (None: empty)."""
    blind = config.load(project).blind_mode or store.is_control(project, image_id)
    if not blind:
        return project.latest_label(image_id)
    mine = store.versions_by(project, image_id, author)
    if mine:
        return project.label_version(mine[-1][0])
    machine = store.machine_version(project, image_id, MACHINE_AUTHORS)
    return None if machine is None else project.label_version(machine)
