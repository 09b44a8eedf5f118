"""An annotator's running scores: every metric with its 95 % interval and its count.

One control counts once per annotator (their last save of it). The summary is what
`appliance scores` prints, what the high-score screen ranks and what travels in training
jobs (`annotators.json`), so a trainer can weight annotators by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from appliance.store.controls import ScoreRow
from appliance.supervision.scoring import ControlScore
from appliance.supervision.stats import cluster_mean, cluster_rate

__all__ = ["MEANS", "feedback", "high_score", "leaderboard", "quality", "summarise"]

MEANS = ("dice", "instance_f1", "boundary_f1")


def quality(row: ScoreRow) -> float:
    """One number per control: the mean of Dice, instance F1 and boundary F1."""
    return (row.dice + row.instance_f1 + row.boundary_f1) / 3.0


def summarise(rows: Sequence[ScoreRow]) -> dict[str, Any]:
    """Scores over `rows` (one per control); a JSON-ready dict of {value, low, high, n}, where
    n counts controls and every interval resamples controls (`stats`)."""
    out: dict[str, Any] = {"controls": len(rows)}
    out["quality"] = cluster_mean([quality(r) for r in rows]).to_dict()
    for name in MEANS:
        out[name] = cluster_mean([getattr(r, name) for r in rows]).to_dict()
    matched = [r.matched for r in rows]
    out["instance_recall"] = cluster_rate(matched, [r.n_truth for r in rows]).to_dict()
    out["instance_precision"] = cluster_rate(matched, [r.n_label for r in rows]).to_dict()
    out["class_accuracy"] = cluster_rate([r.class_correct for r in rows], matched).to_dict()
    kinds = sorted({k for r in rows for k in r.planted})
    caught = [sum(c for c, _ in r.planted.values()) for r in rows]
    planted = [sum(n for _, n in r.planted.values()) for r in rows]
    out["planted_recall"] = cluster_rate(caught, planted).to_dict()
    out["planted_recall_by_kind"] = {
        k: cluster_rate(
            [r.planted.get(k, (0, 0))[0] for r in rows], [r.planted.get(k, (0, 0))[1] for r in rows]
        ).to_dict()
        for k in kinds
    }
    secs = [r.seconds for r in rows]
    out["seconds_per_control"] = round(float(np.mean(secs)), 2) if secs else None
    return out


def high_score(summary: dict[str, Any]) -> int:
    """Points for the high-score screen: quality in thousandths, 0 before any control."""
    value = summary.get("quality", {}).get("value")
    return 0 if value is None else round(1000 * value)


def leaderboard(project: Any) -> list[tuple[str, int, int]]:
    """(annotator, points, controls) for everyone with a scored control, best first."""
    from appliance.store.controls import annotator_summaries

    rows = [(name, high_score(s), n) for name, (n, s) in annotator_summaries(project).items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def feedback(result: ControlScore) -> str:
    """The optional message right after a control ("you caught 3 of 4 planted errors").

    It is shown only when the project switches feedback on, and it necessarily tells the
    annotator that the image was a control; a lab that wants controls fully hidden leaves it off.
    """
    caught = sum(c for c, _ in result.planted.values())
    planted = sum(n for _, n in result.planted.values())
    found = f"{result.matched} of {result.n_truth} cells matched"
    if planted:
        return f"Check item: you caught {caught} of {planted} planted errors; {found}"
    return f"Check item: {found}, Dice {result.dice:.2f}"
