"""Training losses: soft Dice + cross-entropy, and VotesLoss for multi-annotator labels.

Seed 003 trains with Dice loss alone; Dice + cross-entropy converges faster from scratch on few
images (cross-entropy gives useful gradients while Dice is still flat), and keeps Dice's
robustness to the small foreground share of cell images.

VotesLoss (seed 002, eq. 1) weights cross-entropy by how many annotators agree:
    VotesLoss = -α/n Σ_i CE_i · (v_i - min v) / (max v - min v)
with v_i the votes of the cell pixel i belongs to and min v, max v the smallest and largest
per-cell vote counts in the data set. The weights are computed once per data set from the
annotators' labels (`export.votes`) and arrive here as a per-pixel map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the foreground classes (channel 0 = background is skipped)."""
    probs = logits.float().softmax(dim=1)
    n_classes = logits.shape[1]
    onehot = F.one_hot(target.long(), n_classes).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (total + eps)
    return 1.0 - dice[1:].mean()


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice + pixel-wise cross-entropy, the default segmentation and upgrade loss."""
    return soft_dice_loss(logits, target) + F.cross_entropy(logits.float(), target.long())


def votes_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    has_votes: torch.Tensor,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Seed 002 eq. 1 for the samples that carry votes; plain cross-entropy for the others."""
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none")
    w = torch.where(has_votes.view(-1, 1, 1), alpha * weights.float(), torch.ones_like(ce))
    return (ce * w).mean()


def dice_votes_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    has_votes: torch.Tensor,
) -> torch.Tensor:
    """Soft Dice + VotesLoss: the cross-entropy term of `dice_ce_loss`, weighted by agreement."""
    return soft_dice_loss(logits, target) + votes_loss(logits, target, weights, has_votes)
