"""What a control offers in place of a machine pre-label, made to look like the machine's.

A planted control's pre-label (seed 002) or a control's own truth, offered where the real
pre-labeler offers, would give the control away if it were more exact than the pre-labeler's
output or carried classes the pre-labeler never produces. The offer is therefore moved until
it is no closer to the truth than the real pre-label on the same image, and its classes are
mapped onto the ones the pre-labeler produced.
"""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

from appliance.labels import Label
from appliance.metrics import dice
from appliance.store.controls import control_for_image
from appliance.store.project import Project

__all__ = ["DETECTOR", "MAX_SHIFT", "adapt_classes", "offer_prelabel"]

DETECTOR = "detector"  # the cell detector's pre-label method (`appliance.assist.prelabel`)


def offer_prelabel(
    project: Project, image_id: int, computed: Label | None, method: str
) -> Label | None:
    """The pre-label to show for `image_id` once the real pre-labeler `method` computed one.

    Callers run the real pre-labeler first and pass its result, so a control costs the same
    time and offers a pre-label exactly when an ordinary image would (nothing when nothing was
    computed). A planted control offers its planted pre-label, another control its truth in
    place of 'previous' (a neighbouring frame's label would not fit it) and the computed one
    otherwise. A truth of marks only is never offered for 'previous': moving it as outlines are
    moved would drop its marks and offer nothing where a neighbouring region's marks are
    offered (and its exact marks would give it away). What a control offers in place of the
    computed pre-label looks like it (`_as_machine_made`): only classes the pre-labeler
    produced, and outlines no more exact than its own on this very image.
    """
    if computed is None:
        return None
    control = control_for_image(project, image_id)
    if control is None:
        return computed
    planted = control.prelabel if control.kind == "planted" else None
    if planted is not None and planted.objects and not planted.ids().size:
        # planted marks take the place of the detector's (the computed masks stay), and only
        # where the detector offered marks: elsewhere they would set the control apart
        if not computed.objects:
            return computed
        produced = {o.class_id for o in computed.objects}
        marks = adapt_classes(Label(planted.instances, {}, planted.objects), produced).objects
        return Label(computed.instances, dict(computed.classes), marks)
    if method == DETECTOR:
        # a planted pre-label is a mask; where ordinary images get the detector's points and
        # boxes, offering it would set the control apart
        return computed
    if control.kind == "planted" and control.prelabel is not None:
        base, errors = control.prelabel, json.loads(control.errors_json)
    elif method == "previous" and control.truth.ids().size:
        base, errors = control.truth, []
    else:
        return computed
    kept = {int(i) for e in errors if e.get("kind") == "false" for i in e["prelabel_ids"]}
    offer = _as_machine_made(base, control.truth, computed, kept, control.id)
    return adapt_classes(offer, {computed.class_of(i) for i in computed.ids()})


MAX_SHIFT = 12  # pixels a control's offered outline may move to look machine-made


def _as_machine_made(
    base: Label, truth: Label, computed: Label, kept: set[int], seed: int
) -> Label:
    """`base` with each cell moved by q pixels in a random direction (q growing from 0) until
    it is no closer to the truth than the real pre-label on this image (Dice), so that a
    planted pre-label is not the most exact one the annotator ever sees.

    Cells in `kept` (false cells, whose catching is judged on their planted shape) stay where
    they were planted; boundary and merge errors are judged on the annotator's label against
    the truth, so a moved outline changes nothing there. No cell vanishes, and the same
    control always moves alike (seeded by its id).
    """
    target = dice(truth.instances, computed.instances)
    boxes = ndimage.find_objects(base.instances)
    angles = np.random.default_rng(seed).uniform(0, 2 * np.pi, len(boxes))
    out = base.instances
    for q in range(1, MAX_SHIFT + 1):
        if dice(truth.instances, out) <= target:
            break
        out = np.zeros_like(base.instances)
        for cid in kept:
            out[base.instances == cid] = cid
        h, w = out.shape
        for k, box in enumerate(boxes):
            cid = k + 1
            if box is None or cid in kept:
                continue
            ys, xs = np.nonzero(base.instances[box] == cid)
            ys = np.clip(ys + box[0].start + round(q * np.sin(angles[k])), 0, h - 1)
            xs = np.clip(xs + box[1].start + round(q * np.cos(angles[k])), 0, w - 1)
            free = out[ys, xs] == 0
            out[ys[free], xs[free]] = cid
    return Label(out, dict(base.classes))


def adapt_classes(label: Label, produced: set[int]) -> Label:
    """`label` with every class the pre-labeler did not produce replaced by the smallest one it
    did, so that the offer looks like the pre-labeler's own. Deterministic in `produced`, so
    scoring can rebuild from the classes an offer showed what the annotator saw. Points and
    boxes are mapped alike."""
    if not produced:
        return label
    fallback = min(produced)
    table = {i: (c if c in produced else fallback) for i, c in label.classes.items()}
    marks = tuple(o if o.class_id in produced else o.with_class(fallback) for o in label.objects)
    return Label(label.instances, table, marks)
