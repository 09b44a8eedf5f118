"""What every generator trainer shares: device and precision, DDP wrapping, grids and curves.

Device handling is the segmentation trainer's (`export.train`): CUDA with bf16/fp16 autocast when
present, one process per GPU under torchrun (DistributedDataParallel, rank 0 writes the outputs),
the CPU otherwise. Trainers bound their work by steps, never by wall-clock time in tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from export.train.runtime import Runtime, precision_for, seed_everything, select_runtime

__all__ = [
    "Runtime",
    "autocast",
    "batches",
    "plot_losses",
    "runtime",
    "save_grid",
    "wrap",
    "write_history",
]


def runtime(device: str, seed: int) -> tuple[Runtime, torch.dtype | None, str]:
    """The device (joining torchrun's process group if launched so), autocast dtype, name."""
    rt = select_runtime(device)
    seed_everything(seed + rt.rank)
    amp, precision = precision_for(rt.device)
    return rt, amp, precision


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
