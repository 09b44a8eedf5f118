"""The training loop shared by the segmentation and upgrade models.

One function, `train_model`, runs on whatever the machine has: CUDA with mixed precision
(bf16 where supported, else fp16 with a gradient scaler), channels_last and pinned-memory
loaders; several GPUs when started by `torchrun` (DistributedDataParallel, one process per GPU,
rank 0 validates and decides when to stop); the CPU otherwise. Defaults suit both: on a GPU the
batch grows and loaders use worker processes, on a CPU the batch stays small and a time budget
(`max_minutes`) caps the run. Early stopping keeps the weights with the best validation Dice.

Every run writes `metrics.jsonl` (one line per epoch) and `curves.png` into its run folder.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from matplotlib.figure import Figure
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from appliance.assist.instances import INSTANCE_KINDS, decode, default_decoding
from appliance.errors import ApplianceError
from appliance.metrics import InstanceCounts, pooled_dice
from appliance.perturb import PerturbSpec
from export import outputs
from export.data import EpochSampler, Sample, SegDataset, pad_to_multiple
from export.losses import dice_votes_loss
from export.train.runtime import (
    Runtime,
    optimiser_step,
    precision_for,
    seed_everything,
    select_runtime,
)
from export.unet import DEFAULT_DEPTH, DEFAULT_WIDTH, UNet

__all__ = [
    "FELZENSZWALB_PERTURB",
    "LR_FLOOR",
    "UPGRADE_PERTURB",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "learning_rate",
    "plot_curves",
    "predict",
    "resolve_machine",
    "train_model",
]

UPGRADE_PERTURB = PerturbSpec(omission=0.7, inclusion=0.7, bias=6)
# Without a second object kind, inclusion draws Felzenszwalb segments, most of them background
# texture: seed 003's case study (3.3.4) then uses 50 % omission, 10 % inclusion, bias 6 and 10 %
# salt-and-pepper.
FELZENSZWALB_PERTURB = PerturbSpec(omission=0.5, inclusion=0.1, bias=6, salt_pepper=0.1)


@dataclass
class TrainConfig:
    """Hyper-parameters; `None` means "pick for this machine" (see `resolve`)."""

    task: str = "segment"
    n_classes: int = 2
    width: int = DEFAULT_WIDTH
    depth: int = DEFAULT_DEPTH
    epochs: int = 300
    batch: int | None = None
    lr: float = 2e-3
    # "cosine": the rate falls from `lr` to LR_FLOOR of it over `epochs` (settles the weights
    # at the end of a long run instead of leaving them jumping); "constant": `lr` throughout
    lr_schedule: str = "cosine"
    patience: int = 20
    patch: int = 256
    min_epoch_items: int = 64
    device: str = "auto"
    seed: int = 0
    max_minutes: float | None = None  # None: 9 on a CPU, none on a GPU; 0: no time budget
    perturb: PerturbSpec = field(default_factory=lambda: UPGRADE_PERTURB)
    workers: int | None = None
    # "softmax" (connected components on the tablet) or an instance kind; `python -m export
    # train` defaults per task to export.targets.DEFAULT_OUTPUT
    output: str = "softmax"

    @property
    def in_channels_extra(self) -> int:
        """Input channels after the image: coarse mask, plus coarse edges for instance kinds."""
        if self.task != "upgrade":
            return 0
        return 2 if self.output in INSTANCE_KINDS else 1


@dataclass
class TrainResult:
    """The best model (eval mode, on the CPU) and how the run went."""

    model: UNet
    best_val_dice: float
    best_epoch: int
    epochs_run: int
    seconds: float
    images_per_second: float
    device: str
    precision: str
    stopped: str
    history: list[dict[str, float]]
    config: dict[str, object]
    rank: int = 0  # under torchrun only rank 0 validates, so only its history is filled


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset: SegDataset,
    device: torch.device,
    amp: torch.dtype | None = None,
    n_classes: int | None = None,
) -> tuple[float, float | None]:
    """Validation Dice (pooled, averaged over the foreground classes) and, for an instance
    output kind, instance F1 at IoU 0.5 of the tablet's decoding (None for softmax).

    `n_classes` defaults to the model's output channels (right for the softmax kind only).
    """
    model.eval()
    truths, preds = [], []
    counts = InstanceCounts() if dataset.output in INSTANCE_KINDS else None
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["x"][None].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(x).float()
        h, w = dataset.samples[i].target.shape
        if n_classes is None:
            n_classes = logits.shape[1]
        preds.append(outputs.semantic(logits, dataset.output, n_classes)[0, :h, :w].cpu().numpy())
        truths.append(item["y"][:h, :w].numpy())
        if counts is not None:
            raw = logits[0, :, :h, :w].cpu().numpy()
            inst, _ = decode(raw, dataset.output, n_classes, default_decoding(dataset.output))
            counts.add(dataset.samples[i].instances, inst)
    assert n_classes is not None
    scores = [
        pooled_dice([t == c for t in truths], [p == c for p in preds]) for c in range(1, n_classes)
    ]
    return float(np.mean(scores)), (None if counts is None else counts.f1)


def resolve_machine(config: TrainConfig, rt: Runtime) -> tuple[int, int, float | None]:
    """Batch size, loader workers and time budget for this machine."""
    cuda = rt.device.type == "cuda"
    batch = config.batch or (16 if cuda else 4)
    workers = (
        config.workers
        if config.workers is not None
        else (min(8, os.cpu_count() or 1) if cuda else 0)
    )
    budget = config.max_minutes if config.max_minutes is not None else (None if cuda else 9.0)
    return batch, workers, (budget if budget and budget > 0 else None)


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss and validation Dice per epoch, as a PNG."""
    epochs = [h["epoch"] for h in history]
    # the object API draws without pyplot's global state or a GUI backend
    fig = Figure(figsize=(6, 3.5))
    ax1 = fig.subplots()
    ax1.plot(epochs, [h["loss"] for h in history], color="tab:blue", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_dice"] for h in history], color="tab:red", label="validation Dice")
    if all("val_f1" in h for h in history):
        f1 = [h["val_f1"] for h in history]
        ax2.plot(epochs, f1, color="tab:green", label="validation instance F1")
    ax2.set_ylabel("validation Dice (red), instance F1 (green)", color="tab:red")
    ax2.set_ylim(0, 1)
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


@dataclass
class _Fit:
    """Everything one training run holds between epochs (built by `_setup`)."""

    rt: Runtime
    config: TrainConfig
    batch: int
    budget: float | None
    amp: torch.dtype | None
    precision: str
    train_ds: SegDataset
    val_ds: SegDataset
    sampler: EpochSampler
    loader: DataLoader
    model: UNet
    net: torch.nn.Module
    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    start: float = field(default_factory=time.monotonic)
    images: int = 0


def _setup(train: list[Sample], val: list[Sample], config: TrainConfig) -> _Fit:
    """Datasets, the per-rank loader, the model (wrapped for DDP) and its optimiser."""
    rt = select_runtime(config.device)
    seed_everything(config.seed)
    batch, workers, budget = resolve_machine(config, rt)
    amp, precision = precision_for(rt.device)
    in_ch = train[0].image.shape[0] + config.in_channels_extra
    spec = config.perturb if config.task == "upgrade" else None
    train_ds = SegDataset(
        train,
        config.task,
        spec,
        True,
        config.patch,
        config.seed,
        config.min_epoch_items,
        config.output,
    )
    val_ds = SegDataset(
        val, config.task, spec, False, config.patch, config.seed, output=config.output
    )
    sampler = EpochSampler(len(train_ds), config.seed, rt.rank, rt.world)
    loader = DataLoader(
        train_ds,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=workers > 0,
        # decided on what this rank sees: a global length would drop every batch of a rank
        # whose share is under one batch
        drop_last=len(sampler) >= 2 * batch,
    )
    n_out = outputs.channels(config.output, config.n_classes)
    model: UNet = UNet(in_ch, n_out, config.width, config.depth)
    if rt.world > 1 and rt.device.type == "cuda":
        # BatchNorm statistics over the global batch; SyncBatchNorm runs on GPUs only, so CPU
        # (gloo) runs keep per-rank statistics
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Module.to takes memory_format at run time; torch's overloads do not declare it
    model = model.to(rt.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    net: torch.nn.Module = model
    if rt.world > 1:
        ids = [rt.local_rank] if rt.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    return _Fit(
        rt,
        config,
        batch,
        budget,
        amp,
        precision,
        train_ds,
        val_ds,
        sampler,
        loader,
        model,
        net,
        optimiser,
        scaler,
    )


LR_FLOOR = 0.05


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Adam's rate in `epoch` (1-based) under `config.lr_schedule`.

    >>> c = TrainConfig(lr=1e-3, epochs=101)
    >>> learning_rate(c, 1), round(learning_rate(c, 51), 6), round(learning_rate(c, 101), 6)
    (0.001, 0.000525, 5e-05)
    """
    if config.lr_schedule == "constant" or config.epochs <= 1:
        return config.lr
    progress = (epoch - 1) / (config.epochs - 1)
    return config.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def _out_of_time(fit: _Fit) -> bool:
    return fit.budget is not None and time.monotonic() - fit.start >= fit.budget * 60


def _fit_epoch(fit: _Fit, epoch: int) -> tuple[list[float], list[int]]:
    """One pass over this rank's share of the epoch; returns the losses and the item indices."""
    fit.sampler.set_epoch(epoch)
    for group in fit.optimiser.param_groups:
        group["lr"] = learning_rate(fit.config, epoch)
    fit.train_ds.set_epoch(epoch)
    fit.net.train()
    rt, losses, seen = fit.rt, [], []
    # VotesLoss weighs a class map's cross-entropy; the instance kinds' targets have no votes
    use_votes = fit.train_ds.has_votes and fit.config.output == "softmax"
    for item in fit.loader:
        x = item["x"].to(rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = item["y"].to(rt.device, non_blocking=True)
        with torch.autocast(rt.device.type, dtype=fit.amp, enabled=fit.amp is not None):
            logits = fit.net(x)
        if use_votes:
            weights = item["weights"].to(rt.device, non_blocking=True)
            has_votes = item["has_votes"].to(rt.device, non_blocking=True)
            loss = dice_votes_loss(logits, y, weights, has_votes)
        else:
            aux = item["aux"].to(rt.device, non_blocking=True)
            loss = outputs.loss(logits, y, aux, fit.config.output, fit.config.n_classes)
        optimiser_step(fit.optimiser, fit.scaler, loss)
        losses.append(loss.item())
        seen += item["index"].tolist()
        fit.images += x.shape[0] * rt.world
        # a single process may stop mid-epoch; DDP ranks stop together at the epoch's end
        if rt.world == 1 and _out_of_time(fit):
            break
    return losses, seen


@dataclass
class _Best:
    """The checkpoint step's state: the best validation score so far, its Dice and weights."""

    score: float = -1.0
    dice: float = -1.0
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None


def _checkpoint(fit: _Fit, best: _Best, epoch: int, val_dice: float, val_f1: float | None) -> None:
    """Keep the best weights (on the CPU, so GPU memory stays free): best Dice for softmax,
    best mean of Dice and instance F1 for the instance kinds (cells separated and covered)."""
    score = val_dice if val_f1 is None else 0.5 * (val_dice + val_f1)
    if score > best.score:
        best.score, best.dice, best.epoch = score, val_dice, epoch
        best.state = {k: v.detach().cpu().clone() for k, v in fit.model.state_dict().items()}


def train_model(
    train: list[Sample],
    val: list[Sample],
    config: TrainConfig,
    run_dir: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a U-Net for `config.task` on `train`, stop early on `val` Dice, return the best.

    Each epoch is three steps: fit (every rank), validate and checkpoint (rank 0, which then
    tells the other ranks whether to stop).
    """
    if not train or not val:
        raise ApplianceError(
            f"training needs training and validation images, got {len(train)} and {len(val)}"
        )
    fit = _setup(train, val, config)
    rt = fit.rt
    history: list[dict[str, float]] = []
    best = _Best()
    stopped = "epochs"
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        if rt.main:
            (run_dir / "metrics.jsonl").write_text("")
    seen_log: dict[int, list[int]] = {}
    bar = tqdm(
        range(1, config.epochs + 1),
        desc=f"train {config.task}",
        unit="epoch",
        disable=not (progress and rt.main),
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.monotonic()
        losses, seen_log[epoch] = _fit_epoch(fit, epoch)
        speed = len(losses) * fit.batch * rt.world / max(time.monotonic() - t0, 1e-9)
        verdict = torch.zeros(2, device=rt.device)
        if rt.main:
            val_dice, val_f1 = evaluate(fit.model, fit.val_ds, rt.device, fit.amp, config.n_classes)
            _checkpoint(fit, best, epoch, val_dice, val_f1)
            row = {
                "epoch": epoch,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "val_dice": val_dice,
                "images_per_s": speed,
                "seconds": time.monotonic() - fit.start,
            }
            if val_f1 is not None:
                row["val_f1"] = val_f1
            history.append(row)
            if run_dir is not None:
                with open(run_dir / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            bar.set_postfix(
                loss=f"{row['loss']:.3f}", val_dice=f"{val_dice:.3f}", img_s=f"{speed:.1f}"
            )
            if epoch - best.epoch >= config.patience:
                verdict[0], stopped = 1, "early stopping"
            elif _out_of_time(fit):
                verdict[0], stopped = 1, "time budget"
        if rt.world > 1:
            dist.broadcast(verdict, src=0)
        if verdict[0]:
            break
    bar.close()
    seconds = time.monotonic() - fit.start
    if run_dir is not None:
        # which items this rank trained on, per epoch: shows how DDP ranks split the data
        (run_dir / f"items-rank{rt.rank}.json").write_text(json.dumps(seen_log))
    if rt.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    model = fit.model.cpu().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    result = TrainResult(
        model=model,
        best_val_dice=best.dice,
        best_epoch=best.epoch,
        epochs_run=len(history) or config.epochs,
        seconds=seconds,
        images_per_second=fit.images / max(seconds, 1e-9),
        device=str(rt.device),
        precision=fit.precision,
        stopped=stopped,
        history=history,
        config={**asdict(config), "perturb": str(config.perturb), "batch": fit.batch},
        rank=rt.rank,
    )
    if run_dir is not None and rt.main and history:
        plot_curves(
            history, run_dir / "curves.png", f"{config.task}: best val Dice {best.dice:.3f}"
        )
        torch.save({"state": model.state_dict(), "config": model.config}, run_dir / "model.pt")
    return result


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch: int = 4) -> np.ndarray:
    """Class maps (N×H×W) of a softmax model for inputs N×C×H×W (padded to the tile multiple,
    then cropped)."""
    model.eval()
    device = next(model.parameters()).device
    h, w = x.shape[-2:]
    padded = pad_to_multiple(x)
    out = []
    for i in range(0, len(padded), batch):
        logits = model(torch.from_numpy(np.ascontiguousarray(padded[i : i + batch])).to(device))
        out.append(logits.argmax(1)[:, :h, :w].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, h, w), np.int64)
