"""`--targets masks`: a segmentation model trained on a job whose cells are points and boxes.

Where the lab asks for masks but the experts placed points and drew boxes (seeds 000 and 002),
each box becomes its inscribed ellipse and each point a disc (`export.centres.objects_as_masks`).
Given an upgrade model bundle (`--upgrade-with`), those coarse masks go through it first, the
way a tablet upgrades a quick scribble (seed 003), and its refined cells fill the places the
experts did not segment themselves; without one they are trained on as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.assist.runtime import InferenceModel
from appliance.assist.upgrade import upgrade
from appliance.bundles.model_bundle import read_model_bundle
from appliance.contract import Contract
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.session.presenter import merge_under
from export.centres import objects_as_masks

__all__ = ["Relabel", "mask_targets", "upgrader_from_bundle"]

Relabel = Callable[[np.ndarray, Label], Label]  # (pixels, label) -> label trained on


def upgrader_from_bundle(bundle: Path, folder: Path) -> Callable[[np.ndarray, Label], Label]:
    """The upgrade model of a model bundle (verified, extracted under `folder`) as a function."""
    folder.mkdir(parents=True, exist_ok=True)
    read = read_model_bundle(bundle, extract_to=folder)
    found = [m for m in read.models if m.role == "upgrade"]
    if not found or found[0].staged is None or not isinstance(found[0].contract, Contract):
        raise ApplianceError(f"{bundle}: holds no upgrade model (--upgrade-with)")
    model = InferenceModel(found[0].staged, found[0].contract, model_id=found[0].id)
    return lambda pixels, coarse: upgrade(model, pixels, coarse)


def mask_targets(
    point_radius: int, upgrader: Callable[[np.ndarray, Label], Label] | None = None
) -> Relabel:
    """The label transform of `--targets masks`: the experts' masks stay as drawn; their
    points and boxes become coarse masks, refined by `upgrader` when there is one."""

    def relabel(pixels: np.ndarray, label: Label) -> Label:
        if not label.objects:
            return label
        drawn = Label(label.instances, label.classes)
        coarse = objects_as_masks(Label(np.zeros_like(label.instances), {}, label.objects),
                                  point_radius)  # fmt: skip
        machine = coarse if upgrader is None else upgrader(pixels, coarse)
        return merge_under(drawn, machine)

    return relabel
