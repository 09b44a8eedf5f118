"""A small class- and mask-conditional diffusion model for single cells, sampled with DDIM.

Seed 000 trains a (latent-free) diffusion model on 64×64 cell crops; its cells fooled users about
half of the time. Here the denoiser is a small U-Net (GroupNorm residual blocks, sinusoidal
timestep embedding plus a class embedding) whose input also carries the cell's mask, so a sample
follows a given outline and its instance truth is exact. Training is the DDPM objective (predict
the noise, cosine schedule of Nichol & Dhariwal); the class is dropped to a null class 10 % of the
time so sampling can use classifier-free guidance. Sampling runs DDIM in 20–25 steps.

The denoiser is exported alone with (x, t, class, mask) as inputs: the loop around it lives in
numpy on the tablet (`appliance.generators.ddim`), and `ddim_sample_torch` below is its exact
PyTorch twin.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from appliance.contract import Schedule
from export.generators.common import Budget, Ema, autocast, batches, runtime, wrap
from export.generators.data import CropSet
from export.train import optimiser_step

TRAIN_STEPS = 1000
COND_DROP = 0.1
PREDICTIONS = ("v", "eps")
MIN_SNR_GAMMA = 5.0


def cosine_alphas_cumprod(steps: int = TRAIN_STEPS, s: float = 0.008) -> np.ndarray:
    """ᾱ(t) for t = 0..steps-1 (cosine schedule; β clipped at 0.999 as in the paper)."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.clip(1 - f[1:] / f[:-1], 0, 0.999)
    return np.cumprod(1 - betas)


