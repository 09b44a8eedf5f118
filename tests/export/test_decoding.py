"""Seed parameters chosen on validation images (`export.decoding`) and the seed smoothing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from appliance.assist.instances import decode, default_decoding
from export.decoding import MIN_CELLS, tune_decoding
from export.targets import distance_target, ideal_logits
from export.train import TrainConfig, learning_rate


def touching_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` pairs of touching squares in a row, and a distance output whose cores of each pair
    are bridged above 0.5 (a soft model's output): the default threshold merges every pair."""
    truth = np.zeros((24, 26 * n), np.uint32)
    for k in range(n):
        x = 26 * k + 2
        truth[4:20, x : x + 11] = 2 * k + 1
        truth[4:20, x + 11 : x + 22] = 2 * k + 2
    out = ideal_logits(truth, "distance")
    dist = distance_target(truth)
    soft = 0.55 + 0.45 * dist  # the line between two cells sits at 0.55, not 0
    soft[truth == 0] = 0.0
    soft = np.clip(soft, 1e-4, 1 - 1e-4)
    out[2] = np.log(soft / (1 - soft))
    return truth, out


def test_a_soft_output_is_split_by_the_threshold_chosen_on_validation() -> None:
    truth, out = touching_pairs(MIN_CELLS // 2 + 1)
    tuned = tune_decoding([out], [truth], "distance", 2)
    assert tuned.default_f1 < 0.5  # the default seed threshold joins each pair
    assert tuned.f1 == 1.0 and tuned.decoding["seed_threshold"] > 0.5
    inst, _ = decode(out, "distance", 2, tuned.decoding)
    assert inst.max() == truth.max()


def test_too_few_validation_cells_keep_the_defaults() -> None:
    truth, out = touching_pairs(2)
    tuned = tune_decoding([out], [truth], "distance", 2)
    assert tuned.decoding == default_decoding("distance") and tuned.cells == 4


def test_seed_smoothing_bridges_a_one_pixel_dip_in_a_cells_core() -> None:
    truth = np.zeros((30, 40), np.uint32)
    truth[5:25, 5:35] = 1
    out = ideal_logits(truth, "distance")
    out[2, 5:25, 20] = -8.0  # one column where the model's distance drops to ~0
    sharp = {**default_decoding("distance"), "seed_smoothing": 0.0}
    assert decode(out, "distance", 2, sharp)[0].max() == 2  # one cell cut in two
    smooth = {**default_decoding("distance"), "seed_smoothing": 1.0}
    assert decode(out, "distance", 2, smooth)[0].max() == 1


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_schedules(schedule: str) -> None:
    config = TrainConfig(lr=1e-3, epochs=50, lr_schedule=schedule)
    rates = [learning_rate(config, e) for e in range(1, 51)]
    assert rates[0] == pytest.approx(1e-3)
    if schedule == "constant":
        assert rates == [1e-3] * 50
    else:
        assert all(a >= b for a, b in itertools.pairwise(rates))
        assert rates[-1] == pytest.approx(5e-5)
