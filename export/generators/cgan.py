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

from export.generators.common import Budget, Ema, autocast, batches, runtime, wrap
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
    """(z, class) → 4×4 features → (nearest ×2 upsampling, 3×3 convolution) up to the size.

    Upsampling then convolving, instead of DCGAN's transposed convolutions, avoids their
    checkerboard texture (Odena et al., 2016), which real cells never show.
    """

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
                nn.Upsample(scale_factor=2.0, mode="nearest"),
                nn.Conv2d(c, nxt, 3, padding=1, bias=False),
                nn.BatchNorm2d(nxt),
                nn.ReLU(),
            ]
            c = nxt
        layers += [nn.Conv2d(c, channels + 1, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(label)], dim=1)).view(-1, self.top, 4, 4)
        return self.net(h)


def minibatch_stddev(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """h with one more channel: the feature spread across a group of samples (Karras et al.).

    A collapsed generator gives a batch with almost no spread, which real batches never have,
    so the discriminator can see collapse and the generator is pushed towards variety.
    """
    n, c, hh, ww = h.shape
    g = group if n % group == 0 else 1
    y = h.view(g, -1, c, hh, ww) if g > 1 else h[None]
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # per group member
    std = std.repeat(g) if g > 1 else std.expand(n)
    return torch.cat([h, std.view(n, 1, 1, 1).expand(n, 1, hh, ww)], dim=1)


class ConvDiscriminator(nn.Module):
    """Spectral-normalised strided convolutions to 4×4, a minibatch-spread channel, then a
    projection onto the class embedding (Miyato & Koyama's projection discriminator)."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = channels + 1, size
        nxt = width
        while s > 4:
            layers += [spectral_norm(nn.Conv2d(c, nxt, 4, 2, 1)), nn.LeakyReLU(0.2)]
            c, s, nxt = nxt, s // 2, min(nxt * 2, 8 * width)
        self.net = nn.Sequential(*layers)
        self.final = nn.Sequential(
            spectral_norm(nn.Conv2d(c + 1, c, 3, padding=1)), nn.LeakyReLU(0.2)
        )
        self.head = spectral_norm(nn.Linear(c, 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, c))

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.final(minibatch_stddev(self.net(x))).sum(dim=(2, 3))
        return self.head(h).squeeze(1) + (self.embed(label) * h).sum(1)


def augment(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """A random quarter turn, flip and small shift of a whole batch (differentiable).

    Applied to real and generated crops alike before the discriminator (DiffAugment, Zhao et
    al. 2020): with a few hundred cells the discriminator otherwise memorises the real ones and
    its verdict stops teaching the generator anything.
    """
    k, flip = (int(v) for v in torch.randint(0, 4, (2,), generator=gen))
    x = torch.rot90(x, k, (2, 3))
    if flip % 2:
        x = x.flip(-1)
    shift = x.shape[-1] // 16
    if shift:
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
        x = torch.roll(x, (dy, dx), (2, 3))
    return x


ARCHS = {"mlp": (MLPGenerator, MLPDiscriminator), "conv": (ConvGenerator, ConvDiscriminator)}


@dataclass
class CganConfig:
    """Seed 000's settings by default (200 epochs, batch 64, Adam 2e-4).

    `arch="mlp"` trains as the paper did (binary cross entropy, Adam β₁ 0.5); `arch="conv"`
    uses what keeps a small-data GAN from collapsing: the hinge loss, the same augmentation of
    real and generated crops before the discriminator, a minibatch-spread channel, Adam
    (0, 0.9) with a faster discriminator (two time-scale rule), and an EMA of the generator.
    """

    arch: str = "conv"
    epochs: int = 200
    batch: int = 64
    lr: float = 2e-4
    width: int | None = None
    device: str = "auto"
    seed: int = 0
    max_steps: int | None = None
    max_minutes: float | None = None  # None: CPU_MINUTES on a CPU, none on a GPU; 0: none
    ema: float = 0.999


@dataclass
class CganResult:
    generator: nn.Module
    history: list[dict[str, float]]
    seconds: float
    steps: int
    device: str
    precision: str
    config: dict[str, object] = field(default_factory=dict)
    stopped: str = "steps"


def _weighted_bce(logits: torch.Tensor, target: float, weight: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(
        logits.float(), torch.full_like(logits.float(), target), weight=weight
    )


def _d_loss(arch: str, real: torch.Tensor, fake: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if arch == "mlp":
        return _weighted_bce(real, 1.0, w) + _weighted_bce(fake, 0.0, w)
    return (w * (F.relu(1 - real.float()) + F.relu(1 + fake.float()))).mean()


def _g_loss(arch: str, fake: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if arch == "mlp":
        return _weighted_bce(fake, 1.0, w)
    return -(w * fake.float()).mean()


def train_cgan(
    data: CropSet, config: CganConfig, run_dir: Path | None = None, progress: bool = True
) -> CganResult:
    """Adversarial training on image+mask crops; returns the generator (eval, CPU; the EMA
    weights for the conv arch)."""
    rt, amp, precision = runtime(config.device, config.seed)
    n_classes, channels, size = len(data.classes), data.images.shape[1], data.images.shape[-1]
    g_cls, d_cls = ARCHS[config.arch]
    kw = {} if config.width is None else {"width": config.width}
    gen = g_cls(n_classes, channels, size, **kw).to(rt.device)
    disc = d_cls(n_classes, channels, size, **kw).to(rt.device)
    g_net, d_net = wrap(gen, rt), wrap(disc, rt)
    conv = config.arch == "conv"
    betas = (0.0, 0.9) if conv else (0.5, 0.999)
    opt_g = torch.optim.Adam(
        g_net.parameters(), lr=config.lr / 2 if conv else config.lr, betas=betas
    )
    opt_d = torch.optim.Adam(
        d_net.parameters(), lr=config.lr * 2 if conv else config.lr, betas=betas
    )
    scaler_g = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    scaler_d = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    ema = Ema(gen, config.ema) if conv else None
    x_all = torch.from_numpy(np.concatenate([data.images, data.masks * 2 - 1], axis=1))
    y_all = torch.from_numpy(data.labels)
    w_all = torch.from_numpy(data.class_weights()[data.labels])
    steps = config.max_steps or config.epochs * max(1, -(-len(data) // config.batch))
    budget = Budget(config.max_minutes, rt)
    aug = torch.Generator().manual_seed(config.seed + rt.rank)
    history: list[dict[str, float]] = []
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
            real_in, fake_in = real, fake.detach()
            if conv:
                real_in, fake_in = augment(real_in, aug), augment(fake_in, aug)
            d_loss = _d_loss(config.arch, d_net(real_in, y), d_net(fake_in, y), w)
        optimiser_step(opt_d, scaler_d, d_loss)
        with autocast(rt, amp):
            g_loss = _g_loss(config.arch, d_net(augment(fake, aug) if conv else fake, y), w)
        optimiser_step(opt_g, scaler_g, g_loss)
        if ema is not None:
            ema.update(gen, step)
        row = {
            "step": step,
            "d_loss": float(d_loss.item()),
            "g_loss": float(g_loss.item()),
            "seconds": time.monotonic() - budget.start,
        }
        history.append(row)
        bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
        if budget.expired():
            break
    bar.close()
    out = (ema.model if ema is not None else gen).cpu().eval()
    return CganResult(
        generator=out,
        history=history,
        seconds=time.monotonic() - budget.start,
        steps=len(history),
        device=str(rt.device),
        precision=precision,
        config={**config.__dict__, "latent_dim": LATENT_DIM},
        stopped=budget.stopped,
    )


@torch.no_grad()
def sample_cgan(gen: nn.Module, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """N×(C+1)×S×S samples (image channels then mask) for the class indices `labels`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(labels), LATENT_DIM, generator=g)
    return gen.eval()(z, torch.as_tensor(labels, dtype=torch.int64)).numpy()
