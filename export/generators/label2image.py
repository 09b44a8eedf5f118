"""MIPR's label-to-image generator G (seed 001, §2.3–2.4).

G is an image-to-image network: a convolutional encoder reads a source image, and a decoder of
SPADE+ blocks renders the picture the label map asks for. A SPADE+ block is SPADE (the label map
predicts a per-pixel scale γ and shift β for the normalised activations) plus a detail path α
computed from the Sobel gradients of the source image, so textures survive that a label alone
cannot describe. The discriminator is GauGAN's: PatchGANs at two scales with spectral
normalisation, judging (image, label) pairs with the hinge loss; the generator adds feature
matching and an L1 term towards the real image.

Training feeds the encoder a patch-shuffled copy of the real image (K×K tiles permuted, K drawn
from 1, 2, 4) while the label and the target stay in place: G must rearrange the source's pixels
to fit the label ("pixel rearrangement"), which is what it does later for unlabeled images and
deformed pseudo-labels. Fully convolutional: any size that is a multiple of 8.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm
from tqdm import tqdm

from export.generators.common import Budget, Ema, autocast, runtime, wrap
from export.generators.data import Scene, one_hot
from export.train import optimiser_step

MULTIPLE = 8


class Sobel(nn.Module):
    """|∇| of the channel mean, by fixed 3×3 Sobel kernels (x and y planes)."""

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
        self.register_buffer("kernel", torch.stack([kx, kx.t()])[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = F.pad(x.mean(dim=1, keepdim=True), (1, 1, 1, 1), mode="replicate")
        return F.conv2d(grey, self.kernel)


class SpadePlus(nn.Module):
    """Instance-normalised x, modulated by the label (γ, β) plus the Sobel detail path α."""

    def __init__(self, channels: int, label_nc: int, hidden: int = 32) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)
        self.alpha = nn.Sequential(
            nn.Conv2d(2, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor, label: torch.Tensor, sobel: torch.Tensor) -> torch.Tensor:
        h = self.shared(label)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h) + self.alpha(sobel)


class SpadeResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, label_nc: int) -> None:
        super().__init__()
        mid = min(cin, cout)
        self.n1, self.c1 = SpadePlus(cin, label_nc), nn.Conv2d(cin, mid, 3, padding=1)
        self.n2, self.c2 = SpadePlus(mid, label_nc), nn.Conv2d(mid, cout, 3, padding=1)
        self.learned = cin != cout
        if self.learned:
            self.ns, self.cs = SpadePlus(cin, label_nc), nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor, label: torch.Tensor, sobel: torch.Tensor) -> torch.Tensor:
        skip = self.cs(self.ns(x, label, sobel)) if self.learned else x
        h = self.c1(F.leaky_relu(self.n1(x, label, sobel), 0.2))
        h = self.c2(F.leaky_relu(self.n2(h, label, sobel), 0.2))
        return skip + h


class LabelToImage(nn.Module):
    """G(source image, one-hot label) → image in [-1, 1] (seed 001, Fig. 2)."""

    def __init__(self, channels: int, label_nc: int, width: int = 32) -> None:
        super().__init__()
        self.config = {"channels": channels, "label_nc": label_nc, "width": width}
        w = width
        self.sobel = Sobel()
        self.enc = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.InstanceNorm2d(2 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1),
            nn.InstanceNorm2d(4 * w),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 4 * w, 4, 2, 1),
            nn.InstanceNorm2d(4 * w),
            nn.LeakyReLU(0.2),
        )
        self.dec = nn.ModuleList(
            [
                SpadeResBlock(4 * w, 4 * w, label_nc),  # 1/8
                SpadeResBlock(4 * w, 2 * w, label_nc),  # 1/4
                SpadeResBlock(2 * w, w, label_nc),  # 1/2
                SpadeResBlock(w, w, label_nc),  # 1/1
            ]
        )
        self.out = nn.Conv2d(w, channels, 3, padding=1)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        sobel = self.sobel(image)
        h = self.enc(image)
        for i, block in enumerate(self.dec):
            k = 2 ** (len(self.dec) - 1 - i)
            lab = F.avg_pool2d(label, k) if k > 1 else label
            sob = F.avg_pool2d(sobel, k) if k > 1 else sobel
            h = block(h, lab, sob)
            if k > 1:  # bilinear: nearest-neighbour doubling left a visible 2×2 grid
                h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        return torch.tanh(self.out(F.leaky_relu(h, 0.2)))


class PatchD(nn.Module):
    """One spectral-normalised PatchGAN; returns its intermediate features and logits."""

    def __init__(self, cin: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.layers = nn.ModuleList(
            [
                nn.Sequential(spectral_norm(nn.Conv2d(cin, w, 4, 2, 1)), nn.LeakyReLU(0.2)),
                nn.Sequential(spectral_norm(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2)),
                nn.Sequential(spectral_norm(nn.Conv2d(2 * w, 4 * w, 3, 1, 1)), nn.LeakyReLU(0.2)),
                spectral_norm(nn.Conv2d(4 * w, 1, 3, 1, 1)),
            ]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleD(nn.Module):
    """GauGAN's discriminator: the same PatchGAN design at full and half resolution."""

    def __init__(self, channels: int, label_nc: int, width: int = 32, scales: int = 2) -> None:
        super().__init__()
        self.ds = nn.ModuleList([PatchD(channels + label_nc, width) for _ in range(scales)])

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([image, label], dim=1)
        out = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            out.append(d(x))
        return out


