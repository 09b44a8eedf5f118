"""Classifier two-sample test (C2ST): can a small CNN tell generated crops from real ones?

No pretrained network can be downloaded here, so no FID; instead a small CNN is trained on half
of a balanced set of real and generated crops and scored on the other half (Lopez-Paz & Oquab).
Held-out accuracy 0.5 means indistinguishable, 1.0 means every crop is told apart. The report
gives the accuracy overall and per class, with the number of crops behind each figure.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Critic(nn.Module):
    """Three strided convolutions, global average pooling, one logit."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, 2, 1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(4 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x).mean(dim=(2, 3))).squeeze(1)


def c2st(
    real: np.ndarray,
    fake: np.ndarray,
    real_labels: np.ndarray,
    fake_labels: np.ndarray,
    classes: list[str],
    seed: int = 0,
    epochs: int = 40,
    holdout: float = 0.5,
) -> dict[str, object]:
    """Held-out accuracy of real-vs-generated classification (N×C×S×S crops in [-1, 1])."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    n = min(len(real), len(fake))
    ri, fi = rng.permutation(len(real))[:n], rng.permutation(len(fake))[:n]
    x = np.concatenate([real[ri], fake[fi]]).astype(np.float32)
    y = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)
    cls = np.concatenate([real_labels[ri], fake_labels[fi]])
    order = rng.permutation(2 * n)
    n_test = round(holdout * 2 * n)
    test, train = order[:n_test], order[n_test:]
    model = Critic(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for b in np.array_split(rng.permutation(train), max(1, len(train) // 32)):
            xb = xt[b]
            k = int(rng.integers(4))  # orientation carries no information: augment it away
            xb = torch.rot90(xb, k, (2, 3))
            loss = F.binary_cross_entropy_with_logits(model(xb), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = (model(xt[test]) > 0).numpy()
    correct = pred == (y[test] > 0.5)
    per_class = {}
    for k, name in enumerate(classes):
        sel = cls[test] == k
        if sel.any():
            per_class[name] = {
                "accuracy": round(float(correct[sel].mean()), 3),
                "n_test": int(sel.sum()),
            }
    return {
        "accuracy": round(float(correct.mean()), 3),
        "n_real": int(n),
        "n_fake": int(n),
        "n_test": int(n_test),
        "per_class": per_class,
    }