def ddim_schedule(sample_steps: int, train_steps: int = TRAIN_STEPS, eta: float = 0.0) -> Schedule:
    """`sample_steps` evenly spaced timesteps from T-1 down to 0 with their ᾱ."""
    abar = cosine_alphas_cumprod(train_steps)
    ts = np.unique(np.linspace(0, train_steps - 1, sample_steps).round().astype(int))[::-1]
    return Schedule(
        kind="cosine-ddim",
        train_steps=train_steps,
        timesteps=tuple(int(t) for t in ts),
        alphas_cumprod=tuple(float(abar[t]) for t in ts),
        eta=eta,
    )


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of a float timestep (N,) → N×dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs.to(t.device)[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Denoiser(nn.Module):
    """U-Net on (x_t, mask) planes, conditioning (t, class) added per block; returns ε.

    `mults` sets the channels per level (width × mult); spatial sizes must be multiples of
    2^(levels-1). The class embedding has one extra row, the null class, for guidance.

    With `prediction="v"` the network learns v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho), whose scale
    stays the same at every noise level, and `forward` turns it into ε = √ᾱ·v + √(1−ᾱ)·x_t
    with the schedule held in the model: the exported graph and the tablet's DDIM loop keep
    speaking ε whichever target was trained.
    """

    abar: torch.Tensor

    def __init__(
        self,
        channels: int,
        n_classes: int,
        width: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        prediction: str = "v",
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.config = {"channels": channels, "n_classes": n_classes, "width": width}
        self.config["mults"] = list(mults)  # type: ignore[assignment]
        self.config["prediction"] = prediction  # type: ignore[assignment]
        self.prediction = prediction
        abar = torch.from_numpy(cosine_alphas_cumprod(TRAIN_STEPS)).float()
        self.register_buffer("abar", abar, persistent=False)
        emb = 4 * width
        self.width = width
        self.t_mlp = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.c_embed = nn.Embedding(n_classes + 1, emb)
        chans = [width * m for m in mults]
        self.inp = nn.Conv2d(channels + 1, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        c = chans[0]
        for i, ch in enumerate(chans):
            self.down.append(ResBlock(c, ch, emb))
            c = ch
            if i < len(chans) - 1:
                self.pools.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c, c, emb)
        self.up = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(c + ch, ch, emb))
            c = ch
            if i > 0:
                self.ups.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = nn.Conv2d(c, channels, 3, padding=1)

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.config["mults"]) - 1)  # type: ignore[arg-type]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        label: torch.Tensor,
        mask: torch.Tensor,
        raw: bool = False,
    ) -> torch.Tensor:
        """ε; with `raw` the network's own target (what training compares, through DDP)."""
        out = self.raw(x, t, label, mask)
        if raw or self.prediction == "eps":
            return out
        a = self.abar[t.round().long().clamp(0, TRAIN_STEPS - 1)][:, None, None, None]
        return a.sqrt() * out + (1 - a).sqrt() * x

    def raw(
        self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The network's own output: ε or v, as `prediction` says."""
        e = self.t_mlp(timestep_embedding(t, self.width)) + self.c_embed(label)
        h = self.inp(torch.cat([x, mask], dim=1))
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.pools):
                h = self.pools[i](h)
        h = self.mid(h, e)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), e)
            if i < len(self.ups):
                h = self.ups[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


@dataclass
class DiffusionConfig:
    """Denoiser and training settings. `min_snr` weighs each noise level's loss by
    min(SNR, γ)/(SNR + 1) for v (Hang et al., 2023): the many nearly clean, easy levels no
    longer dominate, which speeds up learning the cell's shape and texture several-fold."""

    width: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    steps: int = 20000
    batch: int = 64
    lr: float = 2e-4
    warmup: int = 200  # steps of linearly rising learning rate (Adam's early steps are wild)
    ema: float = 0.999
    prediction: str = "v"
    min_snr: float | None = MIN_SNR_GAMMA
    sample_steps: int = 20
    eta: float = 0.0
    guidance: float = 2.0
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None  # None: CPU_MINUTES on a CPU, none on a GPU; 0: none


@dataclass
class DiffusionResult:
    model: Denoiser  # the EMA weights, eval mode, on the CPU
    schedule: Schedule
    history: list[dict[str, float]]
    seconds: float
    device: str
    precision: str
    config: dict[str, object] = field(default_factory=dict)
    stopped: str = "steps"


def _loss(
    pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    a: torch.Tensor,
    config: DiffusionConfig,
) -> torch.Tensor:
    """Per-sample MSE to the trained target (ε or v), min-SNR weighted when asked."""
    target = noise if config.prediction == "eps" else a.sqrt() * noise - (1 - a).sqrt() * x0
    per = ((pred.float() - target) ** 2).mean(dim=(1, 2, 3))
    if config.min_snr is None:
        return per.mean()
    snr = (a / (1 - a)).flatten()
    clipped = snr.clamp(max=config.min_snr)
    weight = clipped / (snr + 1) if config.prediction == "v" else clipped / snr
    return (weight * per).mean()


def train_diffusion(
    data: CropSet, config: DiffusionConfig, run_dir: Path | None = None, progress: bool = True
) -> DiffusionResult:
    """DDPM training (v or ε target, min-SNR weights) with class dropout; returns the EMA
    denoiser."""
    rt, amp, precision = runtime(config.device, config.seed)
    model = Denoiser(
        data.images.shape[1], len(data.classes), config.width, config.mults, config.prediction
    )
    model = model.to(rt.device)
    ema = Ema(model, config.ema)
    net = wrap(model, rt)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    abar = torch.from_numpy(cosine_alphas_cumprod(TRAIN_STEPS)).float().to(rt.device)
    x_all = torch.from_numpy(data.images)
    m_all = torch.from_numpy(data.masks)
    y_all = torch.from_numpy(data.labels)
    null = len(data.classes)
    budget = Budget(config.max_minutes, rt)
    history: list[dict[str, float]] = []
    bar = tqdm(
        batches(len(data), config.batch, config.steps, rt, config.seed),
        total=config.steps,
        desc="diffusion",
        unit="step",
        disable=not (progress and rt.main),
        dynamic_ncols=True,
    )
    for step, idx in enumerate(bar, 1):
        for group in opt.param_groups:
            group["lr"] = config.lr * min(1.0, step / max(config.warmup, 1))
        x0, mask = x_all[idx].to(rt.device), m_all[idx].to(rt.device)
        y = y_all[idx].to(rt.device)
        if np.random.random() < 0.5:  # flips and 90° turns keep a cell a cell
            x0, mask = x0.flip(-1), mask.flip(-1)
        k = int(np.random.randint(4))
        x0, mask = torch.rot90(x0, k, (2, 3)), torch.rot90(mask, k, (2, 3))
        y = torch.where(torch.rand(len(y), device=rt.device) < COND_DROP, null, y)
        t = torch.randint(0, TRAIN_STEPS, (len(y),), device=rt.device)
        noise = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with autocast(rt, amp):
            pred = net(xt, t.float(), y, mask, raw=True)
        loss = _loss(pred, x0, noise, a, config)
        optimiser_step(opt, scaler, loss)
        ema.update(model, step)
        row = {"step": step, "loss": float(loss.item()), "seconds": time.monotonic() - budget.start}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if budget.expired():
            break
    bar.close()
    out = ema.model.cpu().eval()
    assert isinstance(out, Denoiser)
    return DiffusionResult(
        model=out,
        schedule=ddim_schedule(config.sample_steps, eta=config.eta),
        history=history,
        seconds=time.monotonic() - budget.start,
        device=str(rt.device),
        precision=precision,
        config={**config.__dict__, "mults": list(config.mults), "train_steps": TRAIN_STEPS},
        stopped=budget.stopped,
    )


@torch.no_grad()
def ddim_sample_torch(
    model: nn.Module,
    schedule: Schedule,
    noise: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    guidance: float = 1.0,
    null_class: int = 0,
) -> torch.Tensor:
    """The DDIM loop in PyTorch; float32 arithmetic in the numpy loop's order (eta = 0)."""
    model.eval()
    x = noise.float()
    n = x.shape[0]
    abar = torch.tensor(schedule.alphas_cumprod, dtype=torch.float32)
    for i, t in enumerate(schedule.timesteps):
        a = abar[i]
        a_prev = abar[i + 1] if i + 1 < len(abar) else torch.tensor(1.0)
        if guidance == 1.0:
            eps = model(x, torch.full((n,), float(t)), labels, mask)
        else:
            both = model(
                torch.cat([x, x]),
                torch.full((2 * n,), float(t)),
                torch.cat([labels, torch.full((n,), null_class, dtype=torch.int64)]),
                torch.cat([mask, mask]),
            )
            eps = both[n:] + torch.tensor(guidance, dtype=torch.float32) * (both[:n] - both[n:])
        x0 = ((x - torch.sqrt(1 - a) * eps) / torch.sqrt(a)).clamp(-1.0, 1.0)
        eps = (x - torch.sqrt(a) * x0) / torch.sqrt(1 - a)
        x = torch.sqrt(a_prev) * x0 + torch.sqrt(torch.clamp(1 - a_prev, min=0)) * eps
    return x
