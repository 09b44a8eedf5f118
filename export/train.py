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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from appliance.assist.instances import INSTANCE_KINDS
from appliance.contract import Contract, Value
from appliance.errors import ApplianceError
from appliance.labels import Label
from appliance.perturb import PerturbSpec
from export import outputs
from export.data import EpochSampler, Sample, SegDataset, pad_to_multiple
from export.decoding import tune_decoding
from export.losses import dice_votes_loss
from export.unet import DEFAULT_DEPTH, DEFAULT_WIDTH, UNet

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


@dataclass
class _Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _runtime(requested: str) -> _Runtime:
    """Pick the device; join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ApplianceError(f"--device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ApplianceError("--device cuda asked for, but this machine has no usable CUDA GPU")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        return _Runtime(device, dist.get_rank(), world, local_rank)
    return _Runtime(torch.device("cuda") if use_cuda else torch.device("cpu"))


def _precision(device: torch.device) -> tuple[torch.dtype | None, str]:
    """bf16 autocast where the GPU supports it, else fp16 (with a scaler); fp32 on the CPU."""
    if device.type != "cuda":
        return None, "fp32"
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, "bf16"
    return torch.float16, "fp16"


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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
    from appliance.assist.instances import decode, default_decoding
    from export.instance_metrics import Counts

    model.eval()
    inter = total = None
    counts = Counts() if dataset.output in INSTANCE_KINDS else None
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["x"][None].to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            logits = model(x).float()
        h, w = dataset.samples[i].target.shape
        if n_classes is None:
            n_classes = logits.shape[1]
        pred = outputs.semantic(logits, dataset.output, n_classes)[0, :h, :w].cpu()
        truth = item["y"][:h, :w]
        if inter is None:
            inter = torch.zeros(n_classes, dtype=torch.float64)
            total = torch.zeros(n_classes, dtype=torch.float64)
        for c in range(1, n_classes):
            p, t = pred == c, truth == c
            inter[c] += (p & t).sum()
            total[c] += p.sum() + t.sum()
        if counts is not None:
            raw = logits[0, :, :h, :w].cpu().numpy()
            inst, _ = decode(raw, dataset.output, n_classes, default_decoding(dataset.output))
            counts.add(dataset.samples[i].instances, inst)
    assert inter is not None and total is not None and n_classes is not None
    scores = [(2 * inter[c] / total[c]).item() if total[c] else 1.0 for c in range(1, n_classes)]
    return float(np.mean(scores)), (None if counts is None else counts.f1)


def _resolve(config: TrainConfig, rt: _Runtime) -> tuple[int, int, float | None]:
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
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
    plt.close(fig)


@dataclass
class _Fit:
    """Everything one training run holds between epochs (built by `_setup`)."""

    rt: _Runtime
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
    rt = _runtime(config.device)
    _seed_everything(config.seed)
    batch, workers, budget = _resolve(config, rt)
    amp, precision = _precision(rt.device)
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
    model = model.to(rt.device, memory_format=torch.channels_last)
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


def optimiser_step(
    optimiser: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    update: bool = True,
) -> None:
    """One optimiser step through the AMP grad scaler (a pass-through without fp16).

    `update=False` where one scaler serves two optimisers in one iteration: it must update
    once, after the last of them has stepped.
    """
    optimiser.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    if update:
        scaler.update()


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
    model = fit.model.cpu().to(memory_format=torch.contiguous_format)
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


def _split_off_val(train: list[Sample], seed: int, job: Path) -> tuple[list[Sample], list[Sample]]:
    """80/20 split of the training items when the job has no validation items (seed 003)."""
    if len(train) < 2:
        raise ApplianceError(
            f"{job}: training needs at least 2 labelled images, the job has {len(train)}"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, round(0.2 * len(train)))
    return [train[i] for i in order[n_val:]], [train[i] for i in order[:n_val]]


def onnx_outputs(path: Path, dataset: SegDataset) -> list[np.ndarray]:
    """An ONNX model's raw outputs (C×H×W) on whole evaluation images, as the tablet gets them."""
    from export.onnx_export import INPUT_NAME, OUTPUT_NAME, cpu_session

    session = cpu_session(path)
    outs = []
    for i, sample in enumerate(dataset.samples):
        h, w = sample.target.shape
        logits = session.run([OUTPUT_NAME], {INPUT_NAME: dataset[i]["x"][None].numpy()})[0][0]
        outs.append(logits[:, :h, :w])
    return outs


