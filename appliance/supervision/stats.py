"""95 % intervals for an annotator's running scores, per control item.

The unit of evidence is a control, not a cell: cells of one image share its difficulty and the
annotator's mood, so counting them as independent trials (a Wilson interval over cells)
claims far more than the data hold. Every metric is therefore resampled by control (a cluster
bootstrap): means of per-control values (Dice, instance F1, boundary F1, quality) and pooled
rates (matched cells out of truth cells, planted errors caught out of planted) alike.

Two guards keep the interval honest where the bootstrap is not:
- with few controls the percentile bootstrap is too narrow (it never reaches past the values
  seen); the interval also holds the t interval on the bootstrap's standard error, with n - 1
  degrees of freedom;
- when the controls do not vary (one control, or all giving the same value) the data say
  nothing about the spread, so the interval is the widest one for that mean and number of
  controls: Wilson's, as if each control had been a single pass/fail trial (the Bernoulli
  spread is the largest any score in [0, 1] can have). One perfect control gives
  [0.21, 1.0], not [1.0, 1.0].

A fixed seed makes the same scores always give the same interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # Student t quantiles (scipy.stats is not in the tablet build)

__all__ = ["BOOTSTRAP_SAMPLES", "Z95", "Estimate", "cluster_mean", "cluster_rate", "wilson"]

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


def wilson(successes: float, trials: int, z: float = Z95) -> Estimate:
    """Wilson score interval of a binomial rate; no value for zero trials."""
    if trials <= 0:
        return Estimate(None, None, None, 0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), trials)


def _clustered(value: float, per_control: np.ndarray, resampled: np.ndarray) -> Estimate:
    """`value` with the interval the resampled controls give, or Wilson's when nothing varies.

    The interval is the hull of the percentile interval and the t interval on the bootstrap's
    standard error (n - 1 degrees of freedom, variance scaled by n / (n - 1)), clipped to
    [0, 1]: with a handful of controls the percentiles alone cannot reach past the values
    seen, and the t quantile says how far the mean of so few may lie.
    """
    n = int(per_control.size)
    if n < 2 or np.ptp(per_control) == 0:
        floor = wilson(value * n, n)
        return Estimate(value, floor.low, floor.high, n)
    lo, hi = np.nanpercentile(resampled, [2.5, 97.5])
    half = float(stdtrit(n - 1, 0.975)) * float(np.nanstd(resampled)) * np.sqrt(n / (n - 1))
    low = max(0.0, min(float(lo), value - half))
    high = min(1.0, max(float(hi), value + half))
    return Estimate(value, low, high, n)


def _draws(n: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def cluster_mean(values: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> Estimate:
    """Mean of one value per control, resampling controls (see the module doc)."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return Estimate(None, None, None, 0)
    means = x[_draws(x.size, samples, seed)].mean(axis=1)
    return _clustered(float(x.mean()), x, means)


def cluster_rate(
    successes: list[int], trials: list[int], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> Estimate:
    """Pooled rate sum(successes) / sum(trials) over controls, resampling controls; controls
    without trials (no planted error, no matched cell) carry no evidence and are left out."""
    s = np.asarray(successes, np.float64)
    t = np.asarray(trials, np.float64)
    keep = t > 0
    s, t = s[keep], t[keep]
    if t.size == 0:
        return Estimate(None, None, None, 0)
    idx = _draws(t.size, samples, seed)
    rates = s[idx].sum(axis=1) / t[idx].sum(axis=1)
    return _clustered(float(s.sum() / t.sum()), s / t, rates)
