"""Dice + cross-entropy and VotesLoss (seed 002, eq. 1)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from export.losses import dice_ce_loss, soft_dice_loss, votes_loss, votes_weights


def _logits(target: torch.Tensor, margin: float) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    return margin * (2 * onehot - 1)


def test_dice_ce_is_small_for_right_and_large_for_wrong_logits() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    assert dice_ce_loss(_logits(target, 20.0), target) < 1e-3
    assert dice_ce_loss(_logits(1 - target, 20.0), target) > 1.9
    assert soft_dice_loss(_logits(1 - target, 20.0), target) > 0.98  # eps=1 smoothing


def test_votes_weights_are_the_share_of_agreeing_annotators() -> None:
    target = torch.tensor([[[1, 1, 0, 0]]])
    votes = torch.tensor([[[[1, 0, 0, 1]], [[1, 1, 0, 1]], [[-1, -1, -1, -1]]]])  # 2 voters + pad
    w = votes_weights(target, votes, torch.tensor([2]))
    assert torch.allclose(w, torch.tensor([[[1.0, 0.5, 1.0, 0.0]]]))


def test_votes_loss_ignores_pixels_nobody_agreed_with_and_falls_back_to_ce() -> None:
    target = torch.tensor([[[1, 0]]])
    logits = torch.zeros(1, 2, 1, 2)  # CE = log 2 everywhere
    votes = torch.tensor([[[[0, 0]]]])  # the one voter disagrees on pixel 0
    loss = votes_loss(logits, target, votes, torch.tensor([1]))
    assert torch.isclose(loss, torch.log(torch.tensor(2.0)) / 2)
    plain = votes_loss(logits, target, votes, torch.tensor([0]))
    assert torch.isclose(plain, torch.log(torch.tensor(2.0)))