def onnx_instances(path: Path, dataset: SegDataset, contract: Contract) -> list[Label]:
    """Labels an ONNX model gives on whole evaluation images, decoded as the tablet decodes."""
    from appliance.assist.contract import decode_label, probabilities

    return [
        decode_label(out, probabilities(out, contract), contract)
        for out in onnx_outputs(path, dataset)
    ]


def _onnx_scores(path: Path, dataset: SegDataset, contract: Contract) -> tuple[float, float]:
    """Pooled foreground Dice and instance F1 (IoU > 0.5) of an ONNX model on `dataset`."""
    from export.instance_metrics import dice, f1_at

    preds = [label.instances for label in onnx_instances(path, dataset, contract)]
    truths = [s.instances for s in dataset.samples]
    return dice(truths, preds), f1_at(truths, preds)


@dataclass(frozen=True)
class JobResult:
    """What `train_job` shipped: the bundle, and the metrics it records."""

    bundle: Path
    bundle_id: str
    eval_split: str  # "test", or "val" when the job has no test items
    eval_dice: float  # the shipped ONNX model's pooled Dice on that split
    result: TrainResult
    metrics: dict[str, object]


@dataclass(frozen=True)
class _JobData:
    job_id: str
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]


def segmentation_contract(
    image_channels: int,
    task: str,
    classes: list[str],
    output: str = "softmax",
    decoding: Mapping[str, Value] | None = None,
) -> Contract:
    """The model I/O contract (`appliance.contract`) of a U-Net this module trained; `decoding`
    (instance kinds) defaults to the kind's."""
    from export.data import NORMALISATION, TILE_MULTIPLE
    from export.onnx_export import INPUT_NAME, OUTPUT_NAME

    return Contract(
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_channels=image_channels,
        mask_channel=task == "upgrade",
        normalisation=NORMALISATION,
        tile_multiple=TILE_MULTIPLE,
        output_kind=output,
        classes=tuple(classes),
        boundary_channel=task == "upgrade" and output in INSTANCE_KINDS,
        decoding=dict(decoding or {}),
    )


def _load_job(job_path: Path, task: str, seed: int) -> _JobData:
    from appliance.bundles.training_job import read_training_job
    from export.data import samples_from_job

    with read_training_job(job_path) as job:
        splits, classes = samples_from_job(job, task)
        job_id = job.id
    train, val, test = splits["train"], splits["val"], splits["test"]
    if not val:
        train, val = _split_off_val(train, seed, job_path)
    return _JobData(job_id, classes, train, val, test)


def train_job(
    job_path: Path,
    out: Path,
    run_dir: Path,
    config: TrainConfig,
    *,
    perturb: PerturbSpec | None = None,
    quantize: bool = False,
    progress: bool = True,
) -> JobResult | None:
    """Training-job bundle → trained, exported, checked model bundle.

    `config.n_classes` comes from the job; `config.output` "auto" picks the task's default
    output kind (`export.targets.DEFAULT_OUTPUT`); `perturb` None picks the upgrade perturbation for
    the job (other objects to include, or Felzenszwalb segments). Returns None on the non-zero
    ranks of a torchrun launch (rank 0 exports and writes everything).
    """
    from export.targets import output_for

    data = _load_job(job_path, config.task, config.seed)
    default = (
        UPGRADE_PERTURB if any(s.others is not None for s in data.train) else FELZENSZWALB_PERTURB
    )
    config = replace(
        config,
        n_classes=len(data.classes),
        perturb=perturb or default,
        output=output_for(config.task, config.output),
    )
    result = train_model(data.train, data.val, config, run_dir, progress=progress)
    if result.rank != 0:
        return None
    return _ship(data, config, result, out, run_dir, quantize)


