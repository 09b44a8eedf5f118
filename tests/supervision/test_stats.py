"""Intervals and summaries: per control item (cluster bootstrap), honest at one control."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.store.controls import ScoreRow
from appliance.supervision.stats import cluster_mean, cluster_rate, wilson
from appliance.supervision.summary import high_score, summarise


def test_wilson_matches_the_textbook_values() -> None:
    e = wilson(8, 10)
    assert e.value == 0.8
    assert e.low == pytest.approx(0.4902, abs=1e-4) and e.high == pytest.approx(0.9433, abs=1e-4)
    zero = wilson(0, 58)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.0621, abs=1e-4)
    assert wilson(0, 0).value is None


def test_cluster_bootstrap_is_reproducible_and_narrows_with_more_controls() -> None:
    few = cluster_mean([0.8, 0.9, 0.7, 0.95])
    many = cluster_mean([0.8, 0.9, 0.7, 0.95] * 10)
    assert few == cluster_mean([0.8, 0.9, 0.7, 0.95])
    assert few.low < few.value < few.high
    assert (many.high - many.low) < (few.high - few.low)
    assert cluster_mean([]).value is None and cluster_rate([], []).value is None


def test_one_control_or_equal_values_never_give_a_zero_width_interval() -> None:
    one = cluster_mean([1.0])
    assert one.n == 1 and one.high == 1.0 and one.low == pytest.approx(0.2065, abs=1e-4)
    same = cluster_mean([0.9] * 5)
    assert same.low < 0.9 < same.high and (same.low, same.high) == (
        wilson(4.5, 5).low,
        wilson(4.5, 5).high,
    )


def test_cells_inside_one_control_are_not_independent_trials() -> None:
    # 100 of 100 cells matched in one control: one control's worth of evidence, not 100
    pooled = cluster_rate([100], [100])
    assert pooled.n == 1 and pooled.low < 0.25  # Wilson over cells would claim > 0.96
    assert wilson(100, 100).low > 0.96
    # two controls of 50 cells, one perfect and one poor: the interval spans both
    two = cluster_rate([50, 10], [50, 50])
    assert two.n == 2 and two.low <= 0.2 + 1e-9 and two.high >= 1.0 - 1e-9


@pytest.mark.parametrize("n", [1, 3, 10, 30])
def test_intervals_cover_the_true_score_at_least_nine_times_in_ten(n: int) -> None:
    """The promise in docs/supervision.md: on controls that differ in difficulty, the 95 %
    interval holds the annotator's true mean score (and true planted-error recall) in at
    least 90 % of simulated annotators, for every number of controls from one on."""
    rng = np.random.default_rng(n)
    reps, hits_mean, hits_rate = 300, 0, 0
    for _ in range(reps):
        quality = rng.beta(8, 2, n)  # true mean 0.8, spread between controls
        e = cluster_mean(quality.tolist(), samples=500, seed=int(rng.integers(1 << 30)))
        hits_mean += e.low <= 0.8 <= e.high
        p = rng.beta(3, 3, n)  # each control's errors are easier or harder: true rate 0.5
        planted = rng.integers(1, 6, n)
        caught = rng.binomial(planted, p)
        r = cluster_rate(caught.tolist(), planted.tolist(), samples=500, seed=1)
        hits_rate += r.low <= 0.5 <= r.high
    assert hits_mean / reps >= 0.9 and hits_rate / reps >= 0.9, (hits_mean, hits_rate)


def _row(control: int, dice: float, planted: dict[str, tuple[int, int]]) -> ScoreRow:
    return ScoreRow(control, control, "a", 3.0, 4, 4, 3, 2, dice, 0.75, 0.5, planted)


def test_summary_pools_counts_and_gives_points() -> None:
    rows = [_row(1, 0.9, {"deleted": (1, 1)}), _row(2, 0.7, {"deleted": (0, 1), "false": (1, 2)})]
    s = summarise(rows)
    assert s["controls"] == 2
    assert s["instance_recall"]["value"] == 6 / 8 and s["instance_recall"]["n"] == 2  # controls
    assert s["class_accuracy"]["value"] == pytest.approx(4 / 6, abs=1e-4)  # rounded to 4
    assert s["planted_recall"]["value"] == 2 / 4
    assert s["planted_recall_by_kind"]["false"]["n"] == 1  # one control planted it
    assert s["quality"]["value"] == pytest.approx((0.8 + 0.75 + 0.5) / 3, abs=1e-4)
    assert high_score(s) == round(1000 * s["quality"]["value"])
    assert high_score(summarise([])) == 0
