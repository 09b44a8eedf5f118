"""What differs between output kinds on the training side: channels, targets, loss, prediction.

`softmax` is today's semantic output (one channel per class). The instance kinds (see
`appliance.assist.instances`) put their instance channels first and, for projects with more
than one cell class, a softmax over the foreground classes after them:

- `three_class`: Dice + cross-entropy over background / interior / boundary;
- `distance`: Dice + cross-entropy over background / foreground, plus the squared error of the
  sigmoid distance channel against the normalised distance target, weighted by `DIST_WEIGHT`;
- class channels: cross-entropy on foreground pixels only (background has no class to learn).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from appliance.assist.instances import INSTANCE_KINDS, output_channels
from export.losses import dice_ce_loss
from export.targets import (
    TRAINABLE,
    check_output,
    distance_target,
    three_class_target,
)

__all__ = [
    "TRAINABLE",
    "aux_target",
    "channels",
    "check_output",
    "loss",
    "semantic",
]
# The distance error lives in [0, 1] and is small once the foreground is right; this weight
# makes it pull about as hard as the Dice + cross-entropy of the foreground.
DIST_WEIGHT = 5.0
_HEAD = {"three_class": 3, "distance": 3}


def channels(kind: str, n_classes: int) -> int:
    return output_channels(kind, n_classes)


def aux_target(kind: str, instances: np.ndarray) -> np.ndarray:
    """The kind's per-pixel target from an (augmented) instance crop, float32 H×W."""
    if kind == "three_class":
        return three_class_target(instances).astype(np.float32)
    if kind == "distance":
        return distance_target(instances)
    return np.zeros(instances.shape, np.float32)


def loss(
    logits: torch.Tensor, y: torch.Tensor, aux: torch.Tensor, kind: str, n_classes: int
) -> torch.Tensor:
    """Training loss of `kind` for class map `y` (B×H×W) and the kind's target `aux`."""
    logits = logits.float()
    if kind == "softmax":
        return dice_ce_loss(logits, y)
    if kind == "three_class":
        total = dice_ce_loss(logits[:, :3], aux.long())
    else:
        total = dice_ce_loss(logits[:, :2], (y > 0).long())
        dist = torch.sigmoid(logits[:, 2])
        total = total + DIST_WEIGHT * F.mse_loss(dist, aux.float())
    if n_classes > 2:
        cls = torch.where(y > 0, y - 1, torch.full_like(y, -100)).long()
        if (cls >= 0).any():
            total = total + F.cross_entropy(logits[:, _HEAD[kind] :], cls, ignore_index=-100)
    return total


def semantic(logits: torch.Tensor, kind: str, n_classes: int) -> torch.Tensor:
    """Class map (B×H×W) from raw outputs, for validation Dice (0 = background)."""
    if kind not in INSTANCE_KINDS:
        return logits.argmax(1)
    fg = logits[:, :3].argmax(1) > 0 if kind == "three_class" else logits[:, 1] > logits[:, 0]
    cls = logits[:, _HEAD[kind] :].argmax(1) + 1 if n_classes > 2 else torch.ones_like(fg).long()
    return torch.where(fg, cls, torch.zeros_like(cls))
