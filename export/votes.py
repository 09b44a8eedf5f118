"""VotesLoss weights as seed 002 defines them: per-cell votes, normalised over the data set.

Seed 002, eq. 1: VotesLoss(y, p, v) = -α/n Σ_i CE_i · (v_i - min v) / (max v - min v), where v_i
is the number of experts who annotated cell i (found by non-maximum suppression over all
experts' annotations of that cell) and min v, max v are the smallest and largest vote counts
in the data set. For segmentation, cell i's weight applies to its pixels; the votes are counted
by matching each annotator's instances to the exported label's cells at IoU > 0.5
(`appliance.metrics.match_instances`, the criterion the controls use too). Background pixels
keep weight 1: eq. 1 weighs annotated objects, and the background has no votes to count.

Annotators can be weighted by their scores on control items (`annotators.json` in the job): a
vote then counts as the annotator's quality (mean of Dice, instance F1 and boundary F1) instead
of 1, so a careless annotator's agreement moves a cell's weight less.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from appliance.labels import Label
from appliance.metrics import match_instances


def annotator_weights(
    scores: Mapping[str, Mapping[str, Any]], authors: Sequence[str]
) -> list[float]:
    """Each author's control quality; authors without scores get the mean of the known ones."""
    known: dict[str, float] = {}
    for name in authors:
        value = ((scores.get(name) or {}).get("scores") or {}).get("quality", {}).get("value")
        if isinstance(value, (int, float)):
            known[name] = float(value)
    fallback = float(np.mean(list(known.values()))) if known else 1.0
    return [known.get(a, fallback) for a in authors]


def cell_votes(label: Label, votes: Sequence[Label], weights: Sequence[float]) -> dict[int, float]:
    """Cell id of `label` → summed weight of the annotators whose label holds that cell."""
    out = {int(i): 0.0 for i in label.ids()}
    for vote, weight in zip(votes, weights, strict=True):
        for cell, _ in match_instances(label.instances, vote.instances).pairs:
            out[cell] += weight
    return out


def weight_maps(
    items: Sequence[tuple[Label, Sequence[Label], Sequence[float]]],
) -> list[np.ndarray | None]:
    """Per item a float32 weight map (None for items without votes).

    Min and max are taken over the cells of every item that has votes, so a cell drawn by all
    annotators weighs 1 and one drawn by the fewest weighs 0, across the whole data set.
    """
    per_item = [cell_votes(lab, v, w) if v else None for lab, v, w in items]
    counts = [c for d in per_item if d for c in d.values()]
    if not counts:
        return [None] * len(items)
    lo, hi = min(counts), max(counts)
    out: list[np.ndarray | None] = []
    for (label, _, _), cells in zip(items, per_item, strict=True):
        if cells is None:
            out.append(None)
            continue
        top = int(label.instances.max(initial=0))
        lut = np.ones(top + 1, np.float32)
        for cid, v in cells.items():
            lut[cid] = 1.0 if hi == lo else (v - lo) / (hi - lo)
        out.append(lut[label.instances])
    return out
