"""Intervals and summaries: Wilson for rates, bootstrap for means, one control counted once."""

from __future__ import annotations

import pytest

from appliance.store.controls import ScoreRow
from appliance.supervision.stats import bootstrap_mean, wilson
from appliance.supervision.summary import high_score, summarise


def test_wilson_matches_the_textbook_values() -> None:
    e = wilson(8, 10)
    assert e.value == 0.8
    assert e.low == pytest.approx(0.4902, abs=1e-4) and e.high == pytest.approx(0.9433, abs=1e-4)
    zero = wilson(0, 58)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.0621, abs=1e-4)
    assert wilson(0, 0).value is None


def test_bootstrap_is_reproducible_and_narrows_with_more_controls() -> None:
    few = bootstrap_mean([0.8, 0.9, 0.7, 0.95])
    many = bootstrap_mean([0.8, 0.9, 0.7, 0.95] * 10)
    assert few == bootstrap_mean([0.8, 0.9, 0.7, 0.95])
    assert few.low < few.value < few.high
    assert (many.high - many.low) < (few.high - few.low)
    assert bootstrap_mean([]).value is None and bootstrap_mean([0.5]).low == 0.5


def _row(control: int, dice: float, planted: dict[str, tuple[int, int]]) -> ScoreRow:
    return ScoreRow(control, control, "a", 3.0, 4, 4, 3, 2, dice, 0.75, 0.5, planted)


def test_summary_pools_counts_and_gives_points() -> None:
    rows = [_row(1, 0.9, {"deleted": (1, 1)}), _row(2, 0.7, {"deleted": (0, 1), "false": (1, 2)})]
    s = summarise(rows)
    assert s["controls"] == 2
    assert s["instance_recall"]["value"] == 6 / 8 and s["instance_recall"]["n"] == 8
    assert s["class_accuracy"]["value"] == pytest.approx(4 / 6, abs=1e-4)  # rounded to 4
    assert s["planted_recall"]["value"] == 2 / 4
    assert s["planted_recall_by_kind"]["false"]["n"] == 2
    assert s["quality"]["value"] == pytest.approx((0.8 + 0.75 + 0.5) / 3, abs=1e-4)
    assert high_score(s) == round(1000 * s["quality"]["value"])
    assert high_score(summarise([])) == 0