def patch_shuffle(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """C×H×W with its k×k tiles permuted at random (seed 001, Fig. 3); k = 1 is the identity."""
    if k == 1:
        return x
    _, h, w = x.shape
    th, tw = h // k, w // k
    tiles = [x[:, i * th : (i + 1) * th, j * tw : (j + 1) * tw] for i in range(k) for j in range(k)]
    order = rng.permutation(len(tiles))
    out = x.copy()
    for n, src in enumerate(order):
        i, j = divmod(n, k)
        out[:, i * th : (i + 1) * th, j * tw : (j + 1) * tw] = tiles[src]
    return out


def random_pairs(
    scenes: list[Scene], n: int, size: int, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(patch-shuffled source, one-hot label, real target) crops with flips and rot90."""
    src, lab, tgt = [], [], []
    for _ in range(n):
        s = scenes[int(rng.integers(len(scenes)))]
        h, w = s.target.shape
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        img = s.image[:, top : top + size, left : left + size]
        t = s.target[top : top + size, left : left + size]
        k = int(rng.integers(4))
        img, t = np.rot90(img, k, (1, 2)), np.rot90(t, k)
        if rng.random() < 0.5:
            img, t = img[..., ::-1], t[..., ::-1]
        img = np.ascontiguousarray(img)
        tgt.append(img)
        lab.append(one_hot(np.ascontiguousarray(t), n_classes))
        src.append(patch_shuffle(img, int(rng.choice([1, 2, 4])), rng))
    return np.stack(src), np.stack(lab), np.stack(tgt)


@dataclass
class Label2ImageConfig:
    width: int = 32
    d_width: int = 32
    size: int = 64
    steps: int = 5000
    batch: int = 16
    lr_g: float = 1e-4
    lr_d: float = 4e-4  # SPADE's two time-scale update rule
    # L1 to the real image keeps early training on track, but a heavy weight pulls every
    # texture towards its mean (blur); the discriminator's feature matching carries the rest
    l1: float = 2.0
    feature_matching: float = 10.0
    ema: float = 0.999
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None  # None: CPU_MINUTES on a CPU, none on a GPU; 0: none


@dataclass
class Label2ImageResult:
    generator: LabelToImage  # the EMA weights
    history: list[dict[str, float]]
    seconds: float
    device: str
    precision: str
    config: dict[str, object] = field(default_factory=dict)
    stopped: str = "steps"


def train_label2image(
    scenes: list[Scene],
    n_classes: int,
    config: Label2ImageConfig,
    run_dir: Path | None = None,
    progress: bool = True,
) -> Label2ImageResult:
    """Hinge GAN + feature matching + L1 on random crops of the labelled scenes."""
    from appliance.errors import ApplianceError

    if not scenes:
        raise ApplianceError("label-to-image training needs labelled images")
    size = min(config.size, *(min(s.target.shape) for s in scenes))
    size -= size % MULTIPLE
    if size < MULTIPLE:
        raise ApplianceError(f"images are smaller than {MULTIPLE} pixels")
    rt, amp, precision = runtime(config.device, config.seed)
    channels = scenes[0].image.shape[0]
    gen = LabelToImage(channels, n_classes, config.width).to(rt.device)
    disc = MultiScaleD(channels, n_classes, config.d_width).to(rt.device)
    g_net, d_net = wrap(gen, rt), wrap(disc, rt)
    opt_g = torch.optim.Adam(g_net.parameters(), lr=config.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=config.lr_d, betas=(0.0, 0.9))
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    ema = Ema(gen, config.ema)
    rng = np.random.default_rng([config.seed, rt.rank])
    per_rank = max(1, config.batch // rt.world)
    budget = Budget(config.max_minutes, rt)
    history: list[dict[str, float]] = []
    bar = tqdm(
        range(1, config.steps + 1),
        desc="label2image",
        unit="step",
        disable=not (progress and rt.main),
        dynamic_ncols=True,
    )
    for step in bar:
        src, lab, tgt = (
            torch.from_numpy(a).to(rt.device)
            for a in random_pairs(scenes, per_rank, size, n_classes, rng)
        )
        with autocast(rt, amp):
            fake = g_net(src, lab)
            d_real, d_fake = d_net(tgt, lab), d_net(fake.detach(), lab)
            d_loss = torch.stack(
                [
                    F.relu(1 - r[-1].float()).mean() + F.relu(1 + f[-1].float()).mean()
                    for r, f in zip(d_real, d_fake, strict=True)
                ]
            ).sum()
        optimiser_step(opt_d, scaler, d_loss, update=False)  # one update, after the generator
        with autocast(rt, amp):
            d_fake = d_net(fake, lab)
            adv = torch.stack([-f[-1].float().mean() for f in d_fake]).sum()
            fm = torch.stack(
                [
                    F.l1_loss(ff.float(), rf.detach().float())
                    for r, f in zip(d_real, d_fake, strict=True)
                    for rf, ff in zip(r[:-1], f[:-1], strict=True)
                ]
            ).sum()
            l1 = F.l1_loss(fake.float(), tgt)
            g_loss = adv + config.feature_matching * fm + config.l1 * l1
        optimiser_step(opt_g, scaler, g_loss)
        ema.update(gen, step)
        row = {
            "step": step,
            "d_loss": float(d_loss.item()),
            "g_adv": float(adv.item()),
            "l1": float(l1.item()),
            "seconds": time.monotonic() - budget.start,
        }
        history.append(row)
        bar.set_postfix(d=f"{row['d_loss']:.3f}", l1=f"{row['l1']:.3f}")
        if budget.expired():
            break
    bar.close()
    out = ema.model.cpu().eval()
    assert isinstance(out, LabelToImage)
    return Label2ImageResult(
        generator=out,
        history=history,
        seconds=time.monotonic() - budget.start,
        device=str(rt.device),
        precision=precision,
        config={**config.__dict__, "size": size, "label_nc": n_classes},
        stopped=budget.stopped,
    )


@torch.no_grad()
def render(gen: nn.Module, source: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """One image (C×H×W in [-1, 1]) with the layout of class map `target` from `source`'s pixels.

    H and W are padded (reflect) to a multiple of 8 and cropped back.
    """
    h, w = target.shape
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    src = np.pad(source, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    lab = one_hot(np.pad(target, ((0, ph), (0, pw)), mode="reflect"), n_classes)
    out = gen.eval()(torch.from_numpy(src[None]).float(), torch.from_numpy(lab[None]))
    return out[0, :, :h, :w].numpy()
