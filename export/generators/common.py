"""What every generator trainer shares: device and precision, DDP wrapping, grids and curves.

Device handling is the segmentation trainer's (`export.train`): CUDA with bf16/fp16 autocast when
present, one process per GPU under torchrun (DistributedDataParallel, rank 0 writes the outputs),
the CPU otherwise. Trainers bound their work by steps, never by wall-clock time in tests.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from export.train.runtime import Runtime, precision_for, seed_everything, select_runtime

__all__ = [
    "CPU_MINUTES",
    "Budget",
    "Ema",
    "Runtime",
    "autocast",
    "batches",
    "plot_losses",
    "runtime",
    "save_grid",
    "smoothed",
    "wrap",
    "write_history",
]


def runtime(device: str, seed: int) -> tuple[Runtime, torch.dtype | None, str]:
    """The device (joining torchrun's process group if launched so), autocast dtype, name."""
    rt = select_runtime(device)
    seed_everything(seed + rt.rank)
    amp, precision = precision_for(rt.device)
    return rt, amp, precision


# Without --max-minutes a generator trains at most this long on a CPU (seed 000's goals are set
# for 30 minutes per generator on 2 cores); on a GPU the steps alone bound the run.
CPU_MINUTES = 30.0


class Budget:
    """The wall-clock budget of one training run, checked once per optimiser step.

    `max_minutes` None picks the machine's default (`CPU_MINUTES` on a CPU, none on a GPU); 0
    or less means no budget. Under torchrun every rank must stop at the same step, so rank 0's
    clock decides and the verdict is broadcast (one tiny collective per step).
    """

    def __init__(self, max_minutes: float | None, rt: Runtime) -> None:
        if max_minutes is None:
            max_minutes = None if rt.device.type == "cuda" else CPU_MINUTES
        self.seconds = max_minutes * 60 if max_minutes and max_minutes > 0 else None
        self.rt = rt
        self.start = time.monotonic()
        self.stopped = "steps"

    def expired(self) -> bool:
        """True once the budget is spent (then `stopped` says "time budget")."""
        if self.seconds is None:
            return False
        over = time.monotonic() - self.start >= self.seconds
        if self.rt.world > 1:
            flag = torch.tensor([float(over)], device=self.rt.device)
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        if over:
            self.stopped = "time budget"
        return over


class Ema:
    """An exponential moving average of a model's weights (the copy that samples and ships).

    The decay warms up as (1 + step) / (10 + step) towards `decay`, so early averages are not
    dominated by the random initial weights; buffers (BatchNorm statistics) are copied as-is.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for pe, pm in zip(self.model.parameters(), model.parameters(), strict=True):
            pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        for be, bm in zip(self.model.buffers(), model.buffers(), strict=True):
            be.copy_(bm)


def autocast(rt: Runtime, amp: torch.dtype | None) -> AbstractContextManager[None]:
    return torch.autocast(rt.device.type, dtype=amp, enabled=amp is not None)


def wrap(model: torch.nn.Module, rt: Runtime) -> torch.nn.Module:
    """DistributedDataParallel under torchrun, the model itself otherwise."""
    if rt.world == 1:
        return model
    ids = [rt.local_rank] if rt.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def batches(n: int, batch: int, steps: int, rt: Runtime, seed: int) -> Iterator[np.ndarray]:
    """`steps` index batches drawn without replacement per pass; each rank takes its share."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    per_rank = max(1, batch // rt.world)
    for _ in range(steps):
        if len(order) < per_rank * rt.world:
            order.extend(rng.permutation(n).tolist() * max(1, -(-batch // max(n, 1))))
        take, order = order[: per_rank * rt.world], order[per_rank * rt.world :]
        yield np.asarray(take[rt.rank :: rt.world])


def save_grid(
    rows: Sequence[np.ndarray], path: Path, captions: Sequence[str] | None = None
) -> None:
    """Rows of N×C×H×W tiles in [-1, 1] (up to 8 each) → one PNG, with optional row captions.

    A short row stays short (blank tiles), so each caption keeps its own row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiles = [np.clip((np.asarray(r, np.float32)[:8] + 1) / 2, 0, 1) for r in rows]
    c, h, w = next(t.shape[1:] for t in tiles if len(t))
    cols, nrows = max(len(t) for t in tiles), len(tiles)
    canvas = np.ones((nrows * (h + 2), cols * (w + 2), c), np.float32)
    for r, row in enumerate(tiles):
        for k, tile in enumerate(row):
            top, left = r * (h + 2), k * (w + 2)
            canvas[top : top + h, left : left + w] = tile.transpose(1, 2, 0)
    fig, ax = plt.subplots(figsize=(cols * 1.1 + 2.2, nrows * 1.1 + 0.3))
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    if captions:
        ax.set_yticks([r * (h + 2) + h / 2 for r in range(len(captions))], list(captions))
    else:
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_losses(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Every loss column of `history` against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("step", "seconds")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [h["step"] for h in history]
    for k in keys:
        ax.plot(steps, [h[k] for h in history], label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_history(history: list[dict[str, float]], path: Path) -> None:
    path.write_text("".join(json.dumps(h) + "\n" for h in history))


def smoothed(values: Sequence[float], k: int = 10) -> np.ndarray:
    """Running mean over `k` steps (GAN and diffusion losses are noisy step to step)."""
    v = np.asarray(values, np.float64)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")
