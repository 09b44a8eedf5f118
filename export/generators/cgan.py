"""Class-conditional GAN for single cells (seed 000, §3.1).

The paper's generator is five linear layers alternating with LeakyReLU, conditioned on the class
label; training uses 64×64 crops, batch 64, Adam with learning rate 2e-4, the binary cross
entropy with logits, and class weights in the loss against the severe class imbalance. The
convolutional variant (`arch="conv"`, DCGAN-style transposed convolutions and a projection
discriminator) is the usual fix for the noise the paper saw in its cGAN cells.

Both generators draw the cell's mask as an extra output channel, so a synthetic cell comes with
its exact truth (what the tablet's synthetic controls need); the discriminator judges image and
mask together, which keeps the two consistent.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm
from tqdm import tqdm

from export.generators.common import autocast, batches, runtime, wrap
from export.generators.data import CropSet
from export.train import optimiser_step

LATENT_DIM = 100


class MLPGenerator(nn.Module):
    """The paper's generator: (z, class embedding) → 5 × (Linear, LeakyReLU) → tanh image."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 128) -> None:
        super().__init__()
        self.out_shape = (channels + 1, size, size)
        self.embed = nn.Embedding(n_classes, n_classes)
        dims = [LATENT_DIM + n_classes, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(dims[-1], int(np.prod(self.out_shape))))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.net(torch.cat([z, self.embed(label)], dim=1))
        return torch.tanh(h).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """(image + mask, class embedding) → LeakyReLU MLP → one logit."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_classes, n_classes)
        d_in = (channels + 1) * size * size + n_classes
        self.net = nn.Sequential(
            nn.Linear(d_in, 4 * width),
            nn.LeakyReLU(0.2),
            nn.Linear(4 * width, 2 * width),
            nn.LeakyReLU(0.2),
            nn.Linear(2 * width, 1),
        )

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), self.embed(label)], dim=1)).squeeze(1)


class ConvGenerator(nn.Module):
    """DCGAN-style: (z, class) → 4×4 features → transposed convolutions up to the size."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        ups = int(np.log2(size // 4))
        if 4 * 2**ups != size:
            raise ValueError(f"the conv generator needs a size 4·2^k, got {size}")
        self.embed = nn.Embedding(n_classes, 16)
        top = width * 2 ** (ups - 1) if ups else width
        self.top = top
        self.fc = nn.Linear(LATENT_DIM + 16, top * 16)
        layers: list[nn.Module] = [nn.BatchNorm2d(top), nn.ReLU()]
        c = top
        for i in range(ups):
            nxt = max(width, c // 2) if i < ups - 1 else width
            layers += [
                nn.ConvTranspose2d(c, nxt, 4, 2, 1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.ReLU(),
            ]
            c = nxt
        layers += [nn.Conv2d(c, channels + 1, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(label)], dim=1)).view(-1, self.top, 4, 4)
        return self.net(h)


class ConvDiscriminator(nn.Module):
    """Spectral-normalised strided convolutions to 4×4, then a projection onto the class
    embedding (Miyato & Koyama's projection discriminator)."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = channels + 1, size
        nxt = width
        while s > 4:
            layers += [spectral_norm(nn.Conv2d(c, nxt, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c, s, nxt = nxt, s // 2, min(nxt * 2, 8 * width)
        self.net = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, c))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.net(x).sum(dim=(2, 3))
        return self.head(h).squeeze(1) + (self.embed(label) * h).sum(1)


ARCHS = {"mlp": (MLPGenerator, MLPDiscriminator), "conv": (ConvGenerator, ConvDiscriminator)}


@dataclass
class CganConfig:
    """Seed 000's settings by default (200 epochs, batch 64, Adam 2e-4)."""

    arch: str = "conv"
    epochs: int = 200
    batch: int = 64
    lr: float = 2e-4
    width: int | None = None
    device: str = "auto"
    seed: int = 0
    max_steps: int | None = None


@dataclass
class CganResult:
    generator: nn.Module
    history: list[dict[str, float]]
    seconds: float
    steps: int
    device: str
    precision: str
    config: dict[str, object] = field(default_factory=dict)


def _weighted_bce(logits: torch.Tensor, target: float, weight: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(
        logits.float(), torch.full_like(logits.float(), target), weight=weight
    )


def train_cgan(
    data: CropSet, config: CganConfig, run_dir: Path | None = None, progress: bool = True
) -> CganResult:
    """Adversarial training on image+mask crops; returns the generator (eval, CPU)."""
    rt, amp, precision = runtime(config.device, config.seed)
    n_classes, channels, size = len(data.classes), data.images.shape[1], data.images.shape[-1]
    g_cls, d_cls = ARCHS[config.arch]
    kw = {} if config.width is None else {"width": config.width}
    gen = g_cls(n_classes, channels, size, **kw).to(rt.device)
    disc = d_cls(n_classes, channels, size, **kw).to(rt.device)
    g_net, d_net = wrap(gen, rt), wrap(disc, rt)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=config.lr, betas=(0.5, 0.999))
    scaler_g = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    scaler_d = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    x_all = torch.from_numpy(np.concatenate([data.images, data.masks * 2 - 1], axis=1))
    y_all = torch.from_numpy(data.labels)
    w_all = torch.from_numpy(data.class_weights()[data.labels])
    steps = config.max_steps or config.epochs * max(1, -(-len(data) // config.batch))
    history: list[dict[str, float]] = []
    start = time.monotonic()
    bar = tqdm(
        batches(len(data), config.batch, steps, rt, config.seed),
        total=steps,
        desc=f"cgan-{config.arch}",
        unit="step",
        disable=not (progress and rt.main),
        dynamic_ncols=True,
    )
    for step, idx in enumerate(bar, 1):
        real = x_all[idx].to(rt.device)
        y = y_all[idx].to(rt.device)
        w = w_all[idx].to(rt.device)
        z = torch.randn(len(idx), LATENT_DIM, device=rt.device)
        with autocast(rt, amp):
            fake = g_net(z, y)
            d_loss = _weighted_bce(d_net(real, y), 1.0, w) + _weighted_bce(
                d_net(fake.detach(), y), 0.0, w
            )
        optimiser_step(opt_d, scaler_d, d_loss)
        with autocast(rt, amp):
            g_loss = _weighted_bce(d_net(fake, y), 1.0, w)
        optimiser_step(opt_g, scaler_g, g_loss)
        row = {
            "step": step,
            "d_loss": float(d_loss.item()),
            "g_loss": float(g_loss.item()),
            "seconds": time.monotonic() - start,
        }
        history.append(row)
        bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
    bar.close()
    gen = gen.cpu().eval()
    return CganResult(
        generator=gen,
        history=history,
        seconds=time.monotonic() - start,
        steps=steps,
        device=str(rt.device),
        precision=precision,
        config={**config.__dict__, "latent_dim": LATENT_DIM},
    )


@torch.no_grad()
def sample_cgan(gen: nn.Module, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """N×(C+1)×S×S samples (image channels then mask) for the class indices `labels`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(labels), LATENT_DIM, generator=g)
    return gen.eval()(z, torch.as_tensor(labels, dtype=torch.int64)).numpy()
