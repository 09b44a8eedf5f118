"""Decoding parameters chosen on the validation images, shipped in the model's contract.

The seed threshold, erosion and smoothing that keep touching cells apart depend on how sharp a
given model's output is: a short run leaves soft, gappy seed maps, a long one crisp cores. The
contract carries them (`appliance.contract`, per output kind), so the workstation picks them
for each model on its validation images, where the tablet would otherwise use one fixed guess.
Torch-free: the outputs come from the exported ONNX model or from the bench's network.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.assist.instances import decode, default_decoding
from appliance.contract import Value
from appliance.metrics import InstanceCounts

# Each kind's searched values; the other parameters stay at the kind's defaults.
GRID: dict[str, dict[str, tuple[Value, ...]]] = {
    "three_class": {
        "seed_threshold": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        "seed_erosion": (0, 1, 2, 3),
        "seed_smoothing": (0.0, 1.0, 2.0),
    },
    "distance": {
        "seed_threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
        "seed_smoothing": (0.0, 1.0, 2.0),
    },
}
# Fewer true cells than this in the validation images and a "better" setting is mostly luck:
# the kind's defaults are kept.
MIN_CELLS = 30


@dataclass(frozen=True)
class Tuned:
    """The chosen decoding, and instance F1 (IoU 0.5) on the validation images with the kind's
    defaults and with it."""

    decoding: dict[str, Value]
    default_f1: float
    f1: float
    cells: int

    def as_dict(self) -> dict[str, object]:
        return {
            "decoding": self.decoding,
            "val_instance_f1_default_decoding": round(self.default_f1, 4),
            "val_instance_f1": round(self.f1, 4),
            "val_cells": self.cells,
        }


def f1_of(
    outputs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    kind: str,
    n_classes: int,
    decoding: dict[str, Value],
) -> float:
    """Instance F1 at IoU 0.5 of `outputs` (raw C×H×W model outputs) decoded with `decoding`."""
    counts = InstanceCounts()
    for out, truth in zip(outputs, truths, strict=True):
        inst, _ = decode(out, kind, n_classes, decoding)
        counts.add(truth, inst)
    return counts.f1


def tune_decoding(
    outputs: Sequence[np.ndarray], truths: Sequence[np.ndarray], kind: str, n_classes: int
) -> Tuned:
    """The grid's decoding with the best validation F1; the defaults win ties and small sets.

    >>> from export.targets import ideal_logits
    >>> truth = np.zeros((32, 32), np.uint32); truth[4:14, 4:14] = 1; truth[14:24, 6:16] = 2
    >>> tune_decoding([ideal_logits(truth, "distance")], [truth], "distance", 2).f1
    1.0
    """
    defaults = default_decoding(kind)
    default_f1 = f1_of(outputs, truths, kind, n_classes, defaults)
    cells = sum(len(np.unique(t[t > 0])) for t in truths)
    best, best_f1 = defaults, default_f1
    if cells >= MIN_CELLS:
        grid = GRID[kind]
        for values in itertools.product(*grid.values()):
            trial = {**defaults, **dict(zip(grid, values, strict=True))}
            if trial == defaults:
                continue  # scored above
            f1 = f1_of(outputs, truths, kind, n_classes, trial)
            if f1 > best_f1:
                best, best_f1 = trial, f1
    return Tuned(dict(best), default_f1, best_f1, cells)
