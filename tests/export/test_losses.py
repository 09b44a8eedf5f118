"""Dice + cross-entropy and VotesLoss (seed 002, eq. 1: per-cell votes, data-set min/max)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from appliance.labels import Label
from export.losses import dice_ce_loss, soft_dice_loss, votes_loss
from export.votes import annotator_weights, weight_maps


def _logits(target: torch.Tensor, margin: float) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    return margin * (2 * onehot - 1)


def test_dice_ce_is_small_for_right_and_large_for_wrong_logits() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    assert dice_ce_loss(_logits(target, 20.0), target) < 1e-3
    assert dice_ce_loss(_logits(1 - target, 20.0), target) > 1.9
    assert soft_dice_loss(_logits(1 - target, 20.0), target) > 0.98  # eps=1 smoothing


def test_votes_loss_weights_ce_per_pixel_and_falls_back_to_ce() -> None:
    target = torch.tensor([[[1, 0]]])
    logits = torch.zeros(1, 2, 1, 2)  # CE = log 2 everywhere
    weights = torch.tensor([[[0.0, 1.0]]])  # pixel 0 lies in a cell with the fewest votes
    loss = votes_loss(logits, target, weights, torch.tensor([True]))
    assert torch.isclose(loss, torch.log(torch.tensor(2.0)) / 2)
    plain = votes_loss(logits, target, weights, torch.tensor([False]))
    assert torch.isclose(plain, torch.log(torch.tensor(2.0)))


def test_votes_are_counted_per_cell_and_normalised_over_the_data_set() -> None:
    """Seed 002 eq. 1: (v - min v) / (max v - min v) with min and max over all cells."""
    lab = np.zeros((6, 12), np.uint32)
    lab[1:4, 1:4], lab[1:4, 6:9] = 1, 2
    consensus = Label(lab)
    only_first = Label(np.where(lab == 1, 1, 0))
    both = Label(lab.copy())
    shifted = Label(np.roll(lab, 5, axis=1))  # matches nothing at IoU > 0.5
    maps = weight_maps(
        [
            (consensus, [both, only_first, both], [1.0, 1.0, 1.0]),  # cell 1: 3 votes, 2: 2
            (consensus, [shifted], [1.0]),  # both cells 0 votes: the data set's minimum
            (consensus, [], []),  # one annotator: no votes, plain cross-entropy
        ]
    )
    assert maps[0] is not None and maps[1] is not None and maps[2] is None
    assert maps[0][2, 2] == 1.0 and np.isclose(maps[0][2, 7], 2 / 3)
    assert maps[1][2, 2] == 0.0 and maps[0][0, 0] == 1.0  # background keeps weight 1
    weighted = weight_maps([(consensus, [both, only_first], [0.5, 1.0])])[0]
    assert weighted is not None and weighted[2, 2] == 1.0 and weighted[2, 7] == 0.0
    scores = {"a": {"scores": {"quality": {"value": 0.9}}}, "b": {"scores": None}}
    assert annotator_weights(scores, ["a", "b"]) == [0.9, 0.9]