def _ship(
    data: _JobData,
    config: TrainConfig,
    result: TrainResult,
    out: Path,
    run_dir: Path,
    quantize: bool,
) -> JobResult:
    """Export to ONNX, measure it on the held-out split, and write the model bundle."""
    from appliance.bundles.model_bundle import ModelSpec, write_model_bundle
    from export.onnx_export import export_onnx, measure_latency
    from export.quantize import quantize_int8

    task, seed, output = config.task, config.seed, config.output
    image_channels = data.train[0].image.shape[0]
    in_channels = image_channels + config.in_channels_extra
    fp32 = run_dir / "model.onnx"
    parity = export_onnx(result.model, in_channels, fp32)
    tuned = None
    if output in INSTANCE_KINDS:  # seed parameters that suit this model, on its val images
        val_ds = SegDataset(
            data.val, task, config.perturb, False, config.patch, seed, output=output
        )
        truths = [s.instances for s in data.val]
        tuned = tune_decoding(onnx_outputs(fp32, val_ds), truths, output, config.n_classes)
    decoding = tuned.decoding if tuned else None
    contract = segmentation_contract(image_channels, task, data.classes, output, decoding)
    eval_name = "test" if data.test else "val"
    eval_ds = SegDataset(
        data.test or data.val, task, config.perturb, False, config.patch, seed, output=output
    )
    fp32_dice, fp32_f1 = _onnx_scores(fp32, eval_ds, contract)
    metrics: dict[str, object] = {
        "task": task,
        "output_kind": output,
        "val_dice": round(result.best_val_dice, 4),
        f"{eval_name}_dice_onnx_fp32": round(fp32_dice, 4),
        f"{eval_name}_instance_f1_onnx_fp32": round(fp32_f1, 4),
        "eval_split": eval_name,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second, 1),
        "device": result.device,
        "precision": result.precision,
        "train_images": len(data.train),
        "val_images": len(data.val),
        "test_images": len(data.test),
        "parity": parity.as_dict(),
        **(tuned.as_dict() if tuned else {}),
        "config": result.config,
    }
    shipped, shipped_dice = fp32, fp32_dice
    if quantize:
        cal_ds = SegDataset(
            data.train, task, config.perturb, False, config.patch, seed, output=output
        )
        calibration = [cal_ds[i]["x"][None].numpy() for i in range(min(len(cal_ds), 32))]
        shipped = quantize_int8(fp32, run_dir / "model-int8.onnx", calibration)
        shipped_dice, int8_f1 = _onnx_scores(shipped, eval_ds, contract)
        metrics[f"{eval_name}_dice_onnx_int8"] = round(shipped_dice, 4)
        metrics[f"{eval_name}_instance_f1_onnx_int8"] = round(int8_f1, 4)
        metrics["int8_dice_drop"] = round(fp32_dice - shipped_dice, 4)
    metrics["quantized"] = quantize
    metrics["latency_ms_512_2threads"] = round(measure_latency(shipped, in_channels), 1)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    role = "prelabel" if task == "segment" else "upgrade"
    extra = {"curves.png": run_dir / "curves.png", "metrics.jsonl": run_dir / "metrics.jsonl"}
    extra["metrics.json"] = run_dir / "metrics.json"
    name = f"unet-w{config.width}-d{config.depth}-{output}-{role}"
    bundle_id = write_model_bundle(
        out,
        [ModelSpec(role, name, shipped, contract, metrics)],
        job_id=data.job_id,
        extra_files=extra,
    )
    return JobResult(out, bundle_id, eval_name, shipped_dice, result, metrics)
