"""95 % intervals for an annotator's running scores.

Rates (instance recall and precision, class accuracy, planted-error recall) are counts of
successes out of trials, so they get the Wilson score interval, which stays inside [0, 1] and
is honest for the few trials a new annotator has. Per-control means (Dice, instance F1,
boundary F1) are not counts; their interval is a percentile bootstrap over controls with a
fixed seed, so the same scores always give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BOOTSTRAP_SAMPLES", "Z95", "Estimate", "bootstrap_mean", "wilson"]

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A score with its 95 % interval and the number of observations behind it."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "value": _round(self.value),
            "low": _round(self.low),
            "high": _round(self.high),
            "n": self.n,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def wilson(successes: int, trials: int, z: float = Z95) -> Estimate:
    """Wilson score interval of a binomial rate; no value for zero trials."""
    if trials <= 0:
        return Estimate(None, None, None, 0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), trials)


def bootstrap_mean(
    values: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Estimate:
    """Mean with a percentile bootstrap interval (resampling controls, fixed seed)."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return Estimate(None, None, None, 0)
    if x.size == 1:
        return Estimate(float(x[0]), float(x[0]), float(x[0]), 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(samples, x.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size))
